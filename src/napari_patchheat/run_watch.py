"""A run watched from the GUI without ever blocking it.

Runs go to this process's warm worker (:func:`~napari_patchheat.runner.shared_worker`: started
when the dock opens, TensorFlow imported in the background, niced so napari keeps the CPU it
needs to pan and zoom during a run). Here a reader thread waits on the run's messages until its
last one, so the GUI thread only drains a local queue from its timer, and the worker is free for
the next run as soon as this one ends, whether or not the GUI still listens. No Qt, no
TensorFlow here.
"""

from __future__ import annotations

import queue
import threading

from .focus import Rect
from .runner import Failed, Message, RunHandle, RunSpec, shared_worker


def warm_up() -> None:
    """Start this process's worker now (if it is not running), so that TensorFlow is imported
    before the first Run."""
    shared_worker()


def worker_ready() -> bool:
    """True once this process's worker has imported TensorFlow (started if it is not)."""
    return shared_worker().ready


class RunWatcher:
    """Submits ``spec`` to the warm worker and collects its messages on a reader thread.

    RuntimeError when the worker is busy with another run (one run at a time per process).
    """

    def __init__(self, spec: RunSpec):
        self.handle: RunHandle = shared_worker().submit(spec)
        self._messages: queue.Queue[Message] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name="patchheat-run-reader")
        self._reader.start()

    def _read(self) -> None:
        try:
            for msg in self.handle.messages():  # blocks on the pipe until the run's last word
                self._messages.put(msg)
        except Exception as exc:  # the pipe broke (a killed worker): the run ends here
            self._messages.put(Failed(
                f"lost the inference process ({exc or type(exc).__name__})."))

    def drain(self) -> list[Message]:
        """The messages that arrived since the last call (never waits)."""
        out: list[Message] = []
        try:
            while True:
                out.append(self._messages.get_nowait())
        except queue.Empty:
            return out

    @property
    def ended(self) -> bool:
        """True once the run's last message is queued here (the worker is free again)."""
        return not self._reader.is_alive()

    def cancel(self) -> None:
        """Ask the run to stop after its batch in progress (it answers Finished(cancelled));
        the worker stays up for the next run."""
        self.handle.cancel()

    def set_view(self, view: Rect | None) -> None:
        """Tell the run what napari shows: ``(y0, x0, y1, x1)`` level pixels of its level."""
        self.handle.set_view(view)

    @property
    def spec(self) -> RunSpec:
        """The run's RunSpec."""
        return self.handle.spec
