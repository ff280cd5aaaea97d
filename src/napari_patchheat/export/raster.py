"""The heatmap resampled onto a slide level's pixel raster, as a tiled float32 TIFF.

Which heatmap cell every pixel of a whole-slide image shows (:func:`raster_cells`) is also what
the PNG overlay uses. Coordinates: level-0 pixels (docs/export.md gives the formula).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write
from ..heatmap import Heatmap
from ._files import BIGTIFF_FROM_BYTES

RASTER_TILE_PX = 512  # slide-aligned raster: tile side, and the unit of bounded-memory writing


def level0_shape(heatmap: Heatmap) -> tuple[int, int]:
    """Level-0 (height, width): the slide's, or the heatmap level's size times its downsample."""
    if heatmap.slide_shape is not None:
        return int(heatmap.slide_shape[0]), int(heatmap.slide_shape[1])
    g, (dy, dx) = heatmap.grid, heatmap.downsample
    return max(1, round(g.height * dy)), max(1, round(g.width * dx))


def raster_cells(heatmap: Heatmap, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap row of every pixel row, and column of every pixel column, of an image of ``shape``.

    The image spans the whole slide (its pixel p covers level-0 [p * D, (p + 1) * D) with D =
    level-0 size / ``shape``). Each pixel takes the cell whose stride area (centred on the patch
    centre) holds the pixel's centre; -1 where none does. See docs/export.md for the formula.
    """
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ValueError(f"shape={tuple(shape)!r} must be a positive (height, width).")
    g = heatmap.grid
    if (h, w) == (g.height, g.width):
        ratios = (1.0, 1.0)  # the heatmap's own level: exact integer arithmetic below
    else:
        h0, w0 = level0_shape(heatmap)
        ratios = (h0 / h / heatmap.downsample[0], w0 / w / heatmap.downsample[1])
    out = []
    for axis, n in enumerate((h, w)):
        s, e, pb = g.stride[axis], g.effective_size[axis], g.pad_before[axis]
        q = (np.arange(n, dtype=np.float64) + 0.5) * ratios[axis] - 0.5  # heatmap-level px
        i = np.floor_divide(2 * q + (2 * pb - (e - 1) + s), 2 * s).astype(np.int64)
        i[(i < 0) | (i >= g.shape[axis])] = -1
        out.append(i)
    return out[0], out[1]


def sample_cells(plane: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """``plane`` (rows, cols) at cells iy x ix, NaN where an index is -1."""
    tile = plane[np.maximum(iy, 0)][:, np.maximum(ix, 0)]
    tile[iy < 0, :] = np.nan
    tile[:, ix < 0] = np.nan
    return tile


def write_slide_raster(
    heatmap: Heatmap,
    path: str | Path,
    level_shape: Sequence[int] | None = None,
    *,
    classes: Sequence[str | int] | None = None,
    tile_px: int = RASTER_TILE_PX,
) -> Path:
    """Write the heatmap resampled (nearest, see :func:`raster_cells`) onto a slide level's pixels.

    ``level_shape``: the level's (height, width), default the heatmap's own level. One float32
    page per class (all by default), NaN outside the cells; tiled, zlib, written tile by tile.
    """
    import tifffile

    path = Path(path)
    g = heatmap.grid
    shape = (g.height, g.width) if level_shape is None else tuple(int(v) for v in level_shape)
    iy, ix = raster_cells(heatmap, shape)
    chosen = range(len(heatmap.class_names)) if classes is None else classes
    idx = [heatmap.class_index(c) for c in chosen]
    h, w = shape
    h0, w0 = level0_shape(heatmap)
    describe = {
        "patchheat_raster": {
            "level_shape": [h, w], "downsample": [h0 / h, w0 / w],
            "classes": [heatmap.class_names[c] for c in idx],
        },
        "heatmap": heatmap.metadata(),
    }

    def tiles() -> Iterator[np.ndarray]:
        for c in idx:
            plane = heatmap.values[..., c]
            for y in range(0, h, tile_px):
                for x in range(0, w, tile_px):
                    yield sample_cells(plane, iy[y : y + tile_px], ix[x : x + tile_px])

    opts: dict[str, Any] = {}
    if heatmap.mpp is not None:
        opts = {"resolution": (1e4 / (heatmap.mpp[1] * w0 / w), 1e4 / (heatmap.mpp[0] * h0 / h)),
                "resolutionunit": "CENTIMETER"}
    with atomic_write(path) as tmp:
        tifffile.imwrite(
            tmp, tiles(), shape=(len(idx), h, w), dtype=np.float32, tile=(tile_px, tile_px),
            photometric="minisblack", compression="zlib", compressionargs={"level": 1},
            metadata=None,
            description=json.dumps(describe, default=str),
            bigtiff=len(idx) * h * w * 4 > BIGTIFF_FROM_BYTES, **opts,
        )
    return path
