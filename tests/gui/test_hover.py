"""The status bar over a heatmap: the patch under the cursor, its level-0 box and every class's
value, whichever layer is selected, also for a heatmap read back from its OME-TIFF."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import random_heatmap
from qtpy.QtCore import QPoint

from napari_patchheat._qt.canvas import camera
from napari_patchheat._qt.hover import heatmap_cell_at
from napari_patchheat._qt.slide_layer import SlideLayer


def status_text(status) -> str:
    """What napari's status bar shows of ``viewer.status`` (a string, or napari's dict)."""
    return status["coordinates"] if isinstance(status, dict) else str(status)


def expected(heatmap, i: int, j: int) -> list[str]:
    """The parts the status text of patch (i, j) must hold."""
    y0, x0, y1, x1 = heatmap.grid.box(i, j, heatmap.downsample)
    values = [f"{n} {v:.4g}" for n, v in zip(heatmap.class_names, heatmap.values[i, j])]
    return [f"patch (row {i}, col {j})", f"level-0 y {y0:g}–{y1:g}, x {x0:g}–{x1:g} px", *values]


@pytest.fixture
def over_slide(viewer, widget, pyramid):
    """A 2-level slide in µm (0.5 µm/px) with a heatmap on level 1 (SAME, size 24, stride 16)."""
    levels = pyramid(np.zeros((1001, 1403, 3), np.uint8), (4,))
    layer = viewer.add_image(levels, rgb=True, multiscale=True, scale=(0.5, 0.5),
                             metadata={"mpp": (0.5, 0.5)}, name="slide.svs")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, 1, 24, 16)
    hl = widget.display.show_heatmap(heatmap, slide)
    return layer, slide, heatmap, hl


def test_the_status_text_names_the_patch_its_box_and_every_class(widget, over_slide):
    _, slide, heatmap, hl = over_slide
    grid, ds = heatmap.grid, heatmap.downsample
    for i, j in [(2, 3), (grid.rows - 1, grid.cols - 1), (grid.rows // 2, 0)]:
        centre = slide.to_world(grid.centers(i, j, ds))
        text = widget.hover.text_at(centre)
        assert text.startswith(f"{hl.name}: ") and all(p in text for p in expected(heatmap, i, j))
        # anywhere over the cell: the cell is stride * downsample level-0 px wide
        near_edge = centre + 0.45 * np.asarray(grid.stride) * np.asarray(ds) * 0.5
        assert widget.hover.text_at(near_edge) == text
    assert "not computed" in widget.hover.text_at(slide.to_world(grid.centers(0, 1, ds)))
    assert widget.hover.text_at((-400.0, -400.0)) == ""  # off the heatmap
    hl.visible = False
    assert widget.hover.text_at(slide.to_world(grid.centers(2, 3, ds))) == ""


def test_the_top_heatmap_with_a_value_answers(viewer, widget, over_slide):
    layer, slide, heatmap, hl = over_slide
    upper = random_heatmap(slide, 0, 50, 50, model="other")
    upper.values[3, 4] = np.nan  # not computed there: transparent
    top = widget.display.show_heatmap(upper, slide)
    assert viewer.layers.index(top) > viewer.layers.index(hl)
    cell = heatmap_cell_at(viewer, slide.to_world(upper.grid.centers(3, 4)))
    assert cell.layer is hl  # the cell painted there is the lower heatmap's
    assert not np.isnan(cell.values).any()
    assert heatmap_cell_at(viewer, slide.to_world(upper.grid.centers(3, 5))).layer is top
    upper.values[3, 5] = np.nan
    hl.visible = False  # nothing computed under the point: the top heatmap covering it
    cell = heatmap_cell_at(viewer, slide.to_world(upper.grid.centers(3, 5)))
    assert cell.layer is top and "not computed" in widget.hover.text_at(
        slide.to_world(upper.grid.centers(3, 5)))


def test_the_status_bar_shows_it_whichever_layer_is_selected(viewer, widget, over_slide):
    layer, slide, heatmap, hl = over_slide
    viewer.layers.selection.active = layer  # the slide, not the heatmap
    centre = slide.to_world(heatmap.grid.centers(4, 5, heatmap.downsample))
    viewer.cursor.position = tuple(centre)  # what a mouse move over the canvas does
    assert all(p in status_text(viewer.status) for p in expected(heatmap, 4, 5))
    viewer.mouse_over_canvas = True
    viewer.update_status_from_cursor()  # napari's own status (its thread does this)
    shown = status_text(viewer.status)
    assert all(p in shown for p in expected(heatmap, 4, 5))
    assert shown.index("patch (row 4") > 0  # after napari's coordinates of the slide layer
    bar = viewer.window._status_bar
    assert "patch (row 4, col 5)" in bar._coordinates.text()
    viewer.cursor.position = (-400.0, -400.0)
    assert "patch" not in status_text(viewer.status)


def test_a_mouse_move_over_the_canvas_updates_the_status(viewer, widget, qtbot, over_slide):
    layer, slide, heatmap, _ = over_slide
    viewer.layers.selection.active = layer
    i, j = 7, 9
    centre = slide.to_world(heatmap.grid.centers(i, j, heatmap.downsample))
    cam = camera(viewer)
    cam.center, cam.zoom = tuple(centre), 2.0
    qtbot.wait(50)
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseMove(canvas, QPoint(canvas.width() // 2 + 3, canvas.height() // 2 - 2))
    parts = expected(heatmap, i, j)
    qtbot.waitUntil(lambda: all(p in status_text(viewer.status) for p in parts), timeout=5_000)


def test_a_heatmap_read_back_from_its_ome_tiff_shows_its_values(viewer, widget, tmp_path):
    import tifffile

    from napari_patchheat._reader import read_slides
    from napari_patchheat.export import write_ome_tiff

    slide_file = tmp_path / "slide.tif"
    tifffile.imwrite(slide_file, np.full((300, 400, 3), 180, np.uint8), photometric="rgb")
    data, kwargs, _ = read_slides(str(slide_file))[0]
    slide = SlideLayer.from_layer(viewer.add_image(data, **kwargs))
    heatmap = random_heatmap(slide, 0, 50, 30)
    write_ome_tiff(heatmap, tmp_path / "h.ome.tif")
    for data, kwargs, _ in read_slides(str(tmp_path / "h.ome.tif")):
        viewer.add_image(data, **kwargs)
    viewer.layers.selection.active = viewer.layers[0]
    text = widget.hover.text_at(heatmap.grid.centers(3, 4))
    assert all(p in text for p in expected(heatmap, 3, 4))



def test_after_the_dock_is_gone_napari_keeps_its_own_status_and_no_legend(viewer, widget,
                                                                         over_slide):
    from napari_patchheat._qt.legend import LEGEND_OVERLAY_KEY

    layer, slide, heatmap, _ = over_slide
    assert viewer.canvas.overlays[LEGEND_OVERLAY_KEY].visible
    widget.display.shutdown()  # what the dock's teardown calls
    widget.hover.remove()
    assert LEGEND_OVERLAY_KEY not in viewer.canvas.overlays
    viewer.layers.selection.active = layer
    viewer.cursor.position = tuple(slide.to_world(heatmap.grid.centers(4, 5, heatmap.downsample)))
    viewer.mouse_over_canvas = True
    viewer.update_status_from_cursor()
    assert "[" in status_text(viewer.status) and "patch" not in status_text(viewer.status)


def test_a_patch_the_tissue_threshold_skipped_says_so(viewer, widget, qtbot, pyramid):
    """Not computed and below the run's tissue threshold: 'skipped', not 'not computed yet'."""
    from napari_patchheat._qt.hover import SKIPPED_TEXT

    level0 = np.full((1001, 1403, 3), 245, np.uint8)  # glass on the right
    level0[:, :700] = (150, 80, 140)  # stained tissue on the left
    layer = viewer.add_image(pyramid(level0, (4,)), rgb=True, multiscale=True, name="half.png")
    widget.image_layer.value = layer
    slide = widget.slide
    heatmap = random_heatmap(slide, 0, 100, 100)
    heatmap.extra["tissue_threshold"] = 0.5
    heatmap.values[5, :] = np.nan  # row 5 not computed: on tissue (left) and on glass (right)
    widget.display.show_heatmap(heatmap, slide)
    qtbot.waitUntil(lambda: widget.tissue.fraction(slide, 0, heatmap.grid) is not None,
                    timeout=20_000)
    fraction = widget.tissue.fraction(slide, 0, heatmap.grid)
    assert fraction[5, 1] > 0.9 and fraction[5, 12] < 0.1  # the reference varies
    over = lambda i, j: widget.hover.text_at(slide.to_world(heatmap.grid.centers(i, j)))  # noqa: E731
    assert over(5, 12).endswith(SKIPPED_TEXT)
    assert over(5, 1).endswith("not computed yet")
    assert "a " in over(6, 12) and SKIPPED_TEXT not in over(6, 12)  # computed: its values
    heatmap.extra["tissue_threshold"] = 0.0  # a run without a threshold skips nothing
    assert over(5, 12).endswith("not computed yet")
