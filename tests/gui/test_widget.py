"""The PatchHeat dock widget: heatmap placement, display, the inspector, export, errors, and a
real run on the CMU SVS (TensorFlow in the runner's process only, never in this one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from napari_patchheat._preview import camera
from napari_patchheat._slide_layer import SlideLayer
from napari_patchheat.export import FORMATS, SUFFIXES
from napari_patchheat.extract import numpy_extract_valid
from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap

RUN_TIMEOUT_MS = 180_000


def text(label) -> str:
    """A label's text on one line (labels break long lines)."""
    return " ".join(label.value.split())


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    """The messages the widget sends to napari's error notifications."""
    shown: list[str] = []
    monkeypatch.setattr("napari_patchheat._widget.show_error", shown.append)
    return shown


def random_heatmap(slide: SlideLayer, level: int, size: int, stride: int, classes=("a", "b"),
                   padding="SAME", seed=0, model="toy") -> Heatmap:
    h, w = slide.level_shape(level)
    grid = PatchGrid(h, w, size, stride, padding=padding)
    values = np.random.default_rng(seed).random((*grid.shape, len(classes))).astype(np.float32)
    values[0, :3] = np.nan  # not computed: transparent
    return Heatmap(values, grid, level, slide.downsamples[level], classes, mpp=slide.mpp,
                   model_name=model, model_fingerprint=f"{model}-fp")


# --- docking and parameters ---------------------------------------------------------------------
def test_the_plugins_menu_docks_the_widget(viewer, qtbot, pyramid):
    from napari_patchheat._widget import PatchHeatWidget

    viewer.add_image(pyramid(np.zeros((1000, 1200, 3), np.uint8), (2,)), rgb=True,
                     multiscale=True, scale=(0.5, 0.5), metadata={"mpp": (0.5, 0.5)}, name="s")
    _, w = viewer.window.add_plugin_dock_widget("napari-patchheat", "PatchHeat")
    try:
        assert isinstance(w, PatchHeatWidget) and w.viewer is viewer  # not napari's proxy
        assert w.level.choices == (0, 1)
        assert w.level.native.itemText(0) == "0: 1,200 x 1,000 px, 0.5 µm/px (20x)"
        assert w.level.native.itemText(1) == "1: 600 x 500 px, 1 µm/px (10x)"
        w.size.value = w.stride.value = 100
        w.preview.update_now()
        assert w.preview.layer.nshapes == 10 * 12
    finally:
        qtbot.waitUntil(lambda: not w._workers, timeout=30_000)


def test_a_keras_file_shows_its_cards_classes(viewer, widget, tmp_path):
    import json

    viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    model = tmp_path / "tumour.keras"
    model.write_bytes(b"not read here: the card is")
    (tmp_path / "tumour.json").write_text(json.dumps(
        {"class_names": ["normal", "tumour"], "input_size": 96}))
    widget.model.value = "Keras file…"
    assert widget.model_file.visible and "choose a model file" in text(widget.status)
    widget.model_file.value = model
    assert text(widget.model_info) == "normal, tumour"
    assert widget.model_spec() == str(model)
    assert "takes 96 x 96 px patches" in text(widget.status)
    widget.size.value = 96
    assert "takes" not in text(widget.status)
    widget.size.value = 224
    widget.resize.value = True
    assert "takes" not in text(widget.status)
    assert widget.mixed_precision.visible and not widget.run_spec().mixed_precision
    widget.mixed_precision.value = True
    assert widget.run_spec().mixed_precision
    widget.model.value = "dab"  # built-ins compute in float32: the option goes away
    assert not widget.mixed_precision.visible and not widget.run_spec().mixed_precision


# --- the heatmap layer --------------------------------------------------------------------------
@pytest.mark.parametrize("level, mpp", [(0, None), (1, None), (1, 0.25)])
def test_heatmap_cells_lie_on_their_patches(viewer, widget, pyramid, level, mpp):
    levels = pyramid(np.zeros((1001, 1403, 3), np.uint8), (4,))
    scale = 1.0 if mpp is None else mpp
    layer = viewer.add_image(levels, rgb=True, multiscale=True, scale=(scale, scale),
                             metadata={} if mpp is None else {"mpp": (mpp, mpp)}, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, level, 24, 24)  # stride == size: cells are the patches
    hl = widget.show_heatmap(heatmap, slide)
    grid, ds = heatmap.grid, heatmap.downsample
    assert ds == (1001 / 251, 1403 / 351) if level else ds == (1.0, 1.0)
    for i, j in [(1, 1), (3, 7), (grid.rows - 1, grid.cols - 1), (grid.rows // 2, 5)]:
        centre = grid.centers(i, j, ds) * scale  # world point of the patch's centre
        assert np.allclose(np.round(hl.world_to_data(centre)), (i, j))
        assert hl.get_value(centre, world=True) == pytest.approx(heatmap.values[i, j, 0])
        # the cell's far edges (data i + 1/2) lie where the patch's level-0 box ends: pixel
        # y1 - 1 is the last one in the patch, its outer edge is world y1 - 0.5
        y0, x0, y1, x1 = grid.box(i, j, ds)
        edge = np.asarray(hl.data_to_world((i + 0.5, j + 0.5)))
        assert np.abs(edge - (np.array([y1, x1]) - 0.5) * scale).max() <= 0.5 * scale
        start = np.asarray(hl.data_to_world((i - 0.5, j - 0.5)))
        assert np.abs(start - (np.array([y0, x0]) - 0.5) * scale).max() <= 0.5 * scale
    assert np.isnan(hl.get_value(grid.centers(0, 1, ds) * scale, world=True))  # not computed


def test_class_colormap_opacity_never_recompute(viewer, widget):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    heatmap = random_heatmap(SlideLayer.from_layer(layer), 0, 40, 40)
    hl = widget.show_heatmap(heatmap, SlideLayer.from_layer(layer))
    values = heatmap.values
    assert widget.class_name.choices == ("a", "b") and hl.name == "slide toy a"
    widget.class_name.value = "b"
    np.testing.assert_array_equal(hl.data, values[..., 1])
    assert hl.name == "slide toy b" and hl.metadata["patchheat_class"] == 1
    widget.colormap.value = "viridis"
    widget.opacity.value = 0.3
    assert hl.colormap.name == "viridis" and hl.opacity == pytest.approx(0.3)
    assert tuple(hl.contrast_limits) == (0.0, 1.0)
    assert widget.heatmap.values is values and not widget.running


def test_other_parameters_make_a_new_layer_same_ones_merge(viewer, widget):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    first = widget.show_heatmap(random_heatmap(slide, 0, 40, 40), slide)
    other = widget.show_heatmap(random_heatmap(slide, 0, 40, 20), slide)
    assert other is not first and first in viewer.layers  # another grid: a layer of its own
    again = random_heatmap(slide, 0, 40, 40, seed=5)
    again.values[:] = np.nan  # e.g. a run whose cache was lost
    assert widget.show_heatmap(again, slide) is first  # same grid and model: merged
    np.testing.assert_array_equal(first.data, random_heatmap(slide, 0, 40, 40).values[..., 0])
    n = len(viewer.layers)
    replaced = widget.show_heatmap(random_heatmap(slide, 0, 32, 32), slide, replace=True)
    assert replaced is first and len(viewer.layers) == n and first.data.shape == (13, 16)


def test_a_heatmap_read_back_from_a_file_finds_its_slide(viewer, widget, tmp_path):
    import tifffile

    from napari_patchheat._reader import read_slides
    from napari_patchheat.export import write_ome_tiff

    slide_file = tmp_path / "slide.tif"
    tifffile.imwrite(slide_file, np.full((300, 400, 3), 180, np.uint8), photometric="rgb")
    data, kwargs, _ = read_slides(str(slide_file))[0]
    viewer.add_image(data, **kwargs)
    slide = SlideLayer.from_layer(viewer.layers[-1])
    heatmap = random_heatmap(slide, 0, 50, 50)
    heatmap.slide_path = str(slide_file)
    write_ome_tiff(heatmap, tmp_path / "h.ome.tif")
    for data, kwargs, _ in read_slides(str(tmp_path / "h.ome.tif")):
        viewer.add_image(data, **kwargs)  # selecting it makes it the heatmap in use
    assert widget.heatmap is not None and widget.heatmap.grid == heatmap.grid
    assert widget.image_layer.value is viewer.layers[0]  # heatmaps are not offered as slides
    assert widget.display.source_of(widget.heatmap_layer) is viewer.layers[0]  # by its path
    widget.size.value = widget.stride.value = 50
    widget.padding.value = "SAME"
    widget.inspector.select(1, 2)
    a, b = heatmap.values[1, 2]
    assert f"a: {a:.4g}, b: {b:.4g}" in text(widget.inspector.info)
    widget.export_folder.value = tmp_path / "out"
    widget.export_formats["png"].value = True
    assert widget.export()["png"].is_file()


# --- the patch inspector ------------------------------------------------------------------------
def click(viewer, qtbot, world_yx) -> None:
    """A left click on the canvas at a world point."""
    canvas = viewer.window._qt_viewer.canvas.native
    cam = camera(viewer)
    y = (world_yx[0] - cam.center[-2]) * cam.zoom + canvas.height() / 2
    x = (world_yx[1] - cam.center[-1]) * cam.zoom + canvas.width() / 2
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(round(x), round(y)))


def test_inspector_shows_exactly_the_patch_tensorflow_extracts(viewer, widget, qtbot):
    image = np.random.default_rng(2).integers(0, 256, (300, 410, 3), dtype=np.uint8)
    viewer.add_image(image, rgb=True, name="slide")
    widget.size.value, widget.stride.value, widget.rate.value = 9, 13, 3
    widget.padding.value = "SAME"
    grid = widget.grid
    assert grid == PatchGrid(300, 410, 9, 13, 3, "SAME")
    # TF's SAME extraction = VALID extraction of the zero-padded image (numpy_extract_valid is
    # held to tf.image.extract_patches in tests/test_extract.py)
    (pt, pl), (pb, pr) = grid.pad_before, grid.pad_after
    padded = np.pad(image, ((pt, pb), (pl, pr), (0, 0)))
    ref = numpy_extract_valid(padded, grid)
    assert ref.shape[:2] == grid.shape
    cam = camera(viewer)
    cam.center, cam.zoom = (150.0, 205.0), 1.5
    qtbot.wait(50)
    for i, j in [(0, 0), (7, 11), (grid.rows - 1, grid.cols - 1)]:
        click(viewer, qtbot, grid.centers(i, j))
        assert widget.inspector.index == (i, j)
        np.testing.assert_array_equal(widget.inspector.patch, ref[i, j])
        shown = widget.inspector.shown  # the pixels on screen: the patch zoomed, nothing else
        f = shown.shape[0] // 9
        np.testing.assert_array_equal(shown[::f, ::f], ref[i, j])
        assert widget.inspector.image.pixmap().width() == 9 * f
        info = text(widget.inspector.info)
        y0, x0, y1, x1 = grid.box(i, j)
        assert f"(row {i}, col {j})" in info and f"y {y0:g}–{y1:g}, x {x0:g}–{x1:g}" in info
        assert "not computed yet" in info
    assert (ref[0, 0][:1] == 0).all()  # the first patch starts in SAME's zero padding
    widget.inspector.right.native.click()
    assert widget.inspector.index == (grid.rows - 1, grid.cols - 1)  # the last column: stays
    widget.inspector.up.native.click()
    assert widget.inspector.index == (grid.rows - 2, grid.cols - 1)
    np.testing.assert_array_equal(widget.inspector.patch, ref[grid.rows - 2, grid.cols - 1])
    widget.inspector.row.value, widget.inspector.col.value = 3, 4
    np.testing.assert_array_equal(widget.inspector.patch, ref[3, 4])
    # a drag is a pan, not a click: the selection stays
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    qtbot.mouseMove(canvas, QPoint(160, 140))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(160, 140))
    assert widget.inspector.index == (3, 4)


def test_alt_arrow_keys_step_the_inspector(viewer, widget):
    from app_model.types import KeyBinding

    viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    widget.size.value = widget.stride.value = 40
    press = {k: viewer.keymap[KeyBinding.from_str(k)] for k in ("Alt-Right", "Alt-Down", "Alt-Up")}
    press["Alt-Right"](viewer)  # nothing selected yet: the first patch
    assert widget.inspector.index == (0, 0)
    press["Alt-Right"](viewer)
    press["Alt-Down"](viewer)
    press["Alt-Down"](viewer)
    press["Alt-Up"](viewer)
    assert widget.inspector.index == (1, 1)


def test_inspector_shows_predictions_once_computed(viewer, widget):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    widget.size.value = widget.stride.value = 40
    widget.padding.value = "SAME"
    widget.inspector.select(2, 3)
    assert "not computed yet" in text(widget.inspector.info)
    heatmap = random_heatmap(SlideLayer.from_layer(layer), 0, 40, 40)
    widget.show_heatmap(heatmap, SlideLayer.from_layer(layer))
    a, b = heatmap.values[2, 3]
    assert f"a: {a:.4g}, b: {b:.4g}" in text(widget.inspector.info)


# --- export -------------------------------------------------------------------------------------
def test_export_writes_every_format(viewer, widget, tmp_path):
    layer = viewer.add_image(np.full((400, 500, 3), 200, np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    widget.show_heatmap(random_heatmap(slide, 0, 40, 40), slide)
    widget.export_folder.value = tmp_path / "out"
    widget.export_stem.value = "case1"
    files = widget.export()
    assert set(files) == set(FORMATS) | {"json"}
    for fmt in FORMATS:
        assert files[fmt] == tmp_path / "out" / f"case1{SUFFIXES[fmt]}" and files[fmt].stat().st_size
    assert "exported" in text(widget.export_info)


def test_export_to_an_unwritable_folder_is_an_error_and_keeps_the_layer(viewer, widget, tmp_path,
                                                                         errors):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, 0, 40, 40)
    hl = widget.show_heatmap(heatmap, slide)
    before = heatmap.values.copy()
    (tmp_path / "a_file").write_text("in the way")
    widget.export_folder.value = tmp_path / "a_file" / "out"  # a folder under a file
    assert widget.export() is None
    assert len(errors) == 1 and "Cannot write" in errors[0] and "a_file" in errors[0]
    assert "Cannot write" in text(widget.status)
    assert hl in viewer.layers and widget.heatmap is heatmap
    np.testing.assert_array_equal(heatmap.values, before)
    widget.export_folder.value = tmp_path / "fine"  # the widget stays usable
    assert widget.export() is not None


# --- errors -------------------------------------------------------------------------------------
def test_bad_parameters_are_said_and_do_not_run(viewer, widget, errors):
    viewer.add_image(np.zeros((100, 120, 3), np.uint8), rgb=True, name="slide")
    widget.size.value = 200
    assert "No patch fits" in text(widget.status)
    assert widget.run() is False and not widget.running
    assert len(errors) == 1 and "No patch fits" in errors[0]
    widget.size.value = widget.stride.value = 20
    assert text(widget.status).startswith("5 x 6 = 30 patches")


def test_a_failing_run_is_a_notification_and_the_widget_stays_usable(viewer, widget, qtbot,
                                                                    errors, tmp_path, svs_path):
    from napari_patchheat._reader import read_slides

    copy = tmp_path / "slide.svs"
    copy.write_bytes(svs_path.read_bytes())
    data, kwargs, _ = read_slides(str(copy))[0]
    viewer.add_image(data, **kwargs)
    widget.cache_dir = str(tmp_path / "cache")
    copy.unlink()  # the file goes away after it was opened: the worker cannot read it
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    assert len(errors) == 1 and "slide.svs" in errors[0]
    assert "run failed" in text(widget.run_info)
    assert widget.run_button.enabled and not widget.cancel_button.enabled


# --- a real run ---------------------------------------------------------------------------------
def test_run_fills_the_layer_cancel_keeps_it_run_again_completes(viewer, widget, qtbot, tmp_path,
                                                                 svs_path):
    """The 'tissue' model over the CMU SVS: values equal `patchheat run`'s (compute_heatmap,
    computed in its own process, since it imports TensorFlow)."""
    from napari_patchheat._reader import read_slides

    ref_dir = tmp_path / "ref"
    reference = subprocess.Popen(
        [sys.executable, "-m", "napari_patchheat.cli", "run", str(svs_path), "--model", "tissue",
         "--size", "32", "--stride", "16", "--no-cache", "--out", str(ref_dir), "--format", "npz"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "tissue"
    widget.size.value, widget.stride.value, widget.batch_size.value = 32, 16, 4  # ~4 s of batches
    grid = widget.grid
    assert grid.shape == (184, 137)
    assert widget.run()
    qtbot.waitUntil(lambda: widget.heatmap is not None and widget.heatmap.n_computed >= 200,
                    timeout=RUN_TIMEOUT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    layer, heatmap = widget.heatmap_layer, widget.heatmap
    partial = heatmap.n_computed
    assert "cancelled" in text(widget.run_info)
    assert 200 <= partial < grid.n_patches  # Cancel keeps what was computed, and only that
    assert np.isnan(layer.data).sum() == grid.n_patches - partial
    assert layer.name == f"{svs_path.name} tissue tissue_fraction"
    refreshes: list[int] = []
    layer.events.data.connect(lambda e: refreshes.append(int(np.isfinite(layer.data).sum())))
    assert widget.run()  # resumes: the runner's cache holds the first run's patches
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    assert "done" in text(widget.run_info)
    assert widget.heatmap_layer is layer and widget.progress.max == grid.n_patches - partial
    assert widget.heatmap.n_computed == grid.n_patches
    assert len(refreshes) >= 3 and refreshes == sorted(refreshes)  # filled in progressively
    assert reference.wait(timeout=RUN_TIMEOUT_MS / 1000) == 0, reference.stdout.read()
    ref = Heatmap.load_npz(ref_dir / f"{svs_path.stem}.tissue.npz")
    assert ref.grid == widget.heatmap.grid
    np.testing.assert_allclose(widget.heatmap.values, ref.values, rtol=1e-6)
    np.testing.assert_allclose(layer.data, ref.values[..., 0], rtol=1e-6)
    assert widget.heatmap.slide_path == str(svs_path)
    assert "tensorflow" not in sys.modules


def test_a_layer_without_a_file_runs_through_a_temporary_tiff(viewer, widget, qtbot, tmp_path,
                                                              pyramid):
    """The IHC sample as a numpy pyramid, run at level 1: the heatmap lands on level 1's grid."""
    import skimage.data

    levels = pyramid(skimage.data.immunohistochemistry(), (2,))
    viewer.add_image(levels, rgb=True, multiscale=True, name="ihc")
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "dab"
    widget.level.value = 1
    widget.size.value, widget.stride.value = 32, 32
    assert widget.run()
    # the level is written to the TIFF on a worker thread: the process starts after it returns
    assert widget.running and widget.run_handle is None
    assert "temporary TIFF" in text(widget.run_info)
    qtbot.waitUntil(lambda: not widget.running, timeout=RUN_TIMEOUT_MS)
    h = widget.heatmap
    assert "done" in text(widget.run_info), text(widget.run_info)
    assert h.level == 1 and h.downsample == (2.0, 2.0) and h.grid.shape == (8, 8)
    assert h.n_computed == 64 and h.slide_path == "" and h.slide_shape == (512, 512)
    scale, translate = widget.heatmap_layer.scale, widget.heatmap_layer.translate
    assert tuple(scale) == (64.0, 64.0) and tuple(translate) == (31.5, 31.5)
    assert widget.heatmap_layer.name == "ihc dab dab_positive"


def test_every_layer_the_widget_adds_shares_the_slides_units(viewer, widget, svs_path):
    """napari drops the scale bar's µm when layers disagree on units."""
    viewer.open(str(svs_path), plugin="napari-patchheat")
    slide_layer = viewer.layers[0]
    assert [str(u) for u in slide_layer.units] == ["micrometer", "micrometer"]
    widget.size.value = widget.stride.value = 200
    widget.preview.update_now()
    widget.inspector.select(1, 1)
    slide = SlideLayer.from_layer(slide_layer)
    widget.show_heatmap(random_heatmap(slide, 0, 200, 200), slide)
    assert len(viewer.layers) == 4  # slide, heatmap, grid preview, selected patch
    for layer in viewer.layers:
        assert tuple(layer.units) == tuple(slide_layer.units), layer.name


def test_cancel_while_the_layer_is_written_starts_no_process(viewer, widget, qtbot, errors):
    viewer.add_image(np.zeros((600, 700, 3), np.uint8), rgb=True, name="slide")
    widget.size.value = widget.stride.value = 50
    assert widget.run()
    assert widget.run() is False and "in progress" in errors[0]  # one run at a time
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert widget.run_handle is None and "cancelled" in text(widget.run_info)
    assert widget.run_button.enabled and not widget.cancel_button.enabled


# --- run state ----------------------------------------------------------------------------------
def test_batches_land_in_the_runs_heatmap_whichever_layer_is_selected(viewer, widget):
    """The run's messages (runner.Started/Batch, as its process sends them) fill the run's own
    heatmap and layer, also after the user selected another heatmap layer."""
    from napari_patchheat.runner import Batch, Started

    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    other = widget.show_heatmap(random_heatmap(slide, 0, 32, 32, model="other"), slide)
    other_values = other.metadata["patchheat_heatmap"].values.copy()
    widget.size.value = widget.stride.value = 40
    widget.padding.value = "SAME"
    empty = random_heatmap(slide, 0, 40, 40)
    empty.values[:] = np.nan
    widget._run = widget._run_context()  # what run() records before the process starts
    widget.handle_messages([Started(empty.metadata(), empty.values.copy(), empty.grid.n_patches)])
    run_layer, run_heatmap = widget.heatmap_layer, widget.heatmap
    assert run_layer is not other and run_heatmap.grid == widget.grid
    viewer.layers.selection.active = other  # the user looks at the other heatmap meanwhile
    assert widget.heatmap_layer is other
    indices = np.array([[0, 0], [2, 3], [9, 12]])
    values = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]], np.float32)
    widget.handle_messages([Batch(indices, values, 3, 130, 100.0)])
    np.testing.assert_array_equal(run_heatmap.values[indices[:, 0], indices[:, 1]], values)
    assert run_heatmap.n_computed == 3
    np.testing.assert_array_equal(run_layer.data[indices[:, 0], indices[:, 1]], values[:, 0])
    np.testing.assert_array_equal(other.metadata["patchheat_heatmap"].values, other_values)
    assert widget.heatmap_layer is other and widget.progress.value == 3


def test_replacing_a_layers_data_writes_its_new_pixels(viewer, widget):
    """The temporary TIFF (and the tissue estimate) belong to the layer's data, not its id."""
    import tifffile

    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    layer = viewer.add_image(a, rgb=True, name="slide")
    widget.size.value = widget.stride.value = 50
    first = Path(widget.run_spec().slide)
    np.testing.assert_array_equal(tifffile.imread(first), a)
    assert Path(widget.run_spec().slide) == first  # written once while the pixels stay
    b = 255 - a
    layer.data = b
    second = Path(widget.run_spec().slide)
    assert second != first
    np.testing.assert_array_equal(tifffile.imread(second), b)


def test_an_ended_runs_process_is_reaped(qtbot, tmp_path):
    """After its last message the run's process is joined (off the GUI thread): no zombie."""
    from napari_patchheat._run_watch import RunWatcher
    from napari_patchheat.runner import Failed, RunSpec

    if not Path("/proc/self").exists():
        pytest.skip("needs /proc to tell a zombie process from a reaped one")
    watcher = RunWatcher(RunSpec(slide=str(tmp_path / "missing.svs"), model="tissue",
                                 cache_dir=str(tmp_path / "cache")))
    pid = watcher.handle.process.pid
    qtbot.waitUntil(lambda: not watcher._reader.is_alive(), timeout=RUN_TIMEOUT_MS)
    messages = watcher.drain()
    assert len(messages) == 1 and isinstance(messages[0], Failed), messages
    assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie


@pytest.mark.parametrize("with_file", [True, False])
def test_the_status_lines_count_to_run_is_the_runs(viewer, widget, qtbot, slide_writer,
                                                   real_pixels, tmp_path, with_file):
    """"N to run" is what the run computes: tissue.patch_tissue_fraction of the slide the run
    opens (the file, or the level written as a TIFF for a layer without one) >= threshold."""
    from napari_patchheat._reader import read_slides
    from napari_patchheat.runner import array_to_tiff
    from napari_patchheat.slide import open_slide
    from napari_patchheat.tissue import patch_tissue_fraction

    image = np.tile(real_pixels, (2, 1, 1))[:4500]  # big enough for a computed level (> 2048 px)
    path, levels = slide_writer("s.ome.tif", image, layout="subifds", levels=2, mpp=0.5)
    if with_file:
        data, kwargs, _ = read_slides(str(path))[0]
        viewer.add_image(data, **kwargs)
    else:
        viewer.add_image(levels, rgb=True, multiscale=True, name="s")
    threshold = 0.5
    for level, size in [(0, 64), (1, 48), (1, 8)]:
        widget.level.value = level
        widget.size.value = widget.stride.value = size
        widget.tissue_threshold.value = threshold
        qtbot.waitUntil(lambda: widget.tissue_ready and "to run" in text(widget.status),
                        timeout=60_000)
        if with_file:
            run_slide, run_level = open_slide(path), level
        else:
            (tmp_path / f"{level}-{size}").mkdir()
            run_slide = open_slide(array_to_tiff(levels[level], tmp_path / f"{level}-{size}"))
            run_level = 0
        want = int((patch_tissue_fraction(run_slide, widget.grid, run_level) >= threshold).sum())
        run_slide.close()
        assert 0 < want < widget.grid.n_patches
        assert f", {want:,} to run" in text(widget.status), (level, size, text(widget.status))
