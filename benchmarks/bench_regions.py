"""Regions on a grid of about 10^6 patches, in ms (median of 7), as a ratio to the grid alone.

The baseline is the grid's own per-patch work: the level-0 boxes of every patch
(``PatchGrid.boxes``), which anything placing patches pays. Measured: the patches inside a
1,000-vertex polygon (area fraction, centre), inside a 4096 x 4096 mask image, the polygons of a
thresholded 1000 x 1000 heatmap (and, for comparison, a general union of its cells), and the
union area of half its patches.
Run: `PYTHONPATH=src .venv/bin/python benchmarks/bench_regions.py`.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
import shapely
from _util import median_ms
from scipy import ndimage

from napari_patchheat import PatchGrid
from napari_patchheat.analysis.regions import heatmap_regions
from napari_patchheat.analysis.stats import union_area
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.roi import as_mask_roi, roi_patch_mask

VERTICES = 1000


def wavy_polygon(cx: float, cy: float, radius: float, seed: int = 0) -> shapely.Polygon:
    """A star-like polygon of VERTICES vertices (valid: one radius per angle)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, VERTICES, endpoint=False)
    r = radius * (1 + 0.35 * np.sin(7 * t)) + rng.uniform(0, radius * 0.05, VERTICES)
    return shapely.Polygon(np.c_[cx + r * np.cos(t), cy + r * np.sin(t)])


def general_union(cells: np.ndarray) -> shapely.Geometry:
    """The cells' union the general way: each row's runs as boxes, ``shapely.union_all``."""
    padded = np.pad(cells, ((0, 0), (1, 1))).astype(np.int8)
    step = np.diff(padded, axis=1)
    row, start = np.nonzero(step == 1)
    _, stop = np.nonzero(step == -1)
    return shapely.union_all(shapely.box(start, row, stop, row + 1))


def main() -> None:
    # bench_grid's grid: 1001 x 1001 patches of effective size 447 every 128 px (overlapping)
    grid = PatchGrid(128_100, 128_100, 224, 128, rate=2, padding="SAME")
    slide = (grid.height, grid.width)
    rr, cc = np.meshgrid(np.arange(grid.rows), np.arange(grid.cols), indexing="ij")
    region = wavy_polygon(64_000, 64_000, 40_000)
    assert region.is_valid and len(region.exterior.coords) == VERTICES + 1
    mask = np.zeros((4096, 4096), np.uint8)
    yy, xx = np.ogrid[:4096, :4096]
    mask[(yy - 2048) ** 2 + (xx - 2048) ** 2 < 1500**2] = 1
    mask_roi = as_mask_roi(mask)
    base = median_ms(lambda: grid.boxes(rr, cc))

    small = PatchGrid(224_000, 224_000, 224, 224)  # 1000 x 1000, one cell per patch
    rng = np.random.default_rng(1)
    field = ndimage.gaussian_filter(rng.random(small.shape), 6)
    field = (field - field.min()) / (field.max() - field.min())
    heatmap = Heatmap(field[..., None], small, 0, (1.0, 1.0), ("score",))
    half = field > 0.5
    regions = heatmap_regions(heatmap, 0, 0.5)

    queries = {
        f"patches inside a {VERTICES}-vertex polygon (>= 50%)":
            lambda: roi_patch_mask(region, grid, 1.0, slide),
        f"patches inside a {VERTICES}-vertex polygon (centre)":
            lambda: roi_patch_mask(region, grid, 1.0, slide, centre=True),
        "patches inside a 4096 x 4096 mask (>= 50%)":
            lambda: roi_patch_mask(mask_roi, grid, 1.0, slide),
        "regions of a 1000 x 1000 heatmap": lambda: heatmap_regions(heatmap, 0, 0.5),
        "  (for comparison: shapely.union_all of its row runs)": lambda: general_union(half),
        "union area of its patches above 0.5": lambda: union_area(small, (1.0, 1.0), half),
    }
    print(f"grid {grid.rows} x {grid.cols} = {grid.n_patches:,} patches (effective 447 px every "
          f"128 px); baseline: level-0 boxes of every patch {base:.1f} ms")
    print(f"heatmap 1000 x 1000: {int(half.sum()):,} cells above 0.5 in {len(regions)} regions")
    for name, fn in queries.items():
        ms = median_ms(fn)
        print(f"{name:50s} {ms:9.1f} ms  ({ms / base:5.2f} x baseline)")


if __name__ == "__main__":
    main()
