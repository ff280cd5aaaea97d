"""The run panel's "loading TensorFlow…" state: a busy bar and that line while the warm worker
(:func:`~napari_patchheat.run_watch.warm_up`) imports TensorFlow in its own process.

A Run pressed meanwhile is queued by the worker and starts once it is ready; the line then says
so. Polled on the GUI thread (the worker's ready flag is a process-shared event: never waits).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QTimer

from ..run_watch import warm_up, worker_ready

LOADING_TEXT = "loading TensorFlow…"
QUEUED_TEXT = "loading TensorFlow…: the run starts when it is ready"
STARTING_TEXT = "starting the run…"  # the run panel's line once a run is submitted
LOADING_POLL_MS = 200


class TensorFlowLoading:
    """Shows LOADING_TEXT (QUEUED_TEXT while ``running()``) on ``info`` and a busy ``bar``
    (magicgui widgets) until the worker is ready; :meth:`watch` starts the worker and watching."""

    def __init__(self, bar: Any, info: Any, running: Callable[[], bool],
                 ready: Callable[[], bool] = worker_ready):
        self.bar, self.info, self.running, self.ready = bar, info, running, ready
        self.loading = False
        self._timer = QTimer()
        self._timer.setInterval(LOADING_POLL_MS)
        self._timer.timeout.connect(self.check)

    def watch(self) -> None:
        """Start the worker (if it is not running) and show its state until it is ready."""
        warm_up()
        self._timer.start()
        self.check()

    def check(self, *_: Any) -> None:
        """Show the worker's state now; stop watching once it is ready."""
        if self.ready():
            self._timer.stop()
            if self.loading:
                self.loading = False
                if self.bar.native.maximum() == 0:  # still busy: no run set its counts
                    self.bar.native.setRange(0, 1)
                if self.info.value in (LOADING_TEXT, QUEUED_TEXT):
                    self.info.value = STARTING_TEXT if self.running() else ""
            return
        self.loading = True
        self.bar.native.setRange(0, 0)  # Qt's busy indicator
        if self.info.value in ("", LOADING_TEXT, QUEUED_TEXT, STARTING_TEXT):  # else the run's
            self.info.value = QUEUED_TEXT if self.running() else LOADING_TEXT  # own words

    def stop(self) -> None:
        """Stop watching (the dock closed)."""
        self._timer.stop()
