"""A run watched from the GUI without ever blocking it.

:func:`~napari_patchheat.runner.start_run` puts the run in a spawned process; here a reader
thread waits on that process's pipe (and on its exit, which takes TensorFlow a while) and
queues the messages, so the GUI thread only drains a local queue from its timer. The worker's
priority is lowered so a run that fills every core leaves napari the CPU it needs to stay
responsive (pan and zoom during a run). No Qt, no TensorFlow here.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from ..runner import Failed, Message, RunHandle, RunSpec, start_run

RUN_NICE = 10  # added to the inference process's nice value (Unix); 0 leaves it as it is
RUN_EXIT_WAIT_S = 120.0  # how long the reader thread waits for the ended run's process to exit


def lower_priority(pid: int, increment: int = RUN_NICE) -> bool:
    """Raise the nice value of process ``pid`` by ``increment`` (up to 19); False if not possible.

    On Linux a nice value belongs to a thread and is inherited by the threads it starts, so
    doing this right after the spawn covers TensorFlow's thread pools, created later.
    """
    if increment <= 0 or not hasattr(os, "setpriority"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, pid,
                       min(19, os.getpriority(os.PRIO_PROCESS, 0) + increment))
    except OSError:
        return False
    return True


class RunWatcher:
    """Starts ``spec`` in its own process and collects its messages on a reader thread."""

    def __init__(self, spec: RunSpec):
        self.handle: RunHandle = start_run(spec)
        lower_priority(self.handle.process.pid)
        self._messages: queue.Queue[Message] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True, name="patchheat-run-reader")
        self._reader.start()

    def _read(self) -> None:
        try:
            for msg in self.handle.messages():  # blocks on the pipe until the run's last word
                self._messages.put(msg)
        except Exception as exc:  # the pipe broke (a killed worker): the run ends here
            self._messages.put(Failed(f"lost the inference process ({exc or type(exc).__name__})."))
        # reap the process (TensorFlow's shutdown takes a while) so no zombie is left, also
        # where the pipe broke; this thread, never the GUI's, waits for it
        self.handle.process.join(timeout=RUN_EXIT_WAIT_S)

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
        """True once the run's last message is queued and its process has been reaped."""
        return not self._reader.is_alive()

    def cancel(self) -> None:
        """Ask the run to stop after its batch in progress (it answers Finished(cancelled))."""
        self.handle.cancel()

    def kill(self) -> None:
        """End the inference process at once."""
        self.handle.kill()

    @property
    def spec(self) -> Any:
        """The run's RunSpec."""
        return self.handle.spec
