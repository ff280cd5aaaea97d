"""The patch inspector: a click, the step buttons, the spin boxes and Alt+arrows select a patch,
shown exactly as TensorFlow extracts it, with its predictions once computed."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import click, random_heatmap, text
from qtpy.QtCore import QPoint, Qt

from napari_patchheat._qt.canvas import camera
from napari_patchheat._qt.slide_layer import SlideLayer
from napari_patchheat.extract import numpy_extract_valid
from napari_patchheat.grid import PatchGrid


@pytest.fixture
def patches(viewer, widget):
    """A random 300 x 410 slide, a SAME grid of size 9, stride 13, rate 3 and its patches as
    TensorFlow extracts them (grid rows, cols, 9, 9, 3); the camera at a fixed place."""
    image = np.random.default_rng(2).integers(0, 256, (300, 410, 3), dtype=np.uint8)
    viewer.add_image(image, rgb=True, name="slide")
    widget.size.value, widget.stride.value, widget.rate.value = 9, 13, 3
    widget.padding.value = "SAME"
    grid = widget.grid
    assert grid == PatchGrid(300, 410, 9, 13, 3, "SAME")
    # TF's SAME extraction = VALID extraction of the zero-padded image (numpy_extract_valid is
    # held to tf.image.extract_patches in tests/test_extract.py)
    (pt, pl), (pb, pr) = grid.pad_before, grid.pad_after
    ref = numpy_extract_valid(np.pad(image, ((pt, pb), (pl, pr), (0, 0))), grid)
    assert ref.shape[:2] == grid.shape
    assert (ref[0, 0][:1] == 0).all()  # the first patch starts in SAME's zero padding
    cam = camera(viewer)
    cam.center, cam.zoom = (150.0, 205.0), 1.5
    return grid, ref


def test_a_click_shows_exactly_the_patch_tensorflow_extracts(viewer, widget, qtbot, patches):
    grid, ref = patches
    qtbot.wait(50)
    for i, j in [(0, 0), (7, 11), (grid.rows - 1, grid.cols - 1)]:
        click(viewer, qtbot, grid.centers(i, j))
        assert widget.inspector.patch_index == (i, j)
        np.testing.assert_array_equal(widget.inspector.patch, ref[i, j])
        shown = widget.inspector.on_screen  # the pixels on screen: the patch zoomed, nothing else
        f = shown.shape[0] // 9
        np.testing.assert_array_equal(shown[::f, ::f], ref[i, j])
        assert widget.inspector.image.pixmap().width() == 9 * f
        info = text(widget.inspector.info)
        y0, x0, y1, x1 = grid.box(i, j)
        assert f"(row {i}, col {j})" in info and f"y {y0:g}–{y1:g}, x {x0:g}–{x1:g}" in info
        assert "not computed yet" in info


def test_step_buttons_and_spin_boxes_select_patches(widget, patches):
    grid, ref = patches
    widget.inspector.select(grid.rows - 1, grid.cols - 1)
    widget.inspector.right.native.click()
    assert widget.inspector.patch_index == (grid.rows - 1, grid.cols - 1)  # the last column: stays
    widget.inspector.up.native.click()
    assert widget.inspector.patch_index == (grid.rows - 2, grid.cols - 1)
    np.testing.assert_array_equal(widget.inspector.patch, ref[grid.rows - 2, grid.cols - 1])
    widget.inspector.row.value, widget.inspector.col.value = 3, 4
    np.testing.assert_array_equal(widget.inspector.patch, ref[3, 4])


def test_a_drag_pans_and_keeps_the_selection(viewer, widget, qtbot, patches):
    widget.inspector.select(3, 4)
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    qtbot.mouseMove(canvas, QPoint(160, 140))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(160, 140))
    assert widget.inspector.patch_index == (3, 4)


def test_alt_arrow_keys_step_the_inspector(viewer, widget):
    from app_model.types import KeyBinding

    viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    widget.size.value = widget.stride.value = 40
    press = {k: viewer.keymap[KeyBinding.from_str(k)] for k in ("Alt-Right", "Alt-Down", "Alt-Up")}
    press["Alt-Right"](viewer)  # nothing selected yet: the first patch
    assert widget.inspector.patch_index == (0, 0)
    press["Alt-Right"](viewer)
    press["Alt-Down"](viewer)
    press["Alt-Down"](viewer)
    press["Alt-Up"](viewer)
    assert widget.inspector.patch_index == (1, 1)

def test_inspector_shows_predictions_once_computed(viewer, widget):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    widget.size.value = widget.stride.value = 40
    widget.padding.value = "SAME"
    widget.inspector.select(2, 3)
    assert "not computed yet" in text(widget.inspector.info)
    heatmap = random_heatmap(SlideLayer.from_layer(layer), 0, 40, 40)
    widget.display.show_heatmap(heatmap, SlideLayer.from_layer(layer))
    a, b = heatmap.values[2, 3]
    assert f"a {a:.4g}, b {b:.4g}" in text(widget.inspector.info)


def test_a_click_on_a_heatmap_inspects_its_own_grid_and_values(viewer, widget, qtbot):
    image = np.random.default_rng(4).integers(0, 256, (300, 410, 3), dtype=np.uint8)
    layer = viewer.add_image(image, rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, 0, 30, 20)  # SAME, size 30, stride 20: 15 x 21 patches
    hl = widget.display.show_heatmap(heatmap, slide)
    widget.size.value = widget.stride.value = 64  # the dock's grid is another one now
    grid = heatmap.grid
    cam = camera(viewer)
    cam.center, cam.zoom = (150.0, 205.0), 1.5
    qtbot.wait(50)
    click(viewer, qtbot, grid.centers(4, 7))
    inspector = widget.inspector
    assert inspector.patch_index == (4, 7)
    np.testing.assert_array_equal(inspector.patch, grid.read_patch(image, 4, 7))
    info = text(inspector.info)
    a, b = heatmap.values[4, 7]
    assert f"of {grid.rows} x {grid.cols}" in info and f"a {a:.4g}, b {b:.4g}" in info
    assert hl.name in info
    np.testing.assert_allclose(inspector.highlight.data[0],
                               slide.box_to_world(grid.boxes(4, 7))[0])
    assert inspector.step(0, 1) and inspector.patch_index == (4, 8)  # steps on the heatmap's grid
    np.testing.assert_array_equal(inspector.patch, grid.read_patch(image, 4, 8))
    hl.visible = False  # no heatmap under the click: the dock's grid again
    dock = widget.grid
    click(viewer, qtbot, dock.centers(1, 2))
    assert inspector.patch_index == (1, 2)
    np.testing.assert_array_equal(inspector.patch, dock.read_patch(image, 1, 2))
    assert "not computed yet" in text(inspector.info)


def test_a_click_on_a_heatmap_opened_from_an_ome_tiff_inspects_it(viewer, widget, qtbot,
                                                                  tmp_path):
    import tifffile

    from napari_patchheat._reader import read_slides
    from napari_patchheat.export import write_ome_tiff

    image = np.random.default_rng(5).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    slide_file = tmp_path / "slide.tif"
    tifffile.imwrite(slide_file, image, photometric="rgb")
    data, kwargs, _ = read_slides(str(slide_file))[0]
    slide = SlideLayer.from_layer(viewer.add_image(data, **kwargs))
    heatmap = random_heatmap(slide, 0, 50, 30)
    heatmap.slide_path = str(slide_file)
    write_ome_tiff(heatmap, tmp_path / "h.ome.tif")
    for data, kwargs, _ in read_slides(str(tmp_path / "h.ome.tif")):
        viewer.add_image(data, **kwargs)
    widget.size.value = widget.stride.value = 64
    cam = camera(viewer)
    cam.center, cam.zoom = (150.0, 200.0), 1.5
    qtbot.wait(50)
    grid = heatmap.grid
    click(viewer, qtbot, grid.centers(2, 5))
    assert widget.inspector.patch_index == (2, 5)
    np.testing.assert_array_equal(widget.inspector.patch, grid.read_patch(image, 2, 5))
    a, b = heatmap.values[2, 5]
    assert f"a {a:.4g}, b {b:.4g}" in text(widget.inspector.info)


def test_the_outline_of_an_old_grid_goes_with_its_grid(viewer, widget):
    """A heatmap replaced in its layer by one of another grid: the outline is redrawn on the
    new grid (or cleared); the inspected heatmap's layer removed: the outline cleared."""
    image = np.random.default_rng(5).integers(0, 256, (300, 410, 3), dtype=np.uint8)
    layer = viewer.add_image(image, rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    old = random_heatmap(slide, 0, 30, 20)  # 15 x 21 patches
    hl = widget.display.show_heatmap(old, slide)
    inspector = widget.inspector
    assert inspector.select_at(slide.to_world(old.grid.centers(4, 7)))
    assert inspector.heatmap_layer is hl
    before = inspector.highlight.data[0].copy()
    new = random_heatmap(slide, 0, 50, 50)  # 6 x 9 patches: (4, 7) is another box
    assert widget.display.show_heatmap(new, slide, replace=True) is hl
    after = inspector.highlight.data[0]
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, slide.box_to_world(new.grid.boxes(4, 7))[0])
    assert f"of {new.grid.rows} x {new.grid.cols}" in text(inspector.info)
    viewer.layers.remove(hl)
    assert inspector.patch_index is None and inspector.highlight.nshapes == 0
