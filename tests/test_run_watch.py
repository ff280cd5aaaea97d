"""The run watcher: runs go to this process's warm worker, read on a thread of their own; the
worker stays up across runs (failed or cancelled ones too) and is replaced when it died."""

from __future__ import annotations

import time

import numpy as np
import tifffile

from napari_patchheat.inference import Progress
from napari_patchheat.options import RunOptions
from napari_patchheat.run_watch import RunWatcher
from napari_patchheat.runner import Failed, Finished, RunSpec, Started, shared_worker

RUN_TIMEOUT_S = 180.0


def run_to_end(spec: RunSpec) -> list:
    watcher = RunWatcher(spec)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not watcher.ended:
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.01)
    return watcher.drain()


def test_runs_share_one_warm_worker_which_outlives_a_failure(tmp_path):
    image = tmp_path / "s.tif"
    tifffile.imwrite(image, np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8),
                     photometric="rgb")
    worker = shared_worker()
    pid = worker.process.pid
    failed = run_to_end(RunSpec(str(tmp_path / "missing.svs"), "tissue",
                                       RunOptions(cache_dir=str(tmp_path / "cache"))))
    assert len(failed) == 1 and isinstance(failed[0], Failed) and "missing.svs" in failed[0].message
    msgs = run_to_end(RunSpec(str(image), "dab", RunOptions(size=32, use_cache=False)))
    assert isinstance(msgs[0], Started) and isinstance(msgs[-1], Finished)
    assert sum(len(m.indices) for m in msgs if isinstance(m, Progress)) == 3 * 4
    assert shared_worker() is worker and worker.alive and worker.process.pid == pid


def test_a_dead_worker_is_replaced(tmp_path):
    old = shared_worker()
    old.kill()
    new = shared_worker()
    assert new is not old and new.alive and not old.alive
    msgs = run_to_end(RunSpec(str(tmp_path / "missing.svs"), "tissue", RunOptions()))
    assert isinstance(msgs[-1], Failed) and "missing.svs" in msgs[-1].message
