"""The overlap-averaged map equals a direct per-pixel average of the patches covering each
pixel, and sits where those pixels are."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchheat import PatchGrid
from napari_patchheat.analysis.overlap import overlap_map, write_overlap_tiff
from napari_patchheat.heatmap import Heatmap


def per_pixel_average(h: Heatmap) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Mean and count over every level pixel (the padding too) of the computed patches whose
    box holds it, by visiting each patch: (mean (Y, X, k), count (Y, X), y0, x0)."""
    g = h.grid
    (ey, ex), ys, xs = g.effective_size, g.row_starts(), g.col_starts()
    y0, x0 = int(ys[0]), int(xs[0])
    shape = (int(ys[-1]) + ey - y0, int(xs[-1]) + ex - x0)
    total = np.zeros((*shape, len(h.class_names)))
    count = np.zeros(shape)
    for i in range(g.rows):
        for j in range(g.cols):
            if h.computed[i, j]:
                sl = (slice(ys[i] - y0, ys[i] - y0 + ey), slice(xs[j] - x0, xs[j] - x0 + ex))
                total[sl] += h.values[i, j]
                count[sl] += 1
    with np.errstate(invalid="ignore"):
        return total / count[..., None], count, y0, x0


@settings(max_examples=60, deadline=None)
@given(st.integers(22, 90), st.integers(22, 90), st.integers(1, 8), st.integers(1, 12),
       st.integers(1, 3), st.sampled_from(["VALID", "SAME"]), st.integers(0, 2**31))
def test_each_cell_is_the_per_pixel_average_of_the_patches_over_it(h, w, size, stride, rate,
                                                                   padding, seed):
    # h, w >= 22: the largest effective patch, (8 - 1) * 3 + 1, fits with VALID padding
    grid = PatchGrid(h, w, size, (stride, max(1, stride - 1)), rate, padding)
    rng = np.random.default_rng(seed)
    values = rng.random((*grid.shape, 2)).astype(np.float32)
    values[rng.random(grid.shape) < 0.2] = np.nan
    heatmap = Heatmap(values, grid, 0, (1.0, 1.0), ("a", "b"))
    m = overlap_map(heatmap)
    mean, count, y0, x0 = per_pixel_average(heatmap)
    gy, gx = m.cell_px
    assert stride % gy == 0 and grid.effective_size[0] % gy == 0
    # every pixel's cell: the pixels of a cell share their patches
    cy = np.arange(mean.shape[0]) // gy
    cx = np.arange(mean.shape[1]) // gx
    np.testing.assert_array_equal(m.count[np.ix_(cy, cx)], count)
    np.testing.assert_allclose(m.values[np.ix_(cy, cx)], mean, rtol=1e-5, atol=1e-6)
    assert m.values.shape[:2] == (-(-mean.shape[0] // gy), -(-mean.shape[1] // gx))
    assert m.origin == (float(y0), float(x0))


def test_stride_that_divides_the_size_gives_stride_cells_placed_by_the_contract():
    grid = PatchGrid(1000, 1200, 224, 112, padding="SAME")
    values = np.random.default_rng(0).random((*grid.shape, 1)).astype(np.float32)
    h = Heatmap(values, grid, 1, (4.0, 2.0), ("x",), mpp=(0.25, 0.25))
    m = overlap_map(h)
    assert m.cell_px == (112, 112) and m.values.shape[:2] == (grid.rows + 1, grid.cols + 1)
    assert np.nanstd(m.values) > 0 and (m.count[1:-1, 1:-1] == 4).all()
    # inner cell (u, v) is the mean of the four patches (u-1..u, v-1..v)
    np.testing.assert_allclose(m.values[3, 5, 0], values[2:4, 4:6, 0].mean(), rtol=1e-6)
    # napari draws cell (u, v) at the mean of the world positions of its level pixels
    scale, translate = m.placement((0.25, 0.25))
    u, v = 3, 5
    py = grid.row_starts()[0] + u * 112 + np.arange(112)  # the cell's level pixels
    px = grid.col_starts()[0] + v * 112 + np.arange(112)
    centre = ((py * 4.0 + 1.5).mean() * 0.25, (px * 2.0 + 0.5).mean() * 0.25)
    assert (translate[0] + u * scale[0], translate[1] + v * scale[1]) == pytest.approx(centre)
    # the heatmap's values never change
    np.testing.assert_array_equal(h.values, values)


def test_tiny_common_divisors_are_refused_and_the_tiff_holds_means_and_counts(tmp_path):
    grid = PatchGrid(20000, 20000, 224, 127)  # gcd(127, 224) = 1: 157^2 patches, 20000^2 cells
    with pytest.raises(ValueError, match="choose a stride that divides"):
        overlap_map(Heatmap.empty(grid, ["x"], level=0, downsample=1.0))
    grid = PatchGrid(100, 100, 20, 10)
    values = np.random.default_rng(1).random((*grid.shape, 2)).astype(np.float32)
    m = overlap_map(Heatmap(values, grid, 0, (1.0, 1.0), ("a", "b")))
    path = write_overlap_tiff(m, tmp_path / "o.tif")
    with tifffile.TiffFile(path) as tif:
        stack = tif.asarray()
        meta = json.loads(tif.pages[0].description)
    np.testing.assert_array_equal(stack[0], m.values[..., 0])
    np.testing.assert_array_equal(stack[2], m.count)
    assert meta["class_names"] == ["a", "b"] and meta["cell_level_px"] == [10, 10]


def test_cli_overlap_writes_the_map_of_a_heatmap_file(tmp_path, capsys):
    from napari_patchheat.cli import main

    grid = PatchGrid(100, 100, 20, 10)
    values = np.random.default_rng(2).random((*grid.shape, 1)).astype(np.float32)
    npz = Heatmap(values, grid, 0, (1.0, 1.0), ("a",)).save_npz(tmp_path / "s.m.npz")
    assert main(["overlap", str(npz), "--out", str(tmp_path / "o")]) == 0
    stack = tifffile.imread(tmp_path / "o" / "s.m.overlap.tif")
    np.testing.assert_array_equal(stack[0], overlap_map(Heatmap.load_npz(npz)).values[..., 0])
    assert main(["overlap", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz does not exist" in capsys.readouterr().err
