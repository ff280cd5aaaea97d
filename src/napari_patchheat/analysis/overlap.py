"""A smoother map where patches overlap: each cell the mean of the patches covering it.

With stride s < effective size e, every level pixel lies under several patches. The map's cells
are g x g level pixels, g = gcd(s, e) per axis (the stride itself when it divides the effective
size, e.g. 224 every 112), starting at the first patch's start, so every pixel of a cell lies
under the same patches: a cell's value is exactly the mean over its pixels' patches (computed
ones only), and ``count`` says how many. The heatmap's values never change.
Placement follows the coordinate contract: cell (u, v) covers level-0 px
[(a_0 + u g) d, (a_0 + (u + 1) g) d). NumPy only; no Qt, no TensorFlow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write
from ..grid import FloatPair, as_float_pair
from ..heatmap import Heatmap

OVERLAP_MAX_CELLS_PER_PATCH = 64  # a map may hold this many cells per patch...
OVERLAP_ANY_CELLS = 2**22  # ...or this many whatever the grid


@dataclass
class OverlapMap:
    """Mean ``values`` (U, V, classes) float32 (NaN under no computed patch) and ``count``
    (U, V) of the computed patches over each cell; cells of ``cell_px`` level px (y, x) from
    level-0 ``origin`` (y, x), on a level of ``downsample``."""

    values: np.ndarray
    count: np.ndarray
    origin: FloatPair
    cell_px: tuple[int, int]
    downsample: FloatPair
    class_names: tuple[str, ...]
    mpp: FloatPair | None = None

    def placement(self, world_per_px: float | Sequence[float] = 1.0
                  ) -> tuple[FloatPair, FloatPair]:
        """napari ``(scale, translate)``: cell (u, v) centred where its pixels are (world units
        = level-0 px times ``world_per_px``)."""
        wy, wx = as_float_pair("world_per_px", world_per_px)
        (dy, dx), (gy, gx), (oy, ox) = self.downsample, self.cell_px, self.origin
        return ((gy * dy * wy, gx * dx * wx),
                ((oy + (gy * dy - 1) / 2) * wy, (ox + (gx * dx - 1) / 2) * wx))

    def metadata(self) -> dict[str, Any]:
        """Everything but the arrays, JSON-ready."""
        scale, translate = self.placement()
        return {"kind": "overlap_mean", "origin_level0_px": list(self.origin),
                "cell_level_px": list(self.cell_px), "downsample": list(self.downsample),
                "class_names": list(self.class_names),
                "mpp": None if self.mpp is None else list(self.mpp),
                "placement_level0_px": {"scale": list(scale), "translate": list(translate)}}


def overlap_map(heatmap: Heatmap) -> OverlapMap:
    """The overlap-averaged map of ``heatmap`` (see the module docstring).

    A ValueError when gcd(stride, effective size) is so small that the map would hold over
    OVERLAP_MAX_CELLS_PER_PATCH cells per patch (and over OVERLAP_ANY_CELLS): choose a stride
    that divides the size.
    """
    g = heatmap.grid
    unit = tuple(math.gcd(s, e) for s, e in zip(g.stride, g.effective_size))
    step = [s // u for s, u in zip(g.stride, unit)]  # cells from one patch to the next
    width = [e // u for e, u in zip(g.effective_size, unit)]  # cells one patch covers
    cells = [(n - 1) * m + w for n, m, w in zip(g.shape, step, width)]
    if cells[0] * cells[1] > max(OVERLAP_MAX_CELLS_PER_PATCH * g.n_patches,
                                 OVERLAP_ANY_CELLS):
        raise ValueError(
            f"the overlap map of stride {g.stride} and effective size {g.effective_size} would "
            f"need cells of {unit} px (their greatest common divisor): choose a stride that "
            "divides the patch's effective size.")
    known = heatmap.computed
    total = _spread(np.where(known[..., None], heatmap.values, 0.0), step, width, cells)
    count = np.rint(_spread(known[..., None], step, width, cells)[..., 0]).astype(np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count[..., None] > 0, total / count[..., None], np.nan)
    dy, dx = heatmap.downsample
    origin = (-g.pad_before[0] * dy, -g.pad_before[1] * dx)
    return OverlapMap(mean.astype(np.float32), count, origin, (unit[0], unit[1]),
                      heatmap.downsample, heatmap.class_names, heatmap.mpp)


def _spread(values: np.ndarray, step: list[int], width: list[int],
            cells: list[int]) -> np.ndarray:
    """Sum over each cell of the values (rows, cols, k) of the patches covering it: patch
    (i, j) starts at cell (i step_y, j step_x) and covers width cells per axis."""
    rows, cols, k = values.shape
    placed = np.zeros((cells[0], cells[1], k))
    placed[: rows * step[0] : step[0], : cols * step[1] : step[1]] = values
    return _trailing_sum(_trailing_sum(placed, width[0], 0), width[1], 1)


def _trailing_sum(a: np.ndarray, n: int, axis: int) -> np.ndarray:
    """out[u] = a[u - n + 1] + ... + a[u] along ``axis`` (cumulative sums)."""
    c = np.cumsum(a, axis=axis)
    out = c.copy()
    head = [slice(None)] * a.ndim
    tail = [slice(None)] * a.ndim
    head[axis], tail[axis] = slice(n, None), slice(None, -n)
    out[tuple(head)] -= c[tuple(tail)]
    return out


def write_overlap_tiff(overlap: OverlapMap, path: str | Path) -> Path:
    """The map as a float32 TIFF of classes + 1 pages (the classes' means, then the count),
    its placement and classes as JSON in the description. Written atomically."""
    import tifffile

    path = Path(path)
    stack = np.concatenate([np.moveaxis(overlap.values, -1, 0),
                            overlap.count[None].astype(np.float32)])
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, stack, photometric="minisblack",
                         description=json.dumps(overlap.metadata()), metadata=None)
    return path
