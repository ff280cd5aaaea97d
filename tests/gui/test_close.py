"""Closing napari while the dock works (issue #24): right after the dock opens (the warm worker
still importing TensorFlow), during a run, a batch, an export and a huge slide's build. No
exception reaches napari, the dock's threads and timers stop, and the processes it started (the
run's worker, the batch's local cluster) are gone within GONE_S."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import psutil
import pytest
import tifffile
from gui_helpers import RUN_TIMEOUT_MS, random_heatmap, text

from napari_patchheat._qt import heatmap_panel
from napari_patchheat._qt.batch_panel import BATCH_POLL_MS
from napari_patchheat._qt.coarse_build import COARSE_POLL_MS, CoarseBuild, running_builds
from napari_patchheat._qt.run_panel import RUN_POLL_MS
from napari_patchheat._qt.slide_layer import SlideLayer
from napari_patchheat.runner import close_shared_worker
from napari_patchheat.slide import coarse

PLUGIN = "napari-patchheat"
GONE_S = 5.0  # the dock's threads and processes end within this after the viewer closed
TIMERS_MS = 3 * max(RUN_POLL_MS, BATCH_POLL_MS, COARSE_POLL_MS)  # a timer left would fire


def children() -> set[int]:
    """This process's child processes (recursive), zombies left out (they are gone)."""
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture
def dock(make_napari_viewer: Any) -> Any:
    """(viewer, the dock widget opened as napari opens it, the child processes before)."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()  # Python's, one per process (the first spawn starts it)
    close_shared_worker()  # as in a fresh napari: the dock starts the warm worker
    before = children()
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "PatchHeat")
    return viewer, widget, before


def close_and_check(viewer: Any, widget: Any, before: set[int], qtbot: Any) -> None:
    """Close ``viewer``, turn the event loop until the dock's threads (napari workers, ours
    named patchheat-*) and processes are gone (at most GONE_S) and its timers would have
    fired; assert no exception reached napari (Qt slots, event callbacks, threads) and nothing
    is left."""
    thread_errors: list[BaseException | None] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: thread_errors.append(args.exc_value)

    def left() -> Any:
        threads = [t.name for t in threading.enumerate() if t.name.startswith("patchheat-")]
        return children() - before, widget.workers.idle, running_builds(), threads

    try:
        with qtbot.capture_exceptions() as raised:
            viewer.close()
            start = time.monotonic()
            while time.monotonic() - start < GONE_S and left() != (set(), True, [], []):
                qtbot.wait(50)
            took = time.monotonic() - start
            qtbot.wait(TIMERS_MS)
    finally:
        threading.excepthook = hook
    assert not raised, [f"{e[0].__name__}: {e[1]}" for e in raised]
    assert not thread_errors, thread_errors
    assert left() == (set(), True, [], []), f"after {took:.1f} s: (processes, napari " \
        f"workers idle, builds, threads) {left()}"


def open_svs(viewer: Any, svs_path: Any) -> Any:
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    return viewer.add_image(data, **kwargs)


def long_run_parameters(widget: Any, tmp_path: Any) -> None:
    """The 'dab' model over every patch of 8 px at stride 2: 1.6M patches, minutes of work."""
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "dab"
    widget.tissue_threshold.value = 0.0
    widget.size.value, widget.stride.value = 8, 2


def test_closing_right_after_the_dock_opens(dock, qtbot):
    viewer, widget, before = dock
    assert children() - before  # the warm worker, importing TensorFlow
    close_and_check(viewer, widget, before, qtbot)


def test_closing_during_a_run(dock, qtbot, tmp_path, svs_path):
    viewer, widget, before = dock
    open_svs(viewer, svs_path)
    long_run_parameters(widget, tmp_path)
    assert widget.run_panel.run()
    qtbot.waitUntil(lambda: widget.display.heatmap is not None
                    and widget.display.heatmap.n_computed > 0, timeout=RUN_TIMEOUT_MS)
    assert widget.run_panel.running
    close_and_check(viewer, widget, before, qtbot)


def test_closing_during_a_batch(dock, qtbot, tmp_path, svs_path, monkeypatch):
    import functools

    import distributed

    viewer, widget, before = dock
    monkeypatch.setattr(distributed, "LocalCluster", functools.partial(
        distributed.LocalCluster, n_workers=1, threads_per_worker=1))
    open_svs(viewer, svs_path)
    long_run_parameters(widget, tmp_path)
    panel = widget.batch_panel
    panel.out.value = tmp_path / "out"
    assert panel.run()
    qtbot.waitUntil(lambda: "/ " in text(panel.info) and not text(panel.info).startswith(
        "CMU-1-Small-Region.svs: 0 /"), timeout=RUN_TIMEOUT_MS)  # computing
    assert panel.running
    close_and_check(viewer, widget, before, qtbot)


def test_closing_during_an_export(dock, qtbot, tmp_path, monkeypatch):
    """The export is held after its first format until the dock is deleted."""
    viewer, widget, before = dock
    gate, write = threading.Event(), heatmap_panel.write_export

    def held(*args: Any, **kwargs: Any) -> Any:
        files = write(*args, **kwargs)
        yield next(files)
        gate.wait(30)
        return (yield from files)

    monkeypatch.setattr(heatmap_panel, "write_export", held)
    layer = viewer.add_image(np.full((400, 500, 3), 200, np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    widget.display.show_heatmap(random_heatmap(slide, 0, 40, 40), slide)
    widget.display.export_folder.value = tmp_path / "out"
    assert widget.display.export()
    qtbot.waitUntil(lambda: "(1 of" in text(widget.display.export_info))
    widget.native.destroyed.connect(lambda *_: gate.set())
    close_and_check(viewer, widget, before, qtbot)


def test_closing_during_the_coarse_build(dock, qtbot, tmp_path, monkeypatch):
    """A huge single-level slide (above a lowered threshold) whose build is held at its first
    step until the dock is deleted; the dock follows it."""
    viewer, widget, before = dock
    monkeypatch.setattr(coarse, "COARSE_BUILD_MIN_PX", 2**20)
    monkeypatch.setenv("PATCHHEAT_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "huge.tif"
    image = np.random.default_rng(0).integers(0, 256, (2100, 2100, 3), np.uint8)
    tifffile.imwrite(path, image, tile=(256, 256), photometric="rgb", compression="zlib")
    gate, record = threading.Event(), CoarseBuild._progress

    def held(self: Any, done: int, total: int) -> None:
        record(self, done, total)
        gate.wait(30)

    monkeypatch.setattr(CoarseBuild, "_progress", held)
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    widget.image_layer.value = layer
    qtbot.waitUntil(lambda: widget.build_status.info.value.endswith("%")
                    and running_builds() and running_builds()[0].done > 0)
    widget.native.destroyed.connect(lambda *_: gate.set())
    close_and_check(viewer, widget, before, qtbot)
