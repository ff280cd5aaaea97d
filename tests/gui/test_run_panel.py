"""The run panel: a real run on the CMU SVS (TensorFlow in the runner's process only, never in
this one), cancel and resume, layers without a file, failures, and the run's messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from gui_helpers import RUN_TIMEOUT_MS, random_heatmap, text

from napari_patchheat._qt.slide_layer import SlideLayer
from napari_patchheat.heatmap import HEATMAP_META_KEY, Heatmap


def test_a_failing_run_is_a_notification_and_the_widget_stays_usable(viewer, widget, qtbot,
                                                                    errors, tmp_path, svs_path):
    from napari_patchheat._reader import read_slides

    copy = tmp_path / "slide.svs"
    copy.write_bytes(svs_path.read_bytes())
    data, kwargs, _ = read_slides(str(copy))[0]
    viewer.add_image(data, **kwargs)
    widget.cache_dir = str(tmp_path / "cache")
    copy.unlink()  # the file goes away after it was opened: the worker cannot read it
    assert widget.run_panel.run()
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    assert len(errors) == 1 and "slide.svs" in errors[0]
    assert "run failed" in text(widget.run_panel.info)
    assert widget.run_panel.run_button.enabled and not widget.run_panel.cancel_button.enabled

def test_run_fills_the_layer_cancel_keeps_it_run_again_completes(viewer, widget, qtbot, tmp_path,
                                                                 svs_path, monkeypatch):
    """The 'tissue' model over the CMU SVS: values equal `patchheat run`'s (compute_heatmap,
    computed in its own process, since it imports TensorFlow)."""
    from napari_patchheat._reader import read_slides

    ref_dir = tmp_path / "ref"
    reference = subprocess.Popen(
        [sys.executable, "-m", "napari_patchheat.cli", "run", str(svs_path), "--model", "tissue",
         "--size", "32", "--stride", "16", "--tissue-threshold", "0", "--no-cache",
         "--out", str(ref_dir), "--format", "npz"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "tissue"
    widget.tissue_threshold.value = 0.0  # every patch, glass too
    widget.size.value, widget.stride.value, widget.batch_size.value = 32, 16, 4
    widget.batch_auto.value = False  # ~4 s of batches
    grid = widget.grid
    assert grid.shape == (184, 137)
    assert widget.run_panel.run()
    qtbot.waitUntil(
        lambda: widget.display.heatmap is not None and widget.display.heatmap.n_computed >= 200,
        timeout=RUN_TIMEOUT_MS)
    widget.run_panel.cancel()
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    layer, heatmap = widget.display.layer, widget.display.heatmap
    partial = heatmap.n_computed
    assert "cancelled" in text(widget.run_panel.info)
    assert 200 <= partial < grid.n_patches  # Cancel keeps what was computed, and only that
    assert np.isnan(layer.data).sum() == grid.n_patches - partial
    assert layer.name == f"tissue · {svs_path.stem}"  # model · slide, no file extension
    refreshes: list[int] = []
    layer.events.data.connect(lambda e: refreshes.append(int(np.isfinite(layer.data).sum())))
    assert widget.run_panel.run()  # resumes: the runner's cache holds the first run's patches
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    assert text(widget.run_panel.info) == (f"done: {grid.n_patches - partial:,} patches computed "
                                           f"by this run, {partial:,} from the cache")
    bar = widget.run_panel.progress  # the cached patches count as done
    assert widget.display.layer is layer and bar.max == bar.value == grid.n_patches
    assert widget.display.heatmap.n_computed == grid.n_patches
    assert len(refreshes) >= 3 and refreshes == sorted(refreshes)  # filled in progressively
    assert reference.wait(timeout=RUN_TIMEOUT_MS / 1000) == 0, reference.stdout.read()
    ref = Heatmap.load_npz(ref_dir / f"{svs_path.stem}.tissue.npz")
    assert ref.grid == widget.display.heatmap.grid
    np.testing.assert_allclose(widget.display.heatmap.values, ref.values, rtol=1e-6)
    np.testing.assert_allclose(layer.data, ref.values[..., 0], rtol=1e-6)
    assert widget.display.heatmap.slide_path == str(svs_path)
    assert "tensorflow" not in sys.modules
    notes: list[str] = []
    monkeypatch.setattr("napari_patchheat._qt.run_panel.show_info", notes.append)
    assert widget.run_panel.run()  # all cached: done at once, the bar full, a notification
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    assert bar.max == bar.value == grid.n_patches
    assert text(widget.run_panel.info) == (f"done: 0 patches computed by this run, "
                                           f"{grid.n_patches:,} from the cache")
    assert len(notes) == 1 and "is done" in notes[0] and layer.name in notes[0]

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
    assert widget.run_panel.run()
    # the level is written to the TIFF on a worker thread: the process starts after it returns
    assert widget.run_panel.running and widget.run_panel.handle is None
    assert "temporary TIFF" in text(widget.run_panel.info)
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    h = widget.display.heatmap
    assert "done" in text(widget.run_panel.info), text(widget.run_panel.info)
    assert h.level == 1 and h.downsample == (2.0, 2.0) and h.grid.shape == (8, 8)
    assert h.n_computed == 64 and h.slide_path == "" and h.slide_shape == (512, 512)
    scale, translate = widget.display.layer.scale, widget.display.layer.translate
    assert tuple(scale) == (64.0, 64.0) and tuple(translate) == (31.5, 31.5)
    assert widget.display.layer.name == "dab · ihc"

def test_cancel_while_the_layer_is_written_starts_no_process(viewer, widget, qtbot, errors):
    viewer.add_image(np.zeros((600, 700, 3), np.uint8), rgb=True, name="slide")
    widget.size.value = widget.stride.value = 50
    assert widget.run_panel.run()
    assert widget.run_panel.run() is False and "in progress" in errors[0]  # one run at a time
    widget.run_panel.cancel()
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=30_000)
    assert widget.run_panel.handle is None and "cancelled" in text(widget.run_panel.info)
    assert widget.run_panel.run_button.enabled and not widget.run_panel.cancel_button.enabled

def test_batches_land_in_the_runs_heatmap_whichever_layer_is_selected(viewer, widget):
    """The run's messages (runner.Started, inference.Progress, as its process sends them) fill
    the run's own heatmap and layer, also after the user selected another heatmap layer."""
    from napari_patchheat.inference import Progress
    from napari_patchheat.runner import Started

    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    other = widget.display.show_heatmap(random_heatmap(slide, 0, 32, 32, model="other"), slide)
    other_values = other.metadata[HEATMAP_META_KEY].values.copy()
    widget.size.value = widget.stride.value = 40
    widget.padding.value = "SAME"
    empty = random_heatmap(slide, 0, 40, 40)
    empty.values[:] = np.nan
    widget.run_panel.begin(widget.run_request())  # what Run records before the process starts
    widget.run_panel.handle_messages(
        [Started(empty.metadata(), empty.values.copy(), empty.grid.n_patches)])
    run_layer, run_heatmap = widget.display.layer, widget.display.heatmap
    assert run_layer is not other and run_heatmap.grid == widget.grid
    viewer.layers.selection.active = other  # the user looks at the other heatmap meanwhile
    assert widget.display.layer is other
    indices = np.array([[0, 0], [2, 3], [9, 12]])
    values = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]], np.float32)
    widget.run_panel.handle_messages([Progress(indices, values, 3, 130, 0.03)])
    np.testing.assert_array_equal(run_heatmap.values[indices[:, 0], indices[:, 1]], values)
    assert run_heatmap.n_computed == 3
    np.testing.assert_array_equal(run_layer.data[indices[:, 0], indices[:, 1]], values[:, 0])
    np.testing.assert_array_equal(other.metadata[HEATMAP_META_KEY].values, other_values)
    assert widget.display.layer is other and widget.run_panel.progress.value == 3

def test_replacing_a_layers_data_writes_its_new_pixels(viewer, widget):
    """The temporary TIFF (and the tissue estimate) belong to the layer's data, not its id."""
    import tifffile

    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    layer = viewer.add_image(a, rgb=True, name="slide")
    widget.size.value = widget.stride.value = 50
    first = Path(widget.run_panel.spec().slide)
    np.testing.assert_array_equal(tifffile.imread(first), a)
    assert Path(widget.run_panel.spec().slide) == first  # written once while the pixels stay
    b = 255 - a
    layer.data = b
    second = Path(widget.run_panel.spec().slide)
    assert second != first
    np.testing.assert_array_equal(tifffile.imread(second), b)


def test_cache_trouble_is_a_warning_and_the_run_completes(viewer, widget, qtbot, errors,
                                                          tmp_path, svs_path, monkeypatch):
    """A cache folder that is a file: the worker's CacheWarning reaches napari as a warning
    notification; the run is not stopped and no error is shown."""
    from napari_patchheat._reader import read_slides

    warned: list[str] = []
    monkeypatch.setattr("napari_patchheat._qt.run_panel.show_warning", warned.append)
    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    a_file = tmp_path / "cache-is-a-file"
    a_file.write_text("")
    widget.cache_dir = str(a_file)
    widget.model.value = "tissue"
    widget.size.value, widget.stride.value = 128, 128
    assert widget.run_panel.run()
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    assert len(warned) == 1 and "results will not be cached" in warned[0]
    assert errors == [] and text(widget.run_panel.info).startswith("done")
