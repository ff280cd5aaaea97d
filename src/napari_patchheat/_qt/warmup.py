"""No start-up tax: the worker starts when a slide opens and warms the model Run will use.

Opening a slide with this plugin's reader (:func:`warm_on_open`) starts this process's worker,
which imports TensorFlow in its own process, and asks it to warm the dock's first choice (the
first built-in model, DEFAULT_SIZE_PX patches) unless a dock asked for its own already. An open
dock's :class:`WarmUp` then follows its parameters: each time the model or the shape of its
batches changes and holds for one more poll, the worker gets a warm-up of them (a small message,
never waited for); a run submitted meanwhile overtakes warm-ups still queued. Set
``$PATCHHEAT_WARM_UP=0`` to turn it off (the worker then starts with the dock, as before).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from ..models import BUILTIN_MODELS
from ..options import RunOptions
from ..runner import current_worker, shared_worker
from ..warm import WarmSpec

WARM_ENV = "PATCHHEAT_WARM_UP"  # "0": no warm-up
WARM_POLL_MS = 250  # how often the dock's parameters are read (on the GUI thread), at most
WARM_POLL_SHARE = 0.02  # of the GUI thread's time at most (a Labels region makes reads slower)
DEFAULT_SIZE_PX = 224  # the dock's first patch size (and stride)


def warm_up_enabled() -> bool:
    """False when ``$PATCHHEAT_WARM_UP`` is "0"."""
    return os.environ.get(WARM_ENV, "1").strip() != "0"


def default_spec() -> WarmSpec:
    """The warm-up of the dock as it opens: its first model and patch size."""
    return WarmSpec.of(BUILTIN_MODELS[0], RunOptions(size=DEFAULT_SIZE_PX))


def warm_on_open() -> None:
    """A slide was opened: start the worker (TensorFlow loads in its process) and warm the
    dock's first choice, unless a warm-up was asked already. A worker that cannot start now
    leaves the slide opened (Run says why). Nothing without a Qt application (a script
    reading slides has no dock to run them)."""
    if not warm_up_enabled() or QApplication.instance() is None:
        return
    try:
        worker = shared_worker()
    except OSError:
        return
    if worker.warm_asked is None:
        worker.warm(default_spec())


class WarmUp:
    """Warms the model of ``request()`` (the dock's RunRequest, or a ValueError while there is
    none) in the running worker, polled every WARM_POLL_MS, or less often where reading the
    request takes over WARM_POLL_SHARE of that; nothing while ``running()``."""

    def __init__(self, request: Callable[[], Any], running: Callable[[], bool]):
        self.request, self.running = request, running
        self._seen: WarmSpec | None = None  # at the last poll
        self._timer = QTimer()  # no Qt parent: stopped by the dock's shutdown
        self._timer.setInterval(WARM_POLL_MS)
        self._timer.timeout.connect(self.check)
        self._timer.start()

    def spec(self) -> WarmSpec | None:
        """The warm-up of the dock's parameters; None while they make no run."""
        try:
            request = self.request()
        except (ValueError, OSError):
            return None
        return WarmSpec.of(request.model, request.options)

    def check(self) -> bool:
        """Send the warm-up of the parameters if they held since the last poll and the worker
        has not had it; True when sent. Never starts a worker, never waits."""
        worker = current_worker()
        if worker is not None:
            worker.warmed()  # take its reports, so that its pipe never fills
        if not warm_up_enabled() or worker is None or self.running():
            self._seen = None
            return False
        t0 = time.perf_counter()
        spec, seen = self.spec(), self._seen
        self._seen = spec
        cost_ms = (time.perf_counter() - t0) * 1e3
        self._timer.setInterval(max(WARM_POLL_MS, round(cost_ms / WARM_POLL_SHARE)))
        return spec is not None and seen is not None and spec.key == seen.key \
            and worker.warm(spec)

    def start(self) -> None:
        """Poll again (after :meth:`stop`)."""
        self._timer.start()

    def stop(self) -> None:
        """Stop polling (the dock closed)."""
        self._timer.stop()
