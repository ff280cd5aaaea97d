"""Work off the GUI thread: napari's thread workers, kept alive until they finish."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Workers:
    """Starts functions on napari thread workers and holds each worker until it has finished
    (a worker collected while its thread runs crashes Qt). Callbacks run on the GUI thread."""

    def __init__(self) -> None:
        self._running: set[Any] = set()

    def start(self, func: Callable[..., Any], *args: Any, returned: Callable[[Any], None],
              errored: Callable[[Exception], None],
              yielded: Callable[[Any], None] | None = None) -> None:
        """Run ``func(*args)`` on a worker thread; then ``returned(result)`` or ``errored(exc)``.
        A generator function's values go to ``yielded`` as they come, its return value to
        ``returned``."""
        from napari.qt.threading import create_worker

        # errors go to ``errored`` only (not re-raised on the GUI thread as well)
        worker = create_worker(func, *args, _ignore_errors=True)
        self._running.add(worker)
        worker.returned.connect(returned)
        worker.errored.connect(errored)
        if yielded is not None:
            worker.yielded.connect(yielded)
        worker.finished.connect(lambda: self._running.discard(worker))
        worker.start()

    @property
    def idle(self) -> bool:
        """True when no worker started here is still running."""
        return not self._running
