"""Many slides, and huge slides in regions, on dask.distributed: :func:`run_batch`.

One task per slide runs what ``patchheat run`` runs (``cli.run_job``: the same HeatmapRun, the
same files) in a worker process that loads each model once. With ``split_px`` a slide's task
cuts the patches its run would compute, in the run's reading order (block after block), into
regions of about N x N level pixels, each a whole number of the run's batches, submits them as
tasks of their own (``worker_client``) and merges their values into its heatmap: the same
batches through the same model give the same values, bit for bit (a model's float results may
depend on a patch's batch, so regions of other batches would not). Workers send patch counts
as events on a topic the client subscribes to; the client writes the manifest (manifest.py) as
slides finish. No scheduler of our own: a LocalCluster of worker processes by default, else
the caller's Client (any scheduler: dask-jobqueue, Kubernetes, a scheduler file). Slides,
models and the output folder must be on a filesystem the workers see. TensorFlow is imported
by the workers only.
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import dask
import numpy as np
from distributed import (
    Client,
    KilledWorker,
    LocalCluster,
    WorkerPlugin,
    as_completed,
    get_worker,
)
from distributed import worker_client as _worker_client

from .cli import EXIT_FAILED, UserError, run_job
from .console import PROGRESS_EVERY_S, bar
from .extract import read_order
from .grid import PatchGrid
from .heatmap import slide_stem
from .inference import THREADS_ENV, HeatmapRun, Progress
from .manifest import Manifest, SlideRow, read_slide_list
from .models import is_builtin
from .options import RunOptions
from .runner import DEBUG_ENV, ModelCache, RunSpec

CANCEL_POLL_S = 0.2  # how often a batch's cancel watcher checks that the batch still runs
EVENT_EVERY_S = 0.5  # a task reports its patch counts at most this often (and when it ends)
TOPIC_PREFIX = "patchheat-progress"
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
    path), the run options, the output folder (absolute) and formats, ``mpp`` (µm/px: pick the
    closest level), the GeoJSON thresholds, the split (level pixels), the retries and resources
    of each model task, and the topic of its progress events."""

    model: str
    options: RunOptions
    out: str
    formats: tuple[str, ...] = ("npz",)
    mpp: float | None = None
    positive_threshold: float | None = None
    min_probability: float | None = None
    split_px: int | None = None
    retries: int = 0
    resources: dict[str, float] | None = None
    topic: str = TOPIC_PREFIX

    @property
    def key(self) -> str:
        """What the results depend on: the model (and its file's size and time), the options,
        the formats, the level choice and the thresholds. A batch of the same key skips the
        slides an earlier one finished; the split, retries and resources change nothing."""
        spec = RunSpec("", self.model, self.options)
        parts = [ModelCache.key(spec), dataclasses.asdict(self.options), sorted(self.formats),
                 self.mpp, self.positive_threshold, self.min_probability]
        return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:20]


class TaskReport(NamedTuple):
    """A task's last report: its slide, patches done and to do, the worker process's id."""

    slide: str
    done: int
    total: int
    pid: int


@dataclass
class BatchProgress:
    """Where a batch stands: its manifest and each task's last report (task -> TaskReport)."""

    manifest: Manifest
    tasks: dict[str, TaskReport] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def slide_patches(self, row: SlideRow) -> tuple[int, int]:
        """(done, to do) patches of ``row``'s slide in this batch: its tasks' reports while it
        runs, its computed patches once it is ok, what was done when it failed."""
        if row.status == "ok":
            return row.computed, row.computed
        done = sum(t.done for t in self.tasks.values() if t.slide == row.slide)
        total = sum(t.total for t in self.tasks.values() if t.slide == row.slide)
        return (done, total) if row.status == "pending" else (done, done)

    @property
    def patches(self) -> tuple[int, int]:
        """(done, to do) patches over the batch's slides, as far as reported."""
        counts = [self.slide_patches(r) for r in self.manifest.rows]
        return sum(d for d, _ in counts), sum(t for _, t in counts)

    @property
    def finished(self) -> int:
        """Slides no longer pending (ok, failed or skipped)."""
        return sum(r.status != "pending" for r in self.manifest.rows)

    @property
    def patches_per_s(self) -> float:
        """Patches done per second since the batch started."""
        elapsed = time.monotonic() - self.started
        return self.patches[0] / elapsed if elapsed > 0 else 0.0


def run_batch(slides: Iterable[str | os.PathLike[str]], model: str | os.PathLike[str],
              options: RunOptions, out: str | os.PathLike[str], client: Client | None = None,
              *, formats: Sequence[str] = ("npz",), mpp: float | None = None,
              positive_threshold: float | None = None, min_probability: float | None = None,
              split_px: int | None = None, retries: int = 0,
              resources: dict[str, float] | None = None,
              on_progress: Callable[[BatchProgress], Any] | None = None,
              cancel: threading.Event | None = None) -> Manifest:
    """Compute the heatmap of each slide with ``model`` on a dask cluster; returns the manifest.

    Each slide gets the files ``patchheat run --format`` writes, in ``out``, and a row in
    ``out/batch.csv`` and ``batch.json`` (written as slides finish). Slides a previous batch of
    the same model, options and formats finished are skipped; a slide that fails is a failed
    row with one sentence. ``client``: the caller's (any scheduler), else a LocalCluster of
    worker processes for this call. ``split_px``: regions of about that many level pixels a
    side, merged. ``retries`` and ``resources`` (e.g. ``{"GPU": 1}``) go to each model task.
    ``on_progress`` gets a :class:`BatchProgress` as workers report and slides finish. Setting
    ``cancel`` cancels the slides' tasks not finished yet: their rows stay ``pending`` (a later
    batch runs them, resuming from the result cache) and run_batch returns.
    """
    if split_px is not None and split_px < 1:
        raise ValueError(f"split_px={split_px} must be a whole number of level pixels, >= 1.")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    job = BatchJob(_absolute_model(model), _absolute_paths(options), str(out), tuple(formats),
                   mpp, positive_threshold, min_probability, split_px, retries,
                   dict(resources) if resources else None,
                   f"{TOPIC_PREFIX}-{uuid.uuid4().hex[:12]}")
    manifest = plan(slides, job, Manifest.read(out))
    manifest.write(out)
    if any(r.status == "pending" for r in manifest.rows):
        with _client(client) as c:
            _run(c, job, manifest, on_progress, cancel)
    return manifest


def plan(slides: Iterable[str | os.PathLike[str]], job: BatchJob,
         previous: Manifest | None) -> Manifest:
    """The manifest a batch starts from: one row per slide (absolute paths, duplicates once),
    ``skipped`` where ``previous`` finished it for the same key, ``failed`` where its outputs
    would have the name of an earlier slide's, else ``pending``."""
    done = previous.done_rows(job.key) if previous is not None else {}
    rows: list[SlideRow] = []
    stems: dict[str, str] = {}
    for slide in dict.fromkeys(str(Path(s).resolve()) for s in slides):
        stem = slide_stem(Path(slide).name)
        if slide in done:
            rows.append(dataclasses.replace(done[slide], status="skipped", computed=0,
                                            seconds=0.0))
        elif stem in stems:
            rows.append(SlideRow(slide, "failed", error=(
                f"{Path(slide).name} has the name of {stems[stem]}: their outputs would "
                "overwrite each other, so run them in separate batches.")))
        else:
            rows.append(SlideRow(slide))
        stems.setdefault(stem, slide)
    return Manifest(job.key, rows, job.model, dataclasses.asdict(job.options))


@contextmanager
def _client(client: Client | None) -> Iterator[Client]:
    """``client``, else one of a LocalCluster of worker processes closed afterwards."""
    if client is not None:
        yield client
        return
    with command_client(None, None, None, None) as c:
        yield c


def _run(client: Client, job: BatchJob, manifest: Manifest,
         on_progress: Callable[[BatchProgress], Any] | None,
         cancel: threading.Event | None = None) -> None:
    """Submit the pending slides and fill their rows (and the manifest files) as they end;
    ``cancel`` set: cancel the tasks not finished, their rows stay pending."""
    progress, lock = BatchProgress(manifest), threading.Lock()

    def notify() -> None:
        if on_progress is not None:
            on_progress(progress)

    def on_event(event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1]
        with lock:
            progress.tasks[msg["task"]] = TaskReport(msg["slide"], msg["done"], msg["total"],
                                                     msg["pid"])
            notify()

    client.register_plugin(WorkerSettings())
    client.subscribe_topic(job.topic, on_event)
    resources = None if job.split_px else job.resources  # a split slide's task only merges
    futures = {
        client.submit(process_slide, row.slide, job, retries=job.retries, resources=resources,
                      key=f"patchheat-slide-{Path(row.slide).name}-{uuid.uuid4().hex[:8]}"): i
        for i, row in enumerate(manifest.rows) if row.status == "pending"
    }
    ended = threading.Event()
    if cancel is not None:
        threading.Thread(target=_cancel_when_set, args=(cancel, ended, client, list(futures)),
                         daemon=True).start()
    try:
        for future in as_completed(futures, loop=client.loop):
            if future.cancelled():
                continue
            i = futures[future]
            row = _row(future, manifest.rows[i].slide)
            with lock:
                manifest.rows[i] = row
                manifest.write(job.out)
                notify()
    except BaseException:  # interrupted: stop the cluster's work; the manifest says where
        client.cancel(list(futures))
        raise
    finally:
        ended.set()
        client.unsubscribe_topic(job.topic)


def _cancel_when_set(cancel: threading.Event, ended: threading.Event, client: Client,
                     futures: list[Any]) -> None:
    """Cancel ``futures`` once ``cancel`` is set, unless the batch ``ended`` first (tasks
    running stop at their next report: :func:`stop_if_cancelled`)."""
    while not ended.is_set():
        if cancel.wait(CANCEL_POLL_S):
            if not ended.is_set():
                client.cancel(futures)
            return


def _row(future: Any, slide: str) -> SlideRow:
    """The manifest row of a finished slide task: its result, or a failed row."""
    try:
        return future.result()
    except KilledWorker:
        return SlideRow(slide, "failed", error=(
            f"the workers running {Path(slide).name} died several times (out of memory?): "
            "give the workers more memory, or use --split-px."))
    except Exception as exc:  # the worker's error, as one sentence
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if not isinstance(exc, (UserError, ValueError, OSError, RuntimeError)) or not text:
            text = f"{type(exc).__name__}: {text}".rstrip(": ")
        return SlideRow(slide, "failed", error=text)


# --- on the workers ---------------------------------------------------------------------------


class WorkerSettings(WorkerPlugin):
    """Gives TensorFlow, OpenMP and the runs' reading in each worker as many threads as the
    worker has (before TensorFlow loads; variables already set are kept), quiets TensorFlow's
    C++ logs and undoes the nanny's allocator setting (:func:`reuse_freed_memory`)."""

    name = "patchheat-worker-settings"

    def setup(self, worker: Any) -> None:
        for var in THREAD_ENV:
            os.environ.setdefault(var, str(worker.state.nthreads))
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
    """The job's model, loaded once per worker process (its threads share it)."""
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
                stop_if_cancelled(f"{p.done:,} / {p.total:,} patches of {Path(self.slide).name}")


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
    """A slide's task: ``cli.run_job`` on a worker (or its regions, with ``job.split_px``);
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
        files = run_job(Path(slide), _model(job, job.options), Path(job.out), job.formats,
                        job.options, mpp=job.mpp, quiet=True,
                        positive_threshold=job.positive_threshold,
                        min_probability=job.min_probability, compute=compute)
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
                          key=f"patchheat-region-{Path(slide).name}-{k}-{token}"): indices
            for k, indices in enumerate(regions)
        }
        for future in as_completed(futures, loop=client.loop):
            try:
                stop_if_cancelled(f"{done:,} / {total:,} patches of {Path(slide).name}")
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
    from .slide import open_slide

    with dask.config.set(scheduler=LOCAL_DASK_SCHEDULER), open_slide(slide) as s:
        run = _RegionRun(s, _model(job, options), options, indices)
        for _ in _Reporter(job, slide, task).follow(run.run(), len(indices)):
            pass
        return np.array(run.heatmap.values[indices[:, 0], indices[:, 1]])


# --- helpers ----------------------------------------------------------------------------------


def _absolute_model(model: str | os.PathLike[str]) -> str:
    """A built-in name as is; a path made absolute (workers may start in another folder)."""
    return str(model) if is_builtin(str(model)) else str(Path(model).resolve())


def _absolute_paths(options: RunOptions) -> RunOptions:
    """``options`` with its cache folder and region-of-interest file made absolute."""
    paths: dict[str, Any] = {
        name: Path(value).resolve() for name in ("cache_dir", "roi")
        if isinstance(value := getattr(options, name), (str, os.PathLike))}
    return dataclasses.replace(options, **paths) if paths else options


# --- the command ------------------------------------------------------------------------------


def parse_resources(text: str | None) -> dict[str, float] | None:
    """'GPU=1,MEMORY=8e9' -> {'GPU': 1.0, 'MEMORY': 8e9}; None or '' -> None."""
    if not text:
        return None
    try:
        pairs = (part.split("=") for part in text.split(",") if part.strip())
        return {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise ValueError(f"resources {text!r} must be NAME=AMOUNT pairs, e.g. GPU=1.") from None


@contextmanager
def command_client(scheduler: str | None, workers: int | None, threads: int | None,
                   resources: dict[str, float] | None) -> Iterator[Client]:
    """A client of ``scheduler`` (an address, or a scheduler file), else of a LocalCluster of
    ``workers`` processes of ``threads`` threads (dask's defaults for None) with ``resources``.
    It is not made dask's default scheduler: this process's own dask reads stay local."""
    if scheduler is None:
        with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                          resources=resources, dashboard_address=":0") as cluster, \
                Client(cluster, set_as_default=False) as client:
            yield client
        return
    if workers is not None or threads is not None:
        raise ValueError("--workers and --threads-per-worker size the local cluster: start "
                         "the scheduler's workers with 'dask worker --nworkers N --nthreads T'.")
    try:
        client = (Client(scheduler_file=scheduler, set_as_default=False)
                  if Path(scheduler).is_file() else Client(scheduler, set_as_default=False))
    except (OSError, TimeoutError) as exc:
        raise OSError(f"cannot reach the dask scheduler {scheduler}: {exc}") from None
    with client:
        yield client


class BatchLine:
    """A one-line progress bar on stderr: slides finished (failed), patches, patches/s."""

    def __init__(self, stream: Any, every_s: float):
        self.stream, self.every_s, self.last = stream, every_s, 0.0

    def __call__(self, p: BatchProgress) -> None:
        now = time.monotonic()
        slides = len(p.manifest.rows)
        if now - self.last < self.every_s and p.finished < slides:
            return
        self.last = now
        done, total = p.patches
        failed = p.manifest.count("failed")
        self.stream.write(
            f"\rslides {bar(p.finished, slides)} {p.finished}/{slides}"
            f"{f' ({failed} failed)' if failed else ''}, patches {done:,}/{total:,} "
            f"{p.patches_per_s:6.1f} p/s ")
        self.stream.flush()


def batch_command(args: Any, options: RunOptions) -> int:
    """``patchheat batch``: run the slides of ``args`` and print the manifest's summary; exit
    code 1 when a slide failed."""
    slides = list(args.slides)
    if args.slide_list is not None:
        slides += read_slide_list(args.slide_list)
    if not slides:
        raise UserError("no slides: give slide files, or --list FILE.")
    resources = parse_resources(args.resources)
    with command_client(args.scheduler, args.workers, args.threads_per_worker,
                        resources) as client:
        if client.dashboard_link:
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
        manifest = run_batch(slides, args.model, options, args.out, client,
                             formats=args.format, mpp=args.mpp,
                             positive_threshold=args.positive_threshold,
                             min_probability=args.min_probability, split_px=args.split_px,
                             retries=args.retries, resources=resources,
                             on_progress=BatchLine(sys.stderr, PROGRESS_EVERY_S))
    print(file=sys.stderr)
    for row in manifest.rows:
        if row.status == "failed":
            print(f"failed: {row.slide}: {row.error}", file=sys.stderr)
    print(f"{manifest.summary}; manifest: {Path(args.out) / 'batch.csv'}")
    return EXIT_FAILED if manifest.count("failed") else 0
