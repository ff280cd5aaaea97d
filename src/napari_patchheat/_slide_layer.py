"""What the widget needs to know about a slide shown as a napari Image layer.

Levels, downsamples, µm/px, the file behind it and how level-0 pixels map to world coordinates,
from whatever opened the layer: this plugin's reader (its metadata), another reader (the layer's
source path and data shapes) or an array added in Python (no file: the run gets a temporary
TIFF). No Qt and no TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .grid import FloatPair, as_float_pair
from .models.card import MPP_AT_1X_UM

# keys this plugin's reader puts into layer.metadata (see _reader.py); other readers' layers
# fall back to the layer's source path and data shapes
META_PATH_KEYS = ("path", "slide_path")
META_MPP_KEYS = ("mpp",)
META_DOWNSAMPLE_KEYS = ("downsamples",)
HEATMAP_META_KEY = "patchheat_heatmap"  # set by Heatmap.layer_kwargs on heatmap layers


def is_heatmap_layer(layer: Any) -> bool:
    """True for an Image layer made by this plugin to show a heatmap."""
    return HEATMAP_META_KEY in getattr(layer, "metadata", {})


def is_slide_candidate(layer: Any) -> bool:
    """True for a 2-D (RGB or single-channel) Image layer that is not a heatmap."""
    from napari.layers import Image

    return isinstance(layer, Image) and layer.ndim == 2 and not is_heatmap_layer(layer)


def _first(meta: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if meta.get(key) is not None:
            return meta[key]
    return None


@dataclass
class SlideLayer:
    """A slide layer's pyramid and placement.

    ``levels`` are (Y, X[, C]) arrays (numpy or dask), ``downsamples`` the (dy, dx) level-0 px
    per level px, ``mpp`` the level-0 µm/px or None, ``path`` the file or None. World
    coordinates are ``level-0 px * world_per_px + world_offset`` (the layer's scale/translate).
    """

    layer: Any
    levels: list[Any]
    downsamples: list[FloatPair]
    mpp: FloatPair | None
    path: Path | None
    world_per_px: FloatPair
    world_offset: FloatPair

    @classmethod
    def from_layer(cls, layer: Any) -> SlideLayer:
        """Read levels, downsamples, mpp, file and placement off a napari Image layer."""
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
        path = Path(path) if path is not None and Path(path).is_file() else None
        scale = tuple(float(v) for v in layer.scale[-2:])
        offset = tuple(float(v) for v in layer.translate[-2:])
        return cls(layer, levels, ds, None if mpp is None else as_float_pair("mpp", mpp), path,
                   scale, offset)  # type: ignore[arg-type]

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
        """'1: 8,250 x 11,500 px, 1.00 µm/px (10x)' or '1: ... px, 1/4' without a pixel size."""
        h, w = self.level_shape(level)
        dy, dx = self.downsamples[level]
        text = f"{level}: {w:,} x {h:,} px"
        if self.mpp is not None:
            um = self.mpp[1] * dx
            text += f", {um:.3g} µm/px ({MPP_AT_1X_UM / um:.3g}x)"
        elif level > 0:
            text += f", 1/{dx:.3g}"
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


def _yx(array: Any, rgb: bool) -> tuple[int, int]:
    shape = array.shape[:-1] if rgb else array.shape
    return int(shape[-2]), int(shape[-1])


TISSUE_ESTIMATE_MAX_READ_PX = 64 * 2**20  # read at most this many pixels for the status estimate
TISSUE_ESTIMATE_MASK_PX = 1024  # long side of the mask the status line's estimate uses


def tissue_estimate(slide: SlideLayer) -> tuple[np.ndarray, FloatPair] | None:
    """A quick tissue mask of the slide and its (dy, dx) level-0 px per mask px.

    For the status line's "41% tissue" (the run computes its own): the level
    :func:`~napari_patchheat.tissue.choose_mask_level` picks, every k-th pixel so the mask's
    long side is about TISSUE_ESTIMATE_MASK_PX. None when that level holds more than
    TISSUE_ESTIMATE_MAX_READ_PX pixels. Reads pixels: call it off the GUI thread.
    """
    from types import SimpleNamespace

    from .tissue import choose_mask_level, tissue_mask

    level = choose_mask_level(SimpleNamespace(levels=slide.levels, downsamples=slide.downsamples))
    h, w = slide.level_shape(level)
    if h * w > TISSUE_ESTIMATE_MAX_READ_PX:
        return None
    k = max(1, -(-max(h, w) // TISSUE_ESTIMATE_MASK_PX))
    pixels = np.asarray(slide.levels[level][k // 2 :: k, k // 2 :: k])
    dy, dx = slide.downsamples[level]
    return tissue_mask(pixels), (dy * k, dx * k)
