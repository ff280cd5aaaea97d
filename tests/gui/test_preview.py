"""The live grid preview: its rectangles are PatchGrid's boxes of the patches in view, placed on
pixel edges, and follow SAME/VALID/rate, the level, µm scale and the camera; past the cap every
patch boundary in view is a drawn line (within a screen pixel) and nothing else is; a grid finer
than the screen is a tint, not a sparser grid; overlapping patches show single patches."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from gui_helpers import RUN_TIMEOUT_MS, text

from napari_patchheat._qt.canvas import camera, is_outline_layer
from napari_patchheat._qt.preview import PREVIEW_DEBOUNCE_MS, PREVIEW_MAX_SHAPES
from napari_patchheat.grid import PatchGrid
from napari_patchheat.grid_picture import (
    EXAMPLE_COLOR,
    LINE_COLOR,
    TINT_MAX_ALPHA,
    rgb,
)


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
    # short pans at the same zoom, then a zoom
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


# --- past the cap: the lines image ----------------------------------------------------------------
EVERYWHERE = (-np.inf, -np.inf, np.inf, np.inf)  # a view of every patch (the image reaches past
# the canvas, so its lines are those of patches outside the view too)


def n_rectangles(widget) -> int:
    """Rectangles in the preview's Shapes layer (none before it is made)."""
    return 0 if widget.preview.layer is None else widget.preview.layer.nshapes


def lines_image(widget) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The preview's lines image: RGBA (h, w, 4) and its pixel edges in world coordinates along
    y (h + 1) and x (w + 1), from the layer's own data, scale and translate."""
    layer = widget.preview.lines_layer
    assert layer is not None and layer.visible
    rgba = np.asarray(layer.data)
    assert rgba.ndim == 3 and rgba.shape[2] == 4 and rgba.dtype == np.uint8
    (sy, sx), (ty, tx) = layer.scale[-2:], layer.translate[-2:]
    h, w = rgba.shape[:2]
    return rgba, ty - sy / 2 + sy * np.arange(h + 1), tx - sx / 2 + sx * np.arange(w + 1)


def boundaries(rects: np.ndarray) -> tuple[dict[float, tuple], dict[float, tuple]]:
    """Horizontal and vertical patch boundaries of world rectangles (n, 4) y0 x0 y1 x1:
    {y: (x from, x to)} and {x: (y from, y to)} (each line spans its patches' extents)."""
    out: tuple[dict, dict] = ({}, {})
    for axis, (lo, hi) in ((0, (1, 3)), (1, (0, 2))):
        for edge in (axis, axis + 2):
            for v in np.unique(rects[:, edge]):
                on = rects[:, edge] == v
                old = out[axis].get(v, (np.inf, -np.inf))
                out[axis][v] = (min(old[0], rects[on, lo].min()), max(old[1], rects[on, hi].max()))
    return out


def assert_lines_are_the_boundaries(widget, rects: np.ndarray) -> None:
    """Every boundary of ``rects`` (world y0 x0 y1 x1) inside the lines image lies on lit pixels
    (within a screen pixel) along its whole span, and every lit pixel lies within a screen pixel
    of a boundary."""
    rgba, ey, ex = lines_image(widget)
    lit = rgba[..., 3] > 0
    sy, sx = ey[1] - ey[0], ex[1] - ex[0]
    cy, cx = (ey[:-1] + ey[1:]) / 2, (ex[:-1] + ex[1:]) / 2
    horizontal, vertical = boundaries(rects)
    checked = 0
    for lines, edges, step, across, across_step, near in (
            (horizontal, ey, sy, cx, sx, lambda k: lit[max(k - 1, 0):k + 2].any(0)),
            (vertical, ex, sx, cy, sy, lambda k: lit[:, max(k - 1, 0):k + 2].any(1))):
        for v, (lo, hi) in lines.items():
            if not edges[0] + step < v < edges[-1] - step:
                continue
            k = int(np.searchsorted(edges, v, side="right")) - 1
            along = (across > lo + across_step) & (across < hi - across_step)
            assert along.any() and near(k)[along].all(), f"the boundary at {v} is not drawn"
            checked += 1
    assert checked > 10
    by, bx = np.array(sorted(horizontal)), np.array(sorted(vertical))
    dy = np.abs(cy[:, None] - by[None, :]).min(1)
    dx = np.abs(cx[:, None] - bx[None, :]).min(1)
    stray = lit & ~((dy <= sy)[:, None] | (dx <= sx)[None, :])
    assert not stray.any(), f"{stray.sum()} lit pixels lie on no patch boundary"


@pytest.mark.parametrize("pyramid_level, padding, rate", [(0, "VALID", 1), (1, "SAME", 2)])
def test_past_the_cap_every_boundary_in_view_is_a_drawn_line(viewer, widget, pyramid,
                                                             pyramid_level, padding, rate):
    if pyramid_level == 0:
        viewer.add_image(np.zeros((3000, 3000, 3), np.uint8), rgb=True, name="slide")
        scale, ds, shape, size = 1.0, (1.0, 1.0), (3000, 3000), 20
    else:  # a lower level of a slide shown in µm: the image follows the layer's scale
        scale = 0.5
        viewer.add_image(pyramid(np.zeros((4001, 3203, 3), np.uint8), (4,)), rgb=True,
                         multiscale=True, scale=(scale, scale), name="slide",
                         metadata={"mpp": (scale, scale)})
        ds, shape, size = (4001 / 1001, 3203 / 801), (1001, 801), 7
    set_params(widget, size, size * rate - rate + 1 if rate > 1 else size, rate, padding,
               level=pyramid_level)
    grid = PatchGrid(*shape, size, widget.stride.value, rate, padding)
    assert widget.grid == grid
    viewer.reset_view()
    cam = camera(viewer)
    cam.zoom *= 1.7  # the grid's top-left part: its outer edges and SAME padding in view
    cam.center = (cam.center[-2] - 300 * scale, cam.center[-1] - 500 * scale)
    widget.preview.update_now()
    want, _ = expected_rects(grid, ds, scale, world_view(viewer))
    assert len(want) > PREVIEW_MAX_SHAPES
    assert n_rectangles(widget) == 0  # no isolated squares: the true tiling
    assert_lines_are_the_boundaries(widget, expected_rects(grid, ds, scale, EVERYWHERE)[0])
    info = " ".join(widget.preview_info.value.split())
    assert f"{len(want):,} patches in view" in info and "boundary lines" in info
    rgba, _, _ = lines_image(widget)
    assert np.allclose(rgba[rgba[..., 3] > 0][:, :3], rgb(LINE_COLOR) * 255, atol=1)
    lines, slide = widget.preview.lines_layer, viewer.layers["slide"]
    assert tuple(lines.units) == tuple(slide.units)
    assert is_outline_layer(lines) and not lines.editable  # kept on top, like the rectangles
    assert viewer.layers.index(lines) > viewer.layers.index(slide)
    assert viewer.layers.selection.active is slide  # the user's layer stays the active one
    widget.show_grid.value = False
    assert not widget.preview.lines_layer.visible


def test_a_grid_finer_than_the_screen_is_a_tint_not_a_sparser_grid(viewer, widget):
    viewer.add_image(np.zeros((3000, 3000, 3), np.uint8), rgb=True, name="slide")
    set_params(widget, 2, 2)  # 1,500 x 1,500 patches, several per screen pixel
    viewer.reset_view()
    widget.preview.update_now()
    assert n_rectangles(widget) == 0
    rgba, ey, ex = lines_image(widget)
    cy, cx = (ey[:-1] + ey[1:]) / 2, (ex[:-1] + ex[1:]) / 2
    inside = ((cy > 0) & (cy < 2999))[:, None] & ((cx > 0) & (cx < 2999))[None, :]
    alpha = rgba[..., 3][inside] / 255
    assert inside.sum() > 100_000
    # every screen pixel holds boundaries: all of them lit, evenly, a tint the slide shows through
    assert alpha.min() > 0 and alpha.max() - alpha.min() < 0.02
    assert alpha.max() <= TINT_MAX_ALPHA + 0.01
    sy, sx = ey[1] - ey[0], ex[1] - ex[0]  # no further than the grid's outer lines
    assert ey[0] >= -0.5 - sy and ey[-1] <= 2999.5 + sy
    assert ex[0] >= -0.5 - sx and ex[-1] <= 2999.5 + sx
    info = " ".join(widget.preview_info.value.split())
    assert "2,250,000 patches in view" in info and "zoom in" in info


def test_overlap_shows_single_patches_across_their_neighbours(viewer, widget):
    """Stride 20 < size 60: each patch spans three strides. Close up, single patches are filled
    rectangles (real patches, none overlapping another) crossed by their neighbours' edges;
    zoomed out, shaded single patches in the lines image are crossed by lines."""
    viewer.add_image(np.zeros((3000, 3000, 3), np.uint8), rgb=True, name="slide")
    set_params(widget, 60, 20)
    cam = camera(viewer)
    cam.center, cam.zoom = (500.0, 600.0), 5.0
    widget.preview.update_now()
    assert widget.preview.picture.lines is None  # close up: every patch a rectangle
    got = drawn_rects(widget)
    want, index = expected_rects(widget.grid, (1.0, 1.0), 1.0, world_view(viewer))
    k = match(got, want)
    faces = np.asarray(widget.preview.layer.face_color)
    edges = np.asarray(widget.preview.layer.edge_color)
    filled = faces[:, 3] > 0
    assert 0 < filled.sum() < len(got)
    assert np.allclose(faces[filled, :3], rgb(EXAMPLE_COLOR))  # a look of their own
    assert np.allclose(edges[filled, :3], rgb(EXAMPLE_COLOR))
    assert np.allclose(edges[~filled, :3], rgb(LINE_COLOR))
    shaded = got[filled]
    for a, b in zip(*np.triu_indices(len(shaded), 1)):  # single patches: none overlaps another
        assert (shaded[a, 2] <= shaded[b, 0] or shaded[b, 2] <= shaded[a, 0]
                or shaded[a, 3] <= shaded[b, 1] or shaded[b, 3] <= shaded[a, 1])
    view = world_view(viewer)
    inner = 0
    for y0, x0, y1, x1 in shaded:  # each spans 60 px, crossed by two neighbours' top edges
        assert y1 - y0 == x1 - x0 == 60
        if view[0] < y0 and y1 < view[2]:
            assert len({v for v in got[:, 0] if y0 < v < y1}) == 2
            inner += 1
    assert inner > 0
    assert len(set(map(tuple, index[k[filled]]))) == filled.sum()
    info = " ".join(widget.preview_info.value.split())
    assert "overlap" in info and "stride 20 < effective size 60" in info

    cam.zoom = 0.5  # past the cap: the lines image
    widget.preview.update_now()
    rgba, ey, ex = lines_image(widget)
    orange = (rgba[..., 0] > 0) & (rgba[..., 3] > 0)  # shaded (the lines are cyan: no red)
    assert orange.any()
    _, vertical = boundaries(expected_rects(widget.grid, (1.0, 1.0), 1.0, EVERYWHERE)[0])
    cx = (ex[:-1] + ex[1:]) / 2
    row = int(np.argmax(orange.sum(1)))
    runs = np.flatnonzero(np.diff(np.r_[0, orange[row].astype(int), 0]))
    assert len(runs) >= 4
    for start, stop in zip(runs[::2], runs[1::2]):  # a shaded patch: 60 px, 30 screen px
        if 0 < start and stop < len(cx):
            assert abs((stop - start) * (ex[1] - ex[0]) - 60) <= 2 * (ex[1] - ex[0])
            assert sum(cx[start] + 1 < v < cx[stop - 1] - 1 for v in vertical) == 2

    set_params(widget, 60, 60)  # no overlap: nothing filled, nothing said
    cam.zoom = 5.0
    widget.preview.update_now()
    assert widget.preview.layer.nshapes > 0
    assert (np.asarray(widget.preview.layer.face_color)[:, 3] == 0).all()
    assert "overlap" not in widget.preview_info.value


def test_a_redraw_reaches_napari_as_one_update_and_is_drawn(viewer, widget):
    """napari's layer list spends ~5 ms on each layer event (its row's dataChanged, thumbnail
    included): a redraw (a pan, a new grid, the lines image) reaches it as one update of at most
    four events (data, thumbnail, extent, highlight), not one per step, and the canvas shows it:
    after a pan, bright rows of the screenshot lie on the patches' top and bottom edges."""
    viewer.add_image(np.zeros((3000, 3000, 3), np.uint8), rgb=True, name="slide")
    set_params(widget, 50, 50)
    cam = camera(viewer)
    for zoom in (0.2, 2.0):  # both layers made (napari makes a layer once: many events)
        cam.center, cam.zoom = (300.0, 300.0), zoom
        widget.preview.update_now()
    events: list[list[tuple[int, str]]] = []  # per change: (layer index, event type)
    viewer.layers.events.connect(lambda e: events[-1].append((e.index, e.type))
                                 if events and hasattr(e, "index") else None)
    for change in (lambda: setattr(cam, "center", (337.0, 261.0)),  # a pan: rectangles moved
                   lambda: setattr(widget.stride, "value", 40),  # a new grid
                   lambda: setattr(cam, "zoom", 0.2),  # zoomed out: the lines image
                   lambda: setattr(cam, "center", (900.0, 700.0)),  # a pan of the lines
                   lambda: setattr(cam, "zoom", 2.0)):  # back to rectangles
        change()
        events.append([])
        widget.preview.update_now()
        ours = [(i, t) for i, t in events[-1] if t != "scale_factor"]  # that: napari's zoom
        per_layer = collections.Counter(i for i, _ in ours)
        assert ("set_data" in {t for _, t in ours} and per_layer
                and max(per_layer.values()) <= 4), events[-1]
    assert widget.preview.picture.lines is None and widget.preview.layer.nshapes > 0
    shot = viewer.screenshot(canvas_only=True, flash=False)
    h, w = shot.shape[:2]
    bright_rows = np.flatnonzero((shot[:, w // 4: 3 * w // 4, :3].max(-1) > 60).mean(1) > 0.5)
    edges_world = np.array([k * 40 - 0.5 for k in range(100)] + [k * 40 + 49.5 for k in range(100)])
    edges_screen = (edges_world - cam.center[-2]) * cam.zoom + h / 2
    edges_screen = edges_screen[(edges_screen > 2) & (edges_screen < h - 2)]
    assert len(bright_rows) > 0 and len(edges_screen) > 4
    assert np.abs(bright_rows[:, None] - edges_screen[None, :]).min(1).max() <= 2
    assert np.abs(edges_screen[:, None] - bright_rows[None, :]).min(1).max() <= 2


def test_past_the_cap_only_the_regions_patches_are_drawn(viewer, widget):
    viewer.add_image(np.zeros((3000, 3000, 3), np.uint8), rgb=True, name="slide")
    set_params(widget, 20, 20)
    viewer.reset_view()
    inside = np.zeros((widget.grid.rows, widget.grid.cols), bool)
    inside[10:40, 30:90] = True
    widget.preview.inside = inside
    widget.preview.update_now()
    rgba, ey, ex = lines_image(widget)
    lit = rgba[..., 3] > 0
    cy, cx = (ey[:-1] + ey[1:]) / 2, (ex[:-1] + ex[1:]) / 2  # world = level-0 - 0.5 here
    sy, sx = ey[1] - ey[0], ex[1] - ex[0]
    near = (((cy >= 10 * 20 - 0.5 - sy) & (cy <= 40 * 20 - 0.5 + sy))[:, None]
            & ((cx >= 30 * 20 - 0.5 - sx) & (cx <= 90 * 20 - 0.5 + sx))[None, :])
    assert lit.any() and not (lit & ~near).any()
    inner = (((cy > 10 * 20 + sy) & (cy < 40 * 20 - sy))[:, None]
             & ((cx > 30 * 20 + sx) & (cx < 90 * 20 - sx))[None, :])
    assert lit[inner].mean() > 0.05  # the region's own lines are drawn
    widget.preview.inside = None
    widget.preview.update_now()
    assert (lines_image(widget)[0][..., 3] > 0)[~near].any()  # the whole grid again


def test_the_grid_steps_aside_when_a_run_finishes_and_comes_back_on_a_change(viewer, widget,
                                                                             qtbot, tmp_path):
    """A real run (the 'tissue' model, in the runner's process): done, the grid's mesh goes;
    a camera move keeps it away; a new stride, or the grid turned on again, brings it back."""
    viewer.add_image(np.full((300, 400, 3), 200, np.uint8), rgb=True, name="slide")
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "tissue"
    widget.tissue_threshold.value = 0.0
    set_params(widget, 50, 50)
    preview = widget.preview
    preview.update_now()
    assert preview.layer.nshapes == 48 and not preview.aside  # 6 x 8 patches in view
    assert widget.run_panel.run()
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    assert "done" in text(widget.run_panel.info), text(widget.run_panel.info)
    assert preview.aside and preview.layer.nshapes == 0
    camera(viewer).zoom *= 1.5  # a camera move: still aside
    preview.update_now()
    assert preview.aside and preview.layer.nshapes == 0
    widget.stride.value = 40  # a parameter change: back
    preview.update_now()
    assert not preview.aside and preview.layer.nshapes > 0
    preview.step_aside()
    assert preview.layer.nshapes == 0
    widget.show_grid.value = False
    widget.show_grid.value = True  # the grid turned on again: back
    assert not preview.aside and preview.layer.nshapes > 0
