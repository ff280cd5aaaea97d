"""No start-up tax: opening a slide starts the worker and warms the dock's model; the dock's
warm-up follows the model chosen; a Run after it traces nothing (the worker's reports say so).
TensorFlow stays in the worker."""

from __future__ import annotations

import time

from gui_helpers import RUN_TIMEOUT_MS

from napari_patchheat import runner
from napari_patchheat._qt.warmup import (
    WARM_ENV,
    WARM_POLL_MS,
    WARM_POLL_SHARE,
    WarmUp,
    default_spec,
)
from napari_patchheat.warm import WarmSpec

WARM_TIMEOUT_MS = 120_000


def report_of(qtbot, key, after=None):
    """The worker's newest warm-up report of ``key`` that is not ``after`` (waited for)."""
    found = []

    def arrived() -> bool:
        worker = runner.current_worker()
        report = None if worker is None else worker.warmed().get(key)
        found[:] = [report]
        return report is not None and report is not after

    qtbot.waitUntil(arrived, timeout=WARM_TIMEOUT_MS)
    return found[0]


def test_opening_a_slide_starts_the_worker_and_warms_the_docks_first_choice(viewer, svs_path,
                                                                            qtbot):
    runner.close_shared_worker()
    assert runner.current_worker() is None
    viewer.open(str(svs_path), plugin="napari-patchheat")
    worker = runner.current_worker()
    assert worker is not None, "opening a slide did not start the worker"
    assert worker.warm_asked == default_spec()
    report = report_of(qtbot, default_spec().key)
    assert report.warm and report.traces == 2, report.message  # auto batch: two sizes
    assert default_spec().key[:2] == ("tissue", (224, 224))  # the dock's first model and size


def test_no_warm_up_when_turned_off(viewer, svs_path, monkeypatch):
    monkeypatch.setenv(WARM_ENV, "0")
    runner.close_shared_worker()
    viewer.open(str(svs_path), plugin="napari-patchheat")
    assert runner.current_worker() is None  # as before: the worker starts with the dock


def test_the_dock_warms_the_model_chosen_and_a_run_after_it_traces_nothing(viewer, widget,
                                                                           svs_path, qtbot,
                                                                           tmp_path):
    viewer.open(str(svs_path), plugin="napari-patchheat")
    worker = runner.current_worker()
    assert worker is not None
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "dab"
    widget.size.value = widget.stride.value = 128
    spec = WarmSpec.of("dab", widget.run_options())
    assert spec != default_spec()
    warmed = report_of(qtbot, spec.key)  # within two polls of the change, then the worker's time
    assert warmed.warm and warmed.traces == 2, warmed.message  # auto batch: two sizes
    assert worker.warm_asked == spec
    panel = widget.run_panel
    assert panel.run()
    qtbot.waitUntil(lambda: not panel.running, timeout=RUN_TIMEOUT_MS)
    assert widget.display.heatmap.n_computed > widget.batch_size.value  # several batches
    assert not panel.warm.check()  # the same parameters: nothing sent again after the run
    assert worker.warm(spec, again=True)  # ask the worker how often the model was traced
    after = report_of(qtbot, spec.key, warmed)
    assert after.warm and after.traces == warmed.traces  # the run's batches paid no trace
    widget.model.value = "eosin"  # a new choice is warmed in turn
    eosin = WarmSpec.of("eosin", widget.run_options())
    assert report_of(qtbot, eosin.key).warm


def test_no_warm_up_during_a_run_or_without_a_worker_and_a_new_slide_keeps_the_docks(
        viewer, widget, svs_path):
    widget.run_panel.warm.stop()  # these checks are called here, not by its timer
    viewer.open(str(svs_path), plugin="napari-patchheat")
    widget.size.value = widget.stride.value = 96
    busy = WarmUp(widget.run_request, lambda: True)
    idle = WarmUp(widget.run_request, lambda: False)
    try:
        assert not busy.check() and not busy.check()  # a run in progress: nothing sent
        assert not idle.check()  # the parameters must hold for one more poll
        assert idle.check()  # they did: sent
        worker = runner.current_worker()
        assert worker is not None and worker.warm_asked.key[1] == (96, 96)
        viewer.open(str(svs_path), plugin="napari-patchheat")  # another slide opened
        assert worker.warm_asked.key[1] == (96, 96)  # the dock's choice stays the one warmed
        runner.close_shared_worker()
        assert not idle.check() and not idle.check()
        time.sleep(2 * WARM_POLL_MS / 1e3)
        assert runner.current_worker() is None  # a warm-up never starts a worker
    finally:
        busy.stop()
        idle.stop()


def test_a_slow_request_is_read_less_often(viewer, svs_path):
    viewer.open(str(svs_path), plugin="napari-patchheat")  # a worker to warm

    def slow():
        time.sleep(0.03)  # e.g. a large Labels region, read for each request
        raise ValueError("no run")

    def fast():
        raise ValueError("no run")

    polls = [WarmUp(slow, lambda: False), WarmUp(fast, lambda: False)]
    try:
        for poll in polls:
            poll.check()
        assert polls[0]._timer.interval() >= 30 / WARM_POLL_SHARE  # <= 2% of the GUI's time
        assert polls[1]._timer.interval() == WARM_POLL_MS
    finally:
        for poll in polls:
            poll.stop()
