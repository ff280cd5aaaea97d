"""The live grid preview: its rectangles are PatchGrid's boxes of the patches in view, placed on
pixel edges, capped, and follow SAME/VALID/rate, the level, µm scale and the camera."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchheat._qt.canvas import camera
from napari_patchheat._qt.preview import PREVIEW_DEBOUNCE_MS, PREVIEW_MAX_SHAPES, select_patches
from napari_patchheat.grid import PatchGrid


def world_view(viewer) -> tuple[float, float, float, float]:
    """The world rectangle on screen, from the camera and the canvas widget's own size."""
    cam = camera(viewer)
    canvas = viewer.window._qt_viewer.canvas.native
    h, w = canvas.height(), canvas.width()
    cy, cx = cam.center[-2:]
    return (cy - h / cam.zoom / 2, cx - w / cam.zoom / 2,
            cy + h / cam.zoom / 2, cx + w / cam.zoom / 2)


def expected_rects(grid: PatchGrid, ds, scale: float, view) -> tuple[np.ndarray, np.ndarray]:
    """Every patch of the grid (brute force, no patches_in) whose world rectangle meets ``view``:
    (rects (n, 4) y0 x0 y1 x1, indices (n, 2)). Patch box [y0, y1) in level-0 px is the world
    rectangle [y0 - 0.5, y1 - 0.5] (napari's pixel p covers [p - 0.5, p + 0.5)), times the scale."""
    r, c = np.meshgrid(np.arange(grid.rows), np.arange(grid.cols), indexing="ij")
    boxes = (grid.boxes(r.ravel(), c.ravel(), ds) - 0.5) * scale
    y0, x0, y1, x1 = boxes.T
    meets = (y0 < view[2]) & (y1 > view[0]) & (x0 < view[3]) & (x1 > view[1])
    return boxes[meets], np.stack([r.ravel()[meets], c.ravel()[meets]], -1)


def drawn_rects(widget) -> np.ndarray:
    """The preview's rectangles as (n, 4) y0 x0 y1 x1 (each must have 4 corners)."""
    data = widget.preview.layer.data
    assert all(len(corners) == 4 for corners in data)
    return np.array([np.r_[np.min(c, 0), np.max(c, 0)] for c in data], float).reshape(-1, 4)


def match(got: np.ndarray, want: np.ndarray, atol: float = 1e-3) -> np.ndarray:
    """Index into ``want`` of each rectangle of ``got`` (napari stores float32: atol); asserts a
    one-to-one match."""
    d = np.abs(got[:, None, :] - want[None, :, :]).max(-1)
    k = d.argmin(1)
    assert (d[np.arange(len(got)), k] <= atol).all(), "a drawn rectangle is no patch's box"
    assert len(set(k.tolist())) == len(k)
    return k


def set_params(widget, size, stride, rate=1, padding="VALID", level=0):
    widget.level.value = level
    widget.size.value, widget.stride.value, widget.rate.value = size, stride, rate
    widget.padding.value = padding


@pytest.mark.parametrize("padding, rate", [("VALID", 1), ("SAME", 1), ("SAME", 3), ("VALID", 2)])
def test_rectangles_are_the_boxes_of_every_patch_in_view(viewer, widget, padding, rate):
    viewer.add_image(np.zeros((2000, 2600, 3), np.uint8), rgb=True, name="slide")
    set_params(widget, 60, 45, rate, padding)
    cam = camera(viewer)
    cam.center, cam.zoom = (37.0, 81.0), 2.0  # the top-left corner: SAME's padding shows
    widget.preview.update_now()
    grid = PatchGrid(2000, 2600, 60, 45, rate, padding)
    assert widget.grid == grid
    want, index = expected_rects(grid, (1.0, 1.0), 1.0, world_view(viewer))
    got = drawn_rects(widget)
    assert 0 < len(got) == len(want) <= PREVIEW_MAX_SHAPES
    k = match(got, want)
    # the first patch: SAME starts it pad_before pixels above/left of the image, its extent is
    # the dilated (size - 1) * rate + 1
    e = (60 - 1) * rate + 1
    py, px = grid.pad_before
    first = np.array([-py - 0.5, -px - 0.5, -py + e - 0.5, -px + e - 0.5])
    assert tuple(index[k[np.abs(got - first).max(1).argmin()]]) == (0, 0)
    assert np.abs(got - first).max(1).min() < 1e-3


def test_lower_level_and_micrometre_scale(viewer, widget, pyramid):
    levels = pyramid(np.zeros((1001, 1403, 3), np.uint8), (4,))
    mpp = 0.5
    viewer.add_image(levels, rgb=True, multiscale=True, scale=(mpp, mpp), name="slide",
                     metadata={"mpp": (mpp, mpp)})
    set_params(widget, 20, 16, 2, "SAME", level=1)
    assert "µm/px" in widget.level.current_choice
    cam = camera(viewer)
    cam.center, cam.zoom = (250.0 * mpp, 350.0 * mpp), 1.5 / mpp
    widget.preview.update_now()
    ds = (1001 / 251, 1403 / 351)  # SVS-like: not exactly 4
    grid = PatchGrid(251, 351, 20, 16, 2, "SAME")
    assert widget.grid == grid
    want, _ = expected_rects(grid, ds, mpp, world_view(viewer))
    got = drawn_rects(widget)
    assert 0 < len(got) == len(want) <= PREVIEW_MAX_SHAPES
    match(got, want, atol=1e-3 * mpp)


def test_cap_shows_a_regular_subsample_and_says_so(viewer, widget):
    viewer.add_image(np.zeros((3000, 3000, 3), np.uint8), rgb=True, name="slide")
    set_params(widget, 20, 20)  # 150 x 150 = 22,500 patches, all in view
    viewer.reset_view()
    widget.preview.update_now()
    sel = widget.preview.selection
    assert sel.in_view == 150 * 150
    assert 0 < widget.preview.layer.nshapes == sel.n_shown <= PREVIEW_MAX_SHAPES
    assert sel.step > 1 and set(np.diff(sel.rows)) == {sel.step} == set(np.diff(sel.cols))
    assert "every" in widget.preview_info.value and "22,500" in widget.preview_info.value
    want, index = expected_rects(widget.grid, (1.0, 1.0), 1.0, world_view(viewer))
    k = match(drawn_rects(widget), want)  # each one still a real patch, at a multiple of step
    assert (index[k] % sel.step == 0).all()


def test_select_patches_never_exceeds_the_cap():
    rng = np.random.default_rng(1)
    for _ in range(200):
        h, w = rng.integers(50, 100_000, 2)
        k, s = int(rng.integers(1, 300)), int(rng.integers(1, 300))
        grid = PatchGrid(int(h), int(w), k, s, padding="SAME")
        y0, x0 = rng.uniform(-1000, h), rng.uniform(-1000, w)
        view = (y0, x0, y0 + rng.uniform(1, 50_000), x0 + rng.uniform(1, 50_000))
        cap = int(rng.integers(1, 400))
        sel = select_patches(grid, (1.0, 1.0), view, cap)
        rr, cc = grid.patches_in(*view)
        assert sel.n_shown <= cap and sel.in_view == len(rr) * len(cc)
        assert (sel.n_shown > 0) == (sel.in_view > 0)
        assert set(sel.rows) <= set(rr) and set(sel.cols) <= set(cc)


def test_camera_moves_redraw_debounced(viewer, widget, qtbot):
    viewer.add_image(np.zeros((4000, 4000, 3), np.uint8), rgb=True, name="slide")
    set_params(widget, 50, 50)
    cam = camera(viewer)
    cam.zoom = 2.0
    cam.center = (300.0, 300.0)
    widget.preview.update_now()
    before = drawn_rects(widget)
    draws = []
    widget.preview.redrawn.append(lambda: draws.append(1))
    for c in range(5):  # a pan: five moves in a row
        cam.center = (2000.0 + c, 2500.0)
    assert widget.preview.pending and not draws
    qtbot.waitUntil(lambda: not widget.preview.pending, timeout=10 * PREVIEW_DEBOUNCE_MS + 2000)
    assert len(draws) == 1
    after = drawn_rects(widget)
    assert after.shape != before.shape or not np.allclose(after, before)
    want, _ = expected_rects(widget.grid, (1.0, 1.0), 1.0, world_view(viewer))
    assert len(after) == len(want)
    match(after, want)
    # short pans at the same zoom (only the patches that enter or leave are redrawn), then a zoom
    for dy, dx, zoom in [(37.0, 0.0, 2.0), (0.0, -61.0, 2.0), (90.0, 45.0, 2.0), (0.0, 0.0, 1.3)]:
        cam.zoom = zoom
        cam.center = (cam.center[-2] + dy, cam.center[-1] + dx)
        widget.preview.update_now()
        got = drawn_rects(widget)
        want, _ = expected_rects(widget.grid, (1.0, 1.0), 1.0, world_view(viewer))
        assert 0 < len(got) == len(want) <= PREVIEW_MAX_SHAPES
        match(got, want)
        assert np.allclose(widget.preview.layer.edge_width, 1.5 / zoom)


def test_bad_parameters_clear_the_preview_and_say_why(viewer, widget):
    viewer.add_image(np.zeros((300, 400, 3), np.uint8), rgb=True, name="slide")
    set_params(widget, 50, 50)
    widget.preview.update_now()
    assert widget.preview.layer.nshapes > 0
    widget.size.value = 500  # larger than the image with VALID padding
    widget.preview.update_now()
    assert widget.grid is None and widget.preview.layer.nshapes == 0
    assert "No patch fits" in widget.status.value.replace("\n", " ")
    widget.padding.value = "SAME"  # SAME always has patches
    widget.preview.update_now()
    assert widget.grid is not None and widget.preview.layer.nshapes == 6 * 8
    assert " ".join(widget.status.value.split()).startswith("6 x 8 = 48 patches")
    widget.show_grid.value = False
    assert widget.preview.layer.nshapes == 0
