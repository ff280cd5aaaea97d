"""Reading the heatmap: the value range and "show at or above" of the heatmap in use, on screen,
in the colour bar and legend, and kept by an exported file that is opened again."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import RUN_TIMEOUT_MS, random_heatmap
from test_heatmap_panel import export_and_wait

from napari_patchheat._qt.canvas import camera
from napari_patchheat._qt.display_settings import threshold_of
from napari_patchheat._qt.legend import LEGEND_OVERLAY_KEY
from napari_patchheat._qt.slide_layer import SlideLayer

SLIDE_RGB = (40, 160, 60)  # the slide's colour, where a hidden cell lets it show through
T = 0.64  # "show at or above"


def narrow_heatmap(viewer, widget):
    """A heatmap over a green slide whose values span 0.55-0.72 (the outputs of a model that
    looked all one colour at 0..1) in columns; cell (5, 6) is exactly T; row 0's first 3 NaN."""
    layer = viewer.add_image(np.full((400, 520, 3), SLIDE_RGB, np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, 0, 40, 40, classes=("dab_positive",), model="dab")
    cols = heatmap.values.shape[1]
    heatmap.values[..., 0] = 0.55 + 0.17 * np.arange(cols) / (cols - 1)
    heatmap.values[0, :3] = np.nan
    heatmap.values[5, 6, 0] = T
    hl = widget.display.show_heatmap(heatmap, slide)
    widget.display.opacity.value = 1.0
    viewer.reset_view()
    return heatmap, hl


def screen_rgb(viewer, shot, world_yx) -> np.ndarray:
    """The screenshot's RGB at a world point."""
    cam = camera(viewer)
    h, w = shot.shape[:2]
    y = (world_yx[0] - cam.center[-2]) * cam.zoom + h / 2
    x = (world_yx[1] - cam.center[-1]) * cam.zoom + w / 2
    return shot[int(y), int(x), :3].astype(int)


def assert_cells_at_or_above_shown(viewer, heatmap, hl, limits, t) -> None:
    """On a screenshot, cells below ``t`` show the slide, the others their colormap colour."""
    lo, hi = limits
    shot = viewer.screenshot(canvas_only=True, flash=False)
    grid, ds = heatmap.grid, heatmap.downsample
    shown = 0
    for i, j in [(5, 6), (3, 1), (4, 5), (6, 8), (7, 12)]:
        rgb = screen_rgb(viewer, shot, grid.centers(i, j, ds))
        v = heatmap.values[i, j, 0]
        if v < t:  # hidden: the slide shows through
            assert np.abs(rgb - SLIDE_RGB).max() <= 2, (i, j, v, rgb)
        else:  # the colormap's colour of its value
            shown += 1
            want = hl.colormap.map([(v - lo) / (hi - lo)])[0, :3] * 255
            assert np.abs(rgb - SLIDE_RGB).max() > 40 and np.abs(rgb - want).max() <= 8, \
                (i, j, v, rgb, want)
    assert 0 < shown < 5


def test_range_and_threshold_show_cells_at_or_above_over_the_slide(viewer, widget):
    heatmap, hl = narrow_heatmap(viewer, widget)
    values, controls = widget.display.values, widget.display.values
    data = hl.data
    assert tuple(hl.contrast_limits) == (0.0, 1.0)  # the natural range to start with
    controls.auto.clicked()
    lo, hi = float(np.nanmin(heatmap.values)), float(np.nanmax(heatmap.values))
    assert (lo, hi) == pytest.approx((0.55, 0.72)) and hl.contrast_limits == pytest.approx((lo, hi))
    assert values.value_range.value == pytest.approx((lo, hi))
    controls.threshold.value = f"{T}"
    assert threshold_of(hl) == T and hl.data is data  # limits and colormap only, no copy
    norm = (np.array([T - 0.01, T - 0.002, T, T + 0.01, hi]) - lo) / (hi - lo)
    alpha = hl.colormap.map(norm)[:, 3]
    assert alpha.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    legend = viewer.canvas.overlays[LEGEND_OVERLAY_KEY]
    assert f"≥ {T:g}" in legend.text and f"{lo:.4g}–{hi:.4g}" in legend.text

    assert_cells_at_or_above_shown(viewer, heatmap, hl, (lo, hi), T)

    controls.reset.clicked()
    assert tuple(hl.contrast_limits) == (0.0, 1.0) and threshold_of(hl) == T
    assert values.value_range.value == pytest.approx((0.0, 1.0))
    controls.threshold.value = ""
    assert threshold_of(hl) is None and hl.colormap.map([0.0])[0, 3] == 1.0
    controls.threshold.value = "abc"  # no number: a note, nothing changes
    assert controls.note.visible and "not a number" in controls.note.value
    assert threshold_of(hl) is None


def test_a_dab_run_on_the_real_slide_shows_the_slide_below_the_threshold(viewer, widget, qtbot,
                                                                         tmp_path, svs_path):
    """The built-in 'dab' model run through the dock over the CMU SVS: auto spans its computed
    values; below "show at or above" the screenshot is the slide's own pixels (the heatmap
    hidden), at or above it the colormap's colour of the cell's value."""
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "dab"
    widget.tissue_threshold.value = 0.0
    widget.size.value, widget.stride.value = 128, 128
    assert widget.run_panel.run()
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    hl, heatmap, panel = widget.display.layer, widget.display.heatmap, widget.display
    values = heatmap.values[..., 0]
    assert heatmap.n_computed == heatmap.grid.n_patches and np.ptp(values) > 0.05
    panel.values.auto.clicked()
    lo, hi = float(values.min()), float(values.max())
    assert hl.contrast_limits == pytest.approx((lo, hi))
    t = float(np.quantile(values, 0.6))
    panel.values.threshold.value = f"{t:.6g}"
    t = float(f"{t:.6g}")
    panel.opacity.value = 1.0
    widget.show_grid.value = False  # no grid lines over the cells
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    hl.visible = False
    slide_only = viewer.screenshot(canvas_only=True, flash=False)
    hl.visible = True
    margin = 0.01 * (hi - lo)
    below = above = 0
    for i in range(1, heatmap.grid.rows - 1, 3):
        for j in range(1, heatmap.grid.cols - 1, 3):
            centre = hl.data_to_world((i, j))  # the cell's centre
            rgb, under = screen_rgb(viewer, shot, centre), screen_rgb(viewer, slide_only, centre)
            v = values[i, j]
            if v < t - margin:
                below += 1
                assert np.abs(rgb - under).max() <= 2, (i, j, v, rgb, under)
            elif v >= t + margin:
                above += 1
                want = hl.colormap.map([(v - lo) / (hi - lo)])[0, :3] * 255
                assert np.abs(rgb - want).max() <= 8, (i, j, v, rgb, want)
                assert np.abs(rgb - under).max() > 20  # the heatmap, not the slide
    assert below > 10 and above > 10


def test_a_drawn_heatmap_changes_its_colour_table_not_its_shaders(viewer, widget):
    """Once drawn, a threshold, a range or a colormap changes the table the GPU looks colours
    up in (its tiles' and its colour bar's), never their compiled programs; the screen shows
    the new display."""
    from napari_patchheat._qt.display_range import image_visuals

    heatmap, hl = narrow_heatmap(viewer, widget)
    controls = widget.display.values
    controls.auto.clicked()
    lo, hi = hl.contrast_limits
    viewer.screenshot(canvas_only=True, flash=False)  # drawn: programs built
    visuals = image_visuals(viewer, hl)
    assert len(visuals) == 2  # the heatmap's one tile and its colour bar's gradient
    programs = [v.shared_program.frag["color_transform"] for v in visuals]
    tables = [v.view_program["texture2D_LUT"] for v in visuals]
    for step, change in enumerate([lambda: setattr(controls.threshold, "value", f"{T}"),
                                   lambda: setattr(controls.value_range, "value", (0.5, hi)),
                                   lambda: setattr(widget.display.colormap, "value", "viridis")]):
        change()
        assert threshold_of(hl) == T and hl.contrast_limits[1] == pytest.approx(hi)
        assert not any(v._need_colortransform_update for v in visuals), step  # no rebuild
        assert [v.shared_program.frag["color_transform"] for v in visuals] == programs
        now = [v.view_program["texture2D_LUT"] for v in visuals]
        assert all(a is not b for a, b in zip(now, tables, strict=True)), step
        tables = now
        assert_cells_at_or_above_shown(viewer, heatmap, hl, hl.contrast_limits, T)
    assert hl.colormap.map([1.0])[0, :3] == pytest.approx([0.993248, 0.906157, 0.143936],
                                                          abs=0.01)  # viridis' top


def test_the_colormap_keeps_the_threshold_and_the_layer_keeps_its_settings(viewer, widget):
    heatmap, hl = narrow_heatmap(viewer, widget)
    panel = widget.display
    panel.values.value_range.value = (0.5, 0.8)
    panel.values.threshold.value = "0.7"
    panel.colormap.value = "viridis"
    assert threshold_of(hl) == 0.7 and hl.contrast_limits == pytest.approx((0.5, 0.8))
    assert hl.colormap.map([0.0])[0, 3] == 0.0 and hl.colormap.map([0.9])[0, 3] == 1.0
    slide = SlideLayer.from_layer(viewer.layers["slide"])
    other = panel.show_heatmap(random_heatmap(slide, 0, 40, 20), slide)  # another in use
    assert panel.values.threshold.value == "" and tuple(other.contrast_limits) == (0.0, 1.0)
    panel.values.value_range.value = (0.2, 0.9)
    panel.values.threshold.value = "0.5"
    assert widget.overlap.show_map()  # the overlap mean is shown as its heatmap is
    mean = widget.overlap.layer
    assert mean.contrast_limits == pytest.approx((0.2, 0.9))
    assert mean.colormap.map([0.0, 0.3, 0.5, 1.0])[:, 3].tolist() == [0.0, 0.0, 1.0, 1.0]
    viewer.layers.selection.active = hl  # back: its controls come back
    assert panel.values.threshold.value == "0.7" and panel.colormap.value == "viridis"
    assert panel.values.value_range.value == pytest.approx((0.5, 0.8))


def test_a_reopened_export_keeps_its_display(viewer, widget, qtbot, tmp_path):
    from napari_patchheat._reader import read_slides

    heatmap, hl = narrow_heatmap(viewer, widget)
    panel = widget.display
    panel.colormap.value = "magma"
    panel.opacity.value = 0.8
    panel.values.value_range.value = (0.55, 0.75)
    panel.values.threshold.value = "0.66"
    for fmt, box in panel.export_formats.items():
        box.value = fmt in ("ometiff", "omezarr")
    panel.export_folder.value = tmp_path
    files = export_and_wait(panel, qtbot)
    assert {"ometiff", "omezarr"} <= set(files)
    for fmt in ("ometiff", "omezarr"):
        (data, kwargs, _), = read_slides(str(files[fmt]))
        np.testing.assert_array_equal(data, heatmap.values[..., 0])
        again = viewer.add_image(data, **kwargs)
        assert again.contrast_limits == pytest.approx((0.55, 0.75))
        assert again.opacity == pytest.approx(0.8) and threshold_of(again) == 0.66
        assert again.colormap.map([0.0, 1.0])[:, 3].tolist() == [0.0, 1.0]
        assert panel.layer is again and panel.colormap.value == "magma"
        assert panel.values.threshold.value == "0.66"


def test_the_legend_and_the_colour_bar_never_overlap(viewer, widget):
    heatmap, hl = narrow_heatmap(viewer, widget)
    widget.display.values.threshold.value = "0.64"
    legend = viewer.canvas.overlays[LEGEND_OVERLAY_KEY]
    assert legend.visible and hl.colorbar.visible and legend.position == hl.colorbar.position
    viewer.screenshot(canvas_only=True, flash=False)  # drawn: napari has placed the overlays
    canvas = viewer.window._qt_viewer.canvas
    boxes = {}  # overlay -> (x0, y0, x1, y1) on the canvas
    for overlay, visual, _ in canvas._get_ordered_visible_canvas_overlays():
        x, y = visual.node.transform.translate[:2]
        boxes[id(overlay)] = (x, y, x + visual.x_size, y + visual.y_size)
    a, b = boxes[id(legend)], boxes[id(hl.colorbar)]
    assert min(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]) > 5  # both drawn
    # one under the other (their widths are estimates; a text's may fall short of the text)
    assert a[3] <= b[1] or b[3] <= a[1], (a, b)


def box_size(mesh) -> list[float]:
    """(width, height) of a box's mesh."""
    vertices = mesh.mesh_data.get_vertices(indexed="faces")
    return np.ptp(vertices.reshape(-1, vertices.shape[-1])[:, :2], axis=0).tolist()


def test_the_boxes_of_the_legend_and_colour_bar_keep_their_programs(viewer, widget):
    """A range or threshold change resizes the boxes behind the legend and the colour bar:
    they keep the colour transform their programs were built with (vispy would give them a
    new one, hence new programs, at every change) and are drawn at their new size."""
    from napari_patchheat._qt.display_range import box_meshes

    heatmap, hl = narrow_heatmap(viewer, widget)
    controls, legend = widget.display.values, viewer.canvas.overlays[LEGEND_OVERLAY_KEY]
    controls.threshold.value = "0.6"
    viewer.screenshot(canvas_only=True, flash=False)  # drawn: programs built
    meshes = box_meshes(viewer, hl, (legend,))
    assert len(meshes) == 2  # the colour bar's box and the legend's
    transforms = [m.shared_program.vert["color_transform"] for m in meshes]
    assert {t.name for t in transforms} == {"pass"}
    for k, change in enumerate([lambda: setattr(controls.value_range, "value", (0.123456, 0.9)),
                                lambda: setattr(controls.threshold, "value", "0.654321"),
                                lambda: setattr(controls.value_range, "value", (0.0, 1.0))]):
        sizes = [box_size(m) for m in meshes]
        change()
        viewer.screenshot(canvas_only=True, flash=False)
        assert [m.shared_program.vert["color_transform"] for m in meshes] == transforms, k
        assert not any(m._data_changed for m in meshes), k  # drawn with their new data
        now = [box_size(m) for m in meshes]
        assert now != sizes, k  # the legend's text and the bar's ticks changed width
    assert "0.6543" in legend.text and hl.contrast_limits == pytest.approx((0.0, 1.0))


def test_a_layers_threshold_colormap_is_one_napari_colormap(viewer, widget):
    """Thresholds typed one after another replace one colormap of the layer in napari's list
    (no new entry each time) and set the layer's colormap once each (napari's layer controls
    do not set it a second time from their list)."""
    from napari.utils.colormaps import AVAILABLE_COLORMAPS

    heatmap, hl = narrow_heatmap(viewer, widget)
    controls = widget.display.values
    controls.threshold.value = "0.6"
    listed, sets = len(AVAILABLE_COLORMAPS), []
    hl.events.colormap.connect(lambda e: sets.append(hl.colormap))
    for k, t in enumerate((0.61, 0.65, 0.7, 0.62)):
        controls.threshold.value = f"{t}"
        assert len(sets) == k + 1 and AVAILABLE_COLORMAPS[hl.colormap.name] is hl.colormap
        alpha = hl.colormap.map([t - 0.01, t])[:, 3]
        assert alpha.tolist() == [0.0, 1.0], t
    assert len(AVAILABLE_COLORMAPS) == listed
    assert "threshold" in hl.colormap._display_name
