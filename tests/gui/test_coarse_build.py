"""A huge single-level slide in napari: its zoomed-out views are blank while built on a worker
thread (the event loop keeps turning), then the layer shows the built levels; removing the layer
cancels; a cache that cannot be written falls back to the computed levels with a warning."""

from __future__ import annotations

import time

import dask.array as da
import numpy as np
import pytest
import tifffile
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_patchheat._qt.coarse_build import is_pending, running_builds
from napari_patchheat.slide import coarse, rgb_pyramid
from napari_patchheat.slide.pyramid import halve_block

PLUGIN = "napari-patchheat"
SHAPE = (4100, 6003)


@pytest.fixture
def huge(monkeypatch, tmp_path):
    """A 4100 x 6003 px single-level TIFF of noise, huge above 2**20 px; the cache in tmp_path."""
    monkeypatch.setattr(coarse, "COARSE_BUILD_MIN_PX", 2**20)
    monkeypatch.setenv("PATCHHEAT_CACHE_DIR", str(tmp_path / "cache"))
    image = np.random.default_rng(0).integers(0, 256, (*SHAPE, 3), np.uint8)
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb", compression="zlib")
    return path, image


class LoopProbe:
    """Records when a 10 ms QTimer fires: the longest gap is the longest the loop was blocked."""

    def __init__(self) -> None:
        self.ticks = [time.monotonic()]
        self.timer = QTimer()
        self.timer.timeout.connect(lambda: self.ticks.append(time.monotonic()))
        self.timer.start(10)

    def longest_gap_s(self) -> float:
        self.timer.stop()
        return float(np.diff(self.ticks).max())


def test_zoomed_out_views_build_without_blocking_then_show(make_napari_viewer, qtbot, huge):
    path, image = huge
    viewer = make_napari_viewer(show=True)
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    probe = LoopProbe()
    assert is_pending(layer) and len(layer.data) == 3
    assert not np.asarray(layer.data[2][:8, :8]).any()  # blank: level 0 is not read for it
    viewer.reset_view()  # the zoomed-out view napari draws at once
    QApplication.processEvents()
    qtbot.waitUntil(lambda: not is_pending(layer) and not running_builds(), timeout=120_000)
    gap = probe.longest_gap_s()
    expected, _ = rgb_pyramid([da.from_array(image, chunks=(1024, 1024, 3))])
    for built, level in zip(layer.data[1:], expected[1:], strict=True):
        np.testing.assert_array_equal(np.asarray(built), level.compute())
    assert layer.metadata["downsamples"] == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    assert len(probe.ticks) > 10 and gap < 1.0, gap  # the loop kept turning


@pytest.mark.parametrize("close", ["layer", "viewer"])
def test_removing_the_layer_or_closing_the_viewer_cancels_the_build(make_napari_viewer, qtbot,
                                                                    huge, tmp_path, close):
    path, _ = huge
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    [build] = running_builds()
    if close == "layer":
        viewer.layers.remove(layer)
    else:
        viewer.close()
    assert build.cancel.is_set()
    qtbot.waitUntil(lambda: not running_builds(), timeout=60_000)
    assert not list((tmp_path / "cache" / "coarse").glob("*.tif"))


def test_an_unwritable_cache_warns_and_shows_computed_levels(make_napari_viewer, qtbot, huge,
                                                             tmp_path, monkeypatch):
    import napari.utils.notifications

    path, image = huge
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    warned: list[str] = []
    monkeypatch.setattr(napari.utils.notifications, "show_warning", warned.append)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    qtbot.waitUntil(lambda: not is_pending(layer) and not running_builds(), timeout=60_000)
    assert len(warned) == 1 and "could not be built" in warned[0], warned
    np.testing.assert_array_equal(np.asarray(layer.data[2][:2, :2]),  # the lazy 2x2 means
                                  halve_block(halve_block(image[:8, :8])))


def test_the_dock_shows_the_build_and_its_cancel(widget, viewer, qtbot, huge, tmp_path,
                                                 monkeypatch):
    """The Grid section's line follows the build; Cancel stops it, the views stay blank (the
    build is held at its first step until the test has clicked)."""
    import threading

    from napari_patchheat._qt.coarse_build import CANCELLED, COARSE_PENDING_KEY, CoarseBuild

    path, _ = huge
    gate = threading.Event()
    record = CoarseBuild._progress

    def held(self, done, total):
        record(self, done, total)
        gate.wait(30)

    monkeypatch.setattr(CoarseBuild, "_progress", held)
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    widget.image_layer.value = layer
    line = widget.build_status
    qtbot.waitUntil(lambda: line.info.value.endswith("%") and running_builds()[0].done > 0)
    assert line.visible and line.cancel_button.visible
    assert "building the zoomed-out views: " in line.info.value
    assert not widget.tissue_ready  # no estimate from the blank levels
    line.cancel_button.clicked.emit(False)
    gate.set()
    qtbot.waitUntil(lambda: not running_builds(), timeout=60_000)
    qtbot.waitUntil(lambda: "cancelled" in line.info.value)
    assert layer.metadata[COARSE_PENDING_KEY] == CANCELLED and not line.cancel_button.visible
    assert not np.asarray(layer.data[2][:8, :8]).any()
    assert not list((tmp_path / "cache" / "coarse").glob("*.tif"))


def test_the_dock_line_goes_once_built_and_the_tissue_estimate_comes(widget, viewer, qtbot,
                                                                     huge):
    path, _ = huge
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    widget.image_layer.value = layer
    assert widget.build_status.visible and not widget.tissue_ready
    qtbot.waitUntil(lambda: not is_pending(layer) and not running_builds(), timeout=120_000)
    assert not widget.build_status.visible
    qtbot.waitUntil(lambda: widget.tissue_ready, timeout=60_000)
    assert "tissue" in widget.status.value
