"""The run watcher: a run's process, read on a thread of its own and reaped when it ends."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_helpers import RUN_TIMEOUT_MS


def test_an_ended_runs_process_is_reaped(qtbot, tmp_path):
    """After its last message the run's process is joined (off the GUI thread): no zombie."""
    from napari_patchheat._qt.run_watch import RunWatcher
    from napari_patchheat.options import RunOptions
    from napari_patchheat.runner import Failed, RunSpec

    if not Path("/proc/self").exists():
        pytest.skip("needs /proc to tell a zombie process from a reaped one")
    watcher = RunWatcher(RunSpec(str(tmp_path / "missing.svs"), "tissue",
                                 RunOptions(cache_dir=str(tmp_path / "cache"))))
    pid = watcher.handle.process.pid
    qtbot.waitUntil(lambda: watcher.ended, timeout=RUN_TIMEOUT_MS)
    messages = watcher.drain()
    assert len(messages) == 1 and isinstance(messages[0], Failed), messages
    assert not Path(f"/proc/{pid}").exists()  # reaped, not a zombie
