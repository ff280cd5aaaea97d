"""The grid preview's picture past the cap: every patch boundary lights exactly the screen
pixels it crosses (a tint where lines are closer than the screen can show), and with a region of
interest only the pixels that a patch inside it meets stay."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchheat.grid import PatchGrid
from napari_patchheat.grid_picture import (
    TINT_MIN_LIT_FRACTION,
    AxisPixels,
    inside_table,
    region_mask,
    render,
)


def brute_force_axis(starts: np.ndarray, extent: float, pixels: AxisPixels
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per screen pixel: a patch boundary lies in it; it meets a patch's closed extent."""
    edges = pixels.edges()
    bounds = np.r_[starts, starts + extent]
    has = np.array([((bounds >= lo) & (bounds < hi)).any() for lo, hi in zip(edges, edges[1:])])
    cov = np.array([((starts < hi) & (starts + extent >= lo)).any()
                    for lo, hi in zip(edges, edges[1:])])
    return has, cov


def test_the_lines_image_lights_exactly_the_pixels_boundaries_cross():
    rng = np.random.default_rng(3)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(40, 20_000, 2))
        k, s, r = (int(v) for v in (rng.integers(1, 200), rng.integers(1, 200), rng.integers(1, 4)))
        padding = str(rng.choice(["VALID", "SAME"]))
        try:
            grid = PatchGrid(h, w, k, s, r, padding)
        except ValueError:
            continue
        ds = (float(rng.uniform(1, 5)), float(rng.uniform(1, 5)))
        step = float(rng.uniform(0.2, 40))
        ry = AxisPixels(float(rng.uniform(-500, h * ds[0])), step * ds[0] / ds[1], 97)
        rx = AxisPixels(float(rng.uniform(-500, w * ds[1])), step, 131)
        picture = render(grid, ds, ry, rx)
        for axis, pixels, lines in ((0, ry, picture.rows), (1, rx, picture.cols)):
            starts = (np.arange(grid.shape[axis]) * grid.stride[axis]
                      - grid.pad_before[axis]) * ds[axis]
            has, cov = brute_force_axis(starts, grid.effective_size[axis] * ds[axis], pixels)
            assert (lines.boundary == has).all() and (lines.covered == cov).all()
            # lines closer than 2 screen px: an even tint over the patches' extent
            tint = has[cov].mean() > TINT_MIN_LIT_FRACTION if cov.any() else False
            assert lines.tint == tint and (lines.drawn == (cov if tint else has)).all()
        rows, cols = picture.rows, picture.cols
        expect = ((rows.drawn[:, None] & cols.covered[None, :])
                  | (cols.drawn[None, :] & rows.covered[:, None])
                  | (rows.example[:, None] & cols.example[None, :]))
        assert ((picture.rgba[..., 3] > 0) == expect).all()


@pytest.mark.parametrize("size, stride, rate, padding, ds", [
    (20, 20, 1, "VALID", (1.0, 1.0)), (60, 20, 1, "SAME", (1.0, 1.0)),
    (7, 13, 2, "SAME", (4.0, 3.9))])
def test_region_mask_keeps_the_pixels_patches_inside_meet(size, stride, rate, padding, ds):
    """Brute force: a screen pixel stays when a patch inside the region meets it (its extent
    and the pixel as closed intervals); the inside mask varies, so the check can fail."""
    grid = PatchGrid(400, 300, size, stride, rate, padding)
    rng = np.random.default_rng(size)
    inside = rng.random((grid.rows, grid.cols)) < 0.3
    rows_px, cols_px = AxisPixels(-30.3, 2.7, 700), AxisPixels(11.0, 3.1, 500)
    got = region_mask(grid, ds, rows_px, cols_px, inside_table(inside))
    want = np.zeros_like(got)
    for i, j in zip(*np.nonzero(inside)):
        y0, x0, y1, x1 = grid.box(i, j, ds)
        ey, ex = rows_px.edges(), cols_px.edges()
        ys = (ey[:-1] <= y1) & (ey[1:] >= y0)
        xs = (ex[:-1] <= x1) & (ex[1:] >= x0)
        want |= ys[:, None] & xs[None, :]
    assert 0 < want.sum() < want.size
    np.testing.assert_array_equal(got, want)
