"""What the dock needs to know about a slide shown as a napari Image layer.

Levels, downsamples, µm/px, the file behind it and how level-0 pixels map to world coordinates,
from whatever opened the layer: this plugin's reader (its metadata), another reader (the layer's
source path and data shapes) or an array added in Python (no file: the run gets a temporary
TIFF). No Qt and no TensorFlow here.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..grid import FloatPair, as_float_pair
from ..heatmap import HEATMAP_META_KEY
from ..models.card import MPP_AT_1X_UM
from ..slide.location import SlideURL, as_location, is_url

# keys this plugin's reader puts into layer.metadata (see _reader.py); other readers' layers
# fall back to the layer's source path and data shapes
META_PATH_KEYS = ("path", "slide_path")
META_MPP_KEYS = ("mpp",)
META_DOWNSAMPLE_KEYS = ("downsamples",)
META_POWER_KEYS = ("objective_power",)
META_ICC_KEY, META_ICC_BYTES_KEY = "icc_profile", "icc_profile_bytes"  # description, bytes
COMPARE_META_KEY = "patchheat_compare"  # layer metadata of Compare's temporary layers


def is_heatmap_layer(layer: Any) -> bool:
    """True for an Image layer made by this plugin to show a heatmap."""
    return HEATMAP_META_KEY in getattr(layer, "metadata", {})


def is_slide_candidate(layer: Any) -> bool:
    """True for a 2-D (RGB or single-channel) Image layer that is not a heatmap, nor one of
    the dock's own overlays (the grid preview's lines) or Compare's temporary layers."""
    from napari.layers import Image

    from .canvas import is_outline_layer

    return (isinstance(layer, Image) and layer.ndim == 2 and not is_heatmap_layer(layer)
            and not is_outline_layer(layer) and COMPARE_META_KEY not in layer.metadata)


def _first(meta: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if meta.get(key) is not None:
            return meta[key]
    return None


@dataclass
class SlideLayer:
    """A slide layer's pyramid and placement.

    ``levels`` are (Y, X[, C]) arrays (numpy or dask), ``downsamples`` the (dy, dx) level-0 px
    per level px, ``mpp`` the level-0 µm/px or None, ``path`` the file (a URL: a SlideURL) or None,
    ``objective_power`` the file's level-0 magnification or None, ``channel_names`` the file's
    names of its channels (OME-XML, NDPI fluorescence) or None. World coordinates are
    ``level-0 px * world_per_px + world_offset`` (the layer's scale/translate).
    """

    layer: Any
    levels: list[Any]
    downsamples: list[FloatPair]
    mpp: FloatPair | None
    path: Path | SlideURL | None
    world_per_px: FloatPair
    world_offset: FloatPair
    objective_power: float | None = None
    channel_names: tuple[str, ...] | None = None

    @classmethod
    def from_layer(cls, layer: Any) -> SlideLayer:
        """Read levels, downsamples, mpp, objective power, file and placement off a napari
        Image layer: from this plugin's reader's metadata, else from the layer's shapes."""
        meta = dict(layer.metadata or {})
        levels = list(layer.data) if layer.multiscale else [layer.data]
        h0, w0 = _yx(levels[0], layer.rgb)
        downsamples = _first(meta, META_DOWNSAMPLE_KEYS)
        if downsamples is not None and len(downsamples) == len(levels):
            ds = [as_float_pair("downsample", d) for d in downsamples]
        else:
            ds = [(h0 / _yx(a, layer.rgb)[0], w0 / _yx(a, layer.rgb)[1]) for a in levels]
        mpp = _first(meta, META_MPP_KEYS)
        path = _first(meta, META_PATH_KEYS) or getattr(layer.source, "path", None)
        path = _file_or_url(path)
        power = _first(meta, META_POWER_KEYS)
        scale = tuple(float(v) for v in layer.scale[-2:])
        offset = tuple(float(v) for v in layer.translate[-2:])
        names = meta.get("channel_names")
        return cls(layer, levels, ds, None if mpp is None else as_float_pair("mpp", mpp), path,
                   scale, offset, None if power is None else float(power),  # type: ignore[arg-type]
                   None if not names else tuple(str(n) for n in names))

    @property
    def name(self) -> str:
        """The layer's name."""
        return str(self.layer.name)

    def unit_kwargs(self) -> dict[str, Any]:
        """``{"units": ...}`` of the slide layer, for a new layer over it ({} where napari has
        no layer units)."""
        units = getattr(self.layer, "units", None)
        return {} if units is None else {"units": tuple(units)}

    def match_units(self, layer: Any) -> None:
        """Give ``layer`` the slide layer's units (µm for a slide that knows its pixel size):
        napari drops the scale bar's units when layers disagree."""
        units = getattr(self.layer, "units", None)
        if units is not None and tuple(getattr(layer, "units", ())) != tuple(units):
            layer.units = units

    @property
    def rgb(self) -> bool:
        """True when the levels carry a trailing colour axis."""
        return bool(self.layer.rgb)

    def level_shape(self, level: int) -> tuple[int, int]:
        """(height, width) of ``level`` in level pixels."""
        return _yx(self.levels[level], self.rgb)

    def level_label(self, level: int) -> str:
        """'1: 11,500 x 8,250 px (h x w), 0.5 µm/px (20x)', or '1: ... , 1/4' without a pixel
        size. Height first, as everywhere in the dock and the API's (y, x) pairs.

        The magnification is the file's objective power over the level's (x) downsample, else
        ``MPP_AT_1X_UM`` over the level's µm/px; none where the file gives neither.
        """
        h, w = self.level_shape(level)
        dx = self.downsamples[level][1]
        um = None if self.mpp is None else self.mpp[1] * dx
        text = f"{level}: {h:,} x {w:,} px (h x w)"
        if um is not None:
            text += f", {um:.3g} µm/px"
        elif level > 0:
            text += f", 1/{dx:.3g}"
        if self.objective_power is not None:
            text += f" ({self.objective_power / dx:.3g}x)"
        elif um is not None:
            text += f" ({MPP_AT_1X_UM / um:.3g}x)"
        return text

    def to_world(self, yx_level0: np.ndarray) -> np.ndarray:
        """Level-0 pixel coordinates (..., 2) (napari's: pixel centres) -> world coordinates."""
        return np.asarray(yx_level0, float) * self.world_per_px + self.world_offset

    def to_level0(self, yx_world: np.ndarray) -> np.ndarray:
        """World coordinates (..., 2) -> level-0 pixel coordinates (pixel p centred on p)."""
        return (np.asarray(yx_world, float) - self.world_offset) / self.world_per_px

    def box_to_world(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (n, 4) ``(y0, x0, y1, x1)`` covering level-0 px [y0, y1) -> world rectangles.

        (n, 4, 2) corners, clockwise from the top left. napari's pixel p covers [p - 0.5,
        p + 0.5), so the box's edges lie at ``y0 - 0.5`` and ``y1 - 0.5`` (times the scale).
        """
        b = np.asarray(boxes, float).reshape(-1, 4) - 0.5
        y0, x0, y1, x1 = b.T
        corners = np.stack([np.stack([y0, x0], -1), np.stack([y0, x1], -1),
                            np.stack([y1, x1], -1), np.stack([y1, x0], -1)], axis=1)
        return self.to_world(corners)


def icc_profile_of(layer: Any) -> bytes | None:
    """The ICC profile of the file behind ``layer`` (this plugin's reader's metadata), or None."""
    profile = (getattr(layer, "metadata", None) or {}).get(META_ICC_BYTES_KEY)
    return bytes(profile) if profile else None


def _yx(array: Any, rgb: bool) -> tuple[int, int]:
    shape = array.shape[:-1] if rgb else array.shape
    return int(shape[-2]), int(shape[-1])


class LayerCache:
    """Values computed from a layer's pixels: keyed weakly by the layer (a removed layer's go
    with it) and valid only while ``layer.data`` is the object they were computed from
    (``layer.data = new_array`` drops them)."""

    def __init__(self) -> None:
        self._entries: weakref.WeakKeyDictionary[Any, tuple[Any, dict[Any, Any]]] = \
            weakref.WeakKeyDictionary()

    def _values(self, layer: Any, create: bool = False) -> dict[Any, Any] | None:
        data = layer.data
        entry = self._entries.get(layer)
        if entry is not None and entry[0]() is data:
            return entry[1]
        if not create:
            return None
        try:
            ref: Any = weakref.ref(data)
        except TypeError:  # not weak-referenceable: hold it (entries still follow the layer)
            ref = lambda data=data: data  # noqa: E731
        values: dict[Any, Any] = {}
        self._entries[layer] = (ref, values)
        return values

    def get(self, layer: Any, key: Any, default: Any = None) -> Any:
        """The value stored for ``layer``'s current data under ``key``, else ``default``."""
        values = self._values(layer)
        return default if values is None else values.get(key, default)

    def set(self, layer: Any, key: Any, value: Any) -> None:
        """Store ``value`` for ``layer``'s current data under ``key``."""
        self._values(layer, create=True)[key] = value  # type: ignore[index]


def _file_or_url(path: Any) -> Path | SlideURL | None:
    """A layer's source: a slide URL as a SlideURL, an existing file or folder as a Path, else
    None."""
    if path is None:
        return None
    if is_url(path):
        return as_location(path)
    return Path(path) if Path(path).exists() else None  # a file, or a folder (DICOM, OME-Zarr)
