"""Heatmap: per-patch predictions on a patch grid, and where napari draws them.

No TensorFlow, no Qt. Cell (i, j) of ``values`` is patch (i, j) of ``grid``; NaN means not
computed (background, not yet run, cancelled). Placement follows DESIGN.md's coordinate contract.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write, loads_json
from .grid import FloatPair, PatchGrid, as_float_pair
from .messages import first_line
from .slide import SLIDE_SUFFIXES
from .slide.location import SlideURL, recorded_location

HEATMAP_FORMAT_VERSION = 1
# napari layer metadata keys of a heatmap layer (Heatmap.layer_kwargs): the Heatmap, the class shown
HEATMAP_META_KEY = "patchheat_heatmap"
CLASS_META_KEY = "patchheat_class"
NAME_SEPARATOR = " · "  # between the parts of a heatmap layer's name
STEM_SUFFIXES = (*SLIDE_SUFFIXES, ".ome")  # file extensions left out of names


def slide_stem(name: str) -> str:
    """A slide's file name without its extensions ('CMU-1.svs' -> 'CMU-1', 'a.ome.tif' -> 'a')."""
    while True:
        head, _, ext = name.rpartition(".")
        if not head or f".{ext.lower()}" not in STEM_SUFFIXES:
            return name
        name = head


@dataclass
class Heatmap:
    """Predictions ``values`` (rows, cols, classes) float32 on ``grid`` of pyramid ``level``.

    ``downsample`` maps level pixels to level-0 pixels; ``mpp`` is the slide's level-0 µm/px
    (y, x) or None. ``slide_shape`` is the level-0 (height, width).
    """

    values: np.ndarray
    grid: PatchGrid
    level: int
    downsample: FloatPair
    class_names: tuple[str, ...]
    mpp: FloatPair | None = None
    model_name: str = ""
    model_fingerprint: str = ""
    slide_path: str = ""
    slide_shape: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        self.downsample = as_float_pair("downsample", self.downsample)
        self.class_names = tuple(str(c) for c in self.class_names)
        if self.mpp is not None:
            self.mpp = as_float_pair("mpp", self.mpp)
        want = (*self.grid.shape, len(self.class_names))
        if self.values.shape != want:
            raise ValueError(
                f"values of shape {self.values.shape} do not fit the grid and classes: "
                f"expected {want} (rows, cols, classes)."
            )

    @classmethod
    def empty(cls, grid: PatchGrid, class_names: Sequence[str], **kwargs: Any) -> Heatmap:
        """A heatmap of ``grid`` with nothing computed (all NaN)."""
        values = np.full((*grid.shape, len(class_names)), np.nan, dtype=np.float32)
        return cls(values=values, grid=grid, class_names=tuple(class_names), **kwargs)

    # --- filling ------------------------------------------------------------------------------
    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Write ``values`` (n, classes) at grid ``indices`` (n, 2) (row, col)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1, 2)
        self.values[idx[:, 0], idx[:, 1]] = np.asarray(values, dtype=np.float32)

    @property
    def computed(self) -> np.ndarray:
        """(rows, cols) bool: True where every class has a value."""
        return ~np.isnan(self.values).any(axis=-1)

    @property
    def n_computed(self) -> int:
        """Number of computed patches."""
        return int(self.computed.sum())

    def class_index(self, name_or_index: str | int) -> int:
        """Index of a class given by name or index; a clear error for an unknown one."""
        if isinstance(name_or_index, (int, np.integer)):
            if 0 <= name_or_index < len(self.class_names):
                return int(name_or_index)
        elif name_or_index in self.class_names:
            return self.class_names.index(name_or_index)
        raise ValueError(
            f"class {name_or_index!r} is not one of this heatmap's classes "
            f"{list(self.class_names)}."
        )

    # --- placement ----------------------------------------------------------------------------
    def placement(self, world_per_px: float | Sequence[float] = 1.0) -> tuple[FloatPair, FloatPair]:
        """napari ``(scale, translate)`` of the heatmap layer, in world units.

        World units are level-0 pixels times ``world_per_px`` (1 for pixels, the slide's mpp
        when the slide layer is shown in µm).
        """
        wy, wx = as_float_pair("world_per_px", world_per_px)
        (sy, sx), (ty, tx) = self.grid.placement(self.downsample)
        return (sy * wy, sx * wx), (ty * wy, tx * wx)

    def title(self, slide_name: str | None = None) -> str:
        """'model · slide': the model and the slide's name without its extensions (its file's,
        unless ``slide_name`` is given)."""
        name = slide_name if slide_name is not None else Path(self.slide_path or "heatmap").name
        return f"{self.model_name or 'model'}{NAME_SEPARATOR}{slide_stem(name) or 'heatmap'}"

    def layer_name(self, class_name: str | int = 0, title: str | None = None,
                   run: int = 1) -> str:
        """'dab · CMU-1': the title (default :meth:`title`), the class when the model has
        several ('· tumour'), the run number when it is not the first ('(2)')."""
        name = title if title is not None else self.title()
        if len(self.class_names) > 1:
            name += NAME_SEPARATOR + self.class_names[self.class_index(class_name)]
        return name if run == 1 else f"{name} ({run})"

    def layer_kwargs(
        self,
        class_name: str | int = 0,
        world_per_px: float | Sequence[float] = 1.0,
        colormap: str = "inferno",
        opacity: float = 0.5,
    ) -> dict[str, Any]:
        """Keyword arguments for ``viewer.add_image`` showing one class over the slide.

        Fixed contrast limits 0..1 (no data scan); NaN cells are transparent.
        """
        c = self.class_index(class_name)
        scale, translate = self.placement(world_per_px)
        return {
            "data": self.values[..., c],
            "name": self.layer_name(c),
            "scale": scale,
            "translate": translate,
            "colormap": colormap,
            "opacity": opacity,
            "contrast_limits": (0.0, 1.0),
            "blending": "translucent",
            "metadata": {HEATMAP_META_KEY: self, CLASS_META_KEY: c},
        }

    # --- metadata and files --------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """Everything but the values, as JSON-ready types (grid, placement, model, slide)."""
        g = self.grid
        scale, translate = self.placement()
        return {
            "format_version": HEATMAP_FORMAT_VERSION,
            "grid": {**g.params(), "rows": g.rows, "cols": g.cols,
                     "pad_before": list(g.pad_before)},
            "level": self.level,
            "downsample": list(self.downsample),
            "mpp": None if self.mpp is None else list(self.mpp),
            "class_names": list(self.class_names),
            "model_name": self.model_name,
            "model_fingerprint": self.model_fingerprint,
            "slide_path": self.slide_path,
            "slide_shape": None if self.slide_shape is None else list(self.slide_shape),
            "placement_level0_px": {"scale": list(scale), "translate": list(translate)},
            "extra": self.extra,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], values: np.ndarray) -> Heatmap:
        """Rebuild a heatmap from :meth:`metadata` and its values."""
        return cls(
            values=values, grid=PatchGrid.from_params(meta["grid"]), level=int(meta["level"]),
            downsample=tuple(meta["downsample"]), class_names=tuple(meta["class_names"]),
            mpp=None if meta.get("mpp") is None else tuple(meta["mpp"]),
            model_name=meta.get("model_name", ""),
            model_fingerprint=meta.get("model_fingerprint", ""),
            slide_path=meta.get("slide_path", ""),
            slide_shape=None if meta.get("slide_shape") is None else tuple(meta["slide_shape"]),
            extra=meta.get("extra", {}),
        )

    def save_npz(self, path: str | Path) -> Path:
        """Write values and metadata to one ``.npz`` file (atomically); returns the path."""
        path = Path(path)
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, values=self.values, metadata=json.dumps(self.metadata()))
        return path

    @classmethod
    def load_npz(cls, path: str | Path) -> Heatmap:
        """Read a heatmap written by :meth:`save_npz`; any other file is a ValueError saying so
        (:func:`reading_heatmap_file`)."""
        with reading_heatmap_file(path):
            with np.load(path, allow_pickle=False) as f:
                for name in ("metadata", "values"):
                    check_npz_member(f, name)
                meta, values = loads_json(str(f["metadata"])), f["values"]
            heatmap = cls.from_metadata(meta, values)
        return heatmap


def check_npz_member(npz: Any, name: str) -> None:
    """A ValueError unless array ``name`` of the open ``.npz`` holds numbers (or text) whose
    declared shape its stored bytes can hold: a damaged or hostile header (e.g. 10^6 x 10^6
    in 546 bytes) is refused before anything is allocated."""
    info = npz.zip.getinfo(f"{name}.npy")
    with npz.zip.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(member)
        header_bytes = member.tell()
    if dtype.hasobject:
        raise ValueError(f"its '{name}' array holds Python objects, not numbers")
    needed = math.prod(shape) * dtype.itemsize
    if needed > info.file_size - header_bytes:
        raise ValueError(f"its '{name}' array declares {' x '.join(map(str, shape))} values in "
                         f"{info.file_size:,} bytes")


def recorded_path(path: str | os.PathLike[str] | SlideURL) -> str:
    """How a heatmap (and a batch's manifest) records its slide's path, whatever the entry
    point: absolute, symbolic links kept (the name the user gave the slide names the files); a
    URL as it is."""
    return recorded_location(path)


@contextmanager
def reading_heatmap_file(path: str | Path) -> Iterator[None]:
    """Whatever a damaged or foreign file makes a heatmap reader raise, as one ValueError naming
    ``path``; a file that is missing or not readable stays an OSError."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            SyntaxError, RuntimeError, zipfile.BadZipFile) as exc:  # RuntimeError: codecs
        raise ValueError(f"{path} cannot be read as a heatmap written by napari-patchheat "
                         f"({first_line(exc)}): it is damaged or another kind of file.") from exc
