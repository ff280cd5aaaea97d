"""The worker side of a batch: what every task of it shares (:class:`BatchJob`), the worker
plugin, and the tasks: a slide (``process_slide``: the job layer's ``run_job``, the same
HeatmapRun and files as ``patchheat run``) and, with ``split_px``, its regions
(``compute_region``), merged by the slide's task bit for bit.

A split slide's task cuts the patches its run would compute, in the run's reading order (block
after block), into regions of about N x N level pixels, each a whole number of the run's
batches, submits them as tasks of their own (``worker_client``) and merges their values into its
heatmap: the same batches through the same model give the same values, bit for bit (a model's
float results may depend on a patch's batch, so regions of other batches would not). Tasks send
patch counts as events on the job's topic and stop at their next report once cancelled.
TensorFlow is imported by the workers only.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
from distributed import WorkerPlugin, as_completed, get_worker
from distributed import worker_client as _worker_client

from ..console import import_tensorflow_quietly
from ..extract import read_order
from ..grid import PatchGrid
from ..inference import THREADS_ENV, HeatmapRun, Progress
from ..jobs import JobOutputs, run_job
from ..manifest import SlideRow
from ..options import RunOptions
from ..runner import DEBUG_ENV, ModelCache, RunSpec
from ..slide.location import is_url, source_name

TOPIC_PREFIX = "patchheat-progress"
EVENT_EVERY_S = 0.5  # a task reports its patch counts at most this often (and when it ends)
# TensorFlow, OpenMP and a run's reading in a worker get as many threads as the worker has,
# unless set (one thread: the run reads its blocks in turn with the model, no read-ahead)
THREAD_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
              THREADS_ENV)
# dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set (65536), which also fixes glibc's
# mmap threshold at 128 KiB: every decoded tile and block is then mapped, faulted in and unmapped
# anew (a fifth of a `dab` slide's time, benchmarks.md). Workers get glibc's own thresholds back,
# the highest its dynamic threshold reaches (64-bit) and twice that to trim.
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
# a task's own dask reads (a slide's levels) run in its worker's process, as in `patchheat run`,
# not as tasks of the cluster (dask's default inside a worker)
LOCAL_DASK_SCHEDULER = "threads"


@dataclass(frozen=True)
class BatchJob:
    """What every task of a batch shares (picklable): the model (built-in name or absolute
    path), the run options, the output folder (absolute), the outputs (formats, level choice,
    class rule), the split (level pixels), the retries and resources of each model task, and
    the topic of its progress events, and fsspec's ``storage_options`` for slide URLs (each
    task opens its slide itself; they are not part of the key)."""

    model: str
    options: RunOptions
    out: str
    outputs: JobOutputs = field(default_factory=JobOutputs)
    split_px: int | None = None
    retries: int = 0
    resources: dict[str, float] | None = None
    topic: str = TOPIC_PREFIX
    storage_options: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """What the results depend on: the model (and its file's size and time), the options,
        the formats, the level choice and the thresholds. A batch of the same key skips the
        slides an earlier one finished; the split, retries and resources change nothing."""
        spec = RunSpec("", self.model, self.options)
        o = self.outputs
        parts = [ModelCache.key(spec), self.options.key_fields(), sorted(o.formats),
                 o.mpp, o.positive_threshold, o.min_probability]
        return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:20]

class WorkerSettings(WorkerPlugin):
    """Gives TensorFlow, OpenMP and the runs' reading in each worker ``task_threads`` threads
    (None: as many as the worker has) before TensorFlow loads (variables already set are kept),
    quiets TensorFlow's C++ logs and undoes the nanny's allocator setting
    (:func:`reuse_freed_memory`). The first registered on a cluster stays (a local cluster's
    own, sized with it, then run_batch's default)."""

    name = "patchheat-worker-settings"
    idempotent = True

    def __init__(self, task_threads: int | None = None):
        self.task_threads = task_threads

    def setup(self, worker: Any) -> None:
        for var in THREAD_ENV:
            os.environ.setdefault(var, str(self.task_threads or worker.state.nthreads))
        if not os.environ.get(DEBUG_ENV):
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        if "MALLOC_TRIM_THRESHOLD_" in os.environ:
            reuse_freed_memory()


def reuse_freed_memory() -> bool:
    """Let glibc's malloc keep freed buffers of up to MMAP_THRESHOLD_BYTES in this process for
    reuse, as a process started without MALLOC_TRIM_THRESHOLD_ does once it has freed a large
    one; False where malloc is not glibc's."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


_MODELS = ModelCache()  # in each worker process: models loaded once, kept across tasks
_MODELS_LOCK = threading.Lock()


def _model(job: BatchJob, options: RunOptions) -> Any:
    """The job's model, loaded once per worker process (its threads share it); TensorFlow
    imported as ``run_job`` does, without its C++ start-up lines on the terminal."""
    import_tensorflow_quietly()
    with _MODELS_LOCK:
        return _MODELS.get(RunSpec("", job.model, options))


class _Reporter:
    """Sends a task's patch counts to the client as events of the job's topic; stops the task
    (BatchCancelled) at the first batch after its future was cancelled."""

    def __init__(self, job: BatchJob, slide: str, task: str):
        self.topic, self.slide, self.task = job.topic, slide, task

    def send(self, done: int, total: int) -> None:
        get_worker().log_event(self.topic, {"slide": self.slide, "task": self.task,
                                            "done": done, "total": total, "pid": os.getpid()})

    def follow(self, steps: Iterable[Progress], total: int) -> Iterator[Progress]:
        """``steps``, reporting (0, total) first and the counts at most every EVENT_EVERY_S."""
        self.send(0, total)
        last = time.monotonic()
        for p in steps:
            yield p
            if p.done == p.total or time.monotonic() - last >= EVENT_EVERY_S:
                self.send(p.done, p.total)
                last = time.monotonic()
            if p.done < p.total:  # a look at the worker's own state: cheap
                stop_if_cancelled(f"{p.done:,} / {p.total:,} patches of {source_name(self.slide)}")


class BatchCancelled(RuntimeError):
    """A task stopped because its batch was cancelled (its batches so far are in the result
    cache)."""


def stop_if_cancelled(where: str) -> None:
    """Raise BatchCancelled when the task running this was cancelled: its worker marks a task
    the scheduler released while it runs (a cancelled future) "cancelled" in its own state;
    dask cannot stop a running task, so tasks look themselves."""
    worker = get_worker()
    task = worker.state.tasks.get(worker.get_current_task())
    if task is None or task.state == "cancelled":
        raise BatchCancelled(f"the batch was cancelled at {where}")


def process_slide(slide: str, job: BatchJob) -> SlideRow:
    """A slide's task: ``jobs.run_job`` on a worker (or its regions, with ``job.split_px``);
    returns its manifest row. Errors are raised: the client makes them a failed row."""
    t0 = time.perf_counter()
    state: dict[str, Any] = {"computed": 0, "regions": 0}

    def compute(run: HeatmapRun) -> Iterator[Progress]:
        state["run"] = run
        steps = (_compute_regions(run, slide, job, state) if job.split_px else
                 _Reporter(job, slide, slide).follow(run.run(), int(run.todo.sum())))
        for p in steps:
            state["computed"] = p.done
            yield p

    with dask.config.set(scheduler=LOCAL_DASK_SCHEDULER):
        files = run_job(slide if is_url(slide) else Path(slide), _model(job, job.options),
                        Path(job.out), job.outputs, job.options, quiet=True, compute=compute,
                        storage_options=job.storage_options)
    return SlideRow(slide, "ok", patches=state["run"].heatmap.n_computed,
                    computed=state["computed"], seconds=time.perf_counter() - t0,
                    regions=state["regions"], outputs={k: str(v) for k, v in files.items()})


def run_order(run: HeatmapRun) -> np.ndarray:
    """(n, 2) grid indices (row, col) of the patches ``run`` computes, in the order its batches
    take them: block after block of ``read_blocks``, row-major in each."""
    todo = run.todo
    parts = [np.argwhere(todo[r.start:r.stop, c.start:c.stop]) + (r.start, c.start)
             for r, c in read_order(run.image, run.grid, run.block_px, run.backend)]
    return np.concatenate(parts) if parts else np.empty((0, 2), np.int64)


def split_order(order: np.ndarray, grid: PatchGrid, split_px: int,
                batch_size: int) -> list[np.ndarray]:
    """``order`` cut into consecutive regions of about ``split_px`` x ``split_px`` level pixels
    of patches (by the grid's stride), each a whole number of batches: each region's batches
    are the single run's, so each patch's value is too."""
    per_batch = (split_px / grid.stride[0]) * (split_px / grid.stride[1]) / batch_size
    size = max(1, round(per_batch)) * batch_size
    return [order[i:i + size] for i in range(0, len(order), size)]


def _compute_regions(run: HeatmapRun, slide: str, job: BatchJob,
                     state: dict[str, Any]) -> Iterator[Progress]:
    """The patches of ``run`` computed as region tasks on the cluster, merged into its
    heatmap as they finish; a Progress per region."""
    regions = split_order(run_order(run), run.grid, job.split_px or 1, run.batch_size)
    state["regions"] = len(regions)
    total, done, t0 = sum(map(len, regions)), 0, time.perf_counter()
    # the patches are given (no tissue mask, no region of interest); the slide's run caches them
    options = dataclasses.replace(run.options, tissue_threshold=0.0, roi=None, use_cache=False)
    token = uuid.uuid4().hex[:8]
    with _worker_client() as client, contextlib.ExitStack() as flushed:
        if run.cache is not None:  # what the merged regions hold stays, cancelled or failed
            flushed.callback(run.cache.flush)
        futures = {
            client.submit(compute_region, slide, job, options, indices, f"{slide}#{k}",
                          retries=job.retries, resources=job.resources,
                          key=f"patchheat-region-{source_name(slide)}-{k}-{token}"): indices
            for k, indices in enumerate(regions)
        }
        for future in as_completed(futures, loop=client.loop):
            try:
                stop_if_cancelled(f"{done:,} / {total:,} patches of {source_name(slide)}")
            except BatchCancelled:
                client.cancel(list(futures))
                raise
            indices, values = futures[future], future.result()
            run.record(indices, values)
            done += len(indices)
            yield Progress(indices, values, done, total, time.perf_counter() - t0)


class _RegionRun(HeatmapRun):
    """A HeatmapRun that computes exactly the patches ``indices`` (n, 2), cached or not."""

    def __init__(self, slide: Any, model: Any, options: RunOptions, indices: np.ndarray):
        super().__init__(slide, model, options)
        self.indices = indices

    @property
    def todo(self) -> np.ndarray:
        todo = np.zeros(self.grid.shape, bool)
        todo[self.indices[:, 0], self.indices[:, 1]] = True
        return todo


def compute_region(slide: str, job: BatchJob, options: RunOptions, indices: np.ndarray,
                   task: str) -> np.ndarray:
    """A region task: the patches ``indices`` (n, 2; grid rows and columns of the level and
    grid of ``options``) of ``slide``, in their order's batches; returns their values
    (n, classes)."""
    from ..slide import open_slide

    with (dask.config.set(scheduler=LOCAL_DASK_SCHEDULER),
          open_slide(slide, storage_options=job.storage_options) as s):
        run = _RegionRun(s, _model(job, options), options, indices)
        for _ in _Reporter(job, slide, task).follow(run.run(), len(indices)):
            pass
        return np.array(run.heatmap.values[indices[:, 0], indices[:, 1]])

