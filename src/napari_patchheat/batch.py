"""Many slides, and huge slides in regions, on dask.distributed: :func:`run_batch`.

One task per slide runs what ``patchheat run`` runs (``cli.run_job``: the same HeatmapRun, the
same files) in a worker process that loads each model once. With ``split_px`` a slide's task
cuts its patch grid into regions of about N x N level pixels, submits them as tasks of their
own (``worker_client``) and merges their values into its heatmap: the same grid, the same
patches, the same values. Workers send patch counts as events on a topic the client
subscribes to; the client writes the manifest (manifest.py) as slides finish. No scheduler of
our own: a LocalCluster of worker processes by default, else the caller's Client (any
scheduler: dask-jobqueue, Kubernetes, a scheduler file). Slides, models and the output folder
must be on a filesystem the workers see. TensorFlow is imported by the workers only.
"""

from __future__ import annotations

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
from typing import Any

import dask
import numpy as np
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, as_completed, get_worker
from distributed import worker_client as _worker_client

from .cli import EXIT_FAILED, PROGRESS_EVERY_S, UserError, run_job
from .grid import PatchGrid
from .heatmap import slide_stem
from .inference import HeatmapRun, Progress
from .manifest import Manifest, SlideRow, read_slide_list
from .models import is_builtin
from .options import RunOptions
from .runner import DEBUG_ENV, ModelCache, RunSpec

EVENT_EVERY_S = 0.5  # a task reports its patch counts at most this often (and when it ends)
TOPIC_PREFIX = "patchheat-progress"
# TensorFlow (and OpenMP) in a worker get as many threads as the worker has, unless set
THREAD_ENV = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
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


@dataclass
class BatchProgress:
    """Where a batch stands: its manifest and, per task, (slide, patches done, patches to do)
    as the workers last reported them."""

    manifest: Manifest
    tasks: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def slide_patches(self, slide: str) -> tuple[int, int]:
        """(done, to do) patches of ``slide`` in this batch, over its tasks reported so far."""
        counts = [(d, t) for s, d, t in self.tasks.values() if s == slide]
        return sum(d for d, _ in counts), sum(t for _, t in counts)

    @property
    def patches(self) -> tuple[int, int]:
        """(done, to do) patches over every task reported so far."""
        return (sum(d for _, d, _ in self.tasks.values()),
                sum(t for _, _, t in self.tasks.values()))

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
              on_progress: Callable[[BatchProgress], Any] | None = None) -> Manifest:
    """Compute the heatmap of each slide with ``model`` on a dask cluster; returns the manifest.

    Each slide gets the files ``patchheat run --format`` writes, in ``out``, and a row in
    ``out/batch.csv`` and ``batch.json`` (written as slides finish). Slides a previous batch of
    the same model, options and formats finished are skipped; a slide that fails is a failed
    row with one sentence. ``client``: the caller's (any scheduler), else a LocalCluster of
    worker processes for this call. ``split_px``: regions of about that many level pixels a
    side, merged. ``retries`` and ``resources`` (e.g. ``{"GPU": 1}``) go to each model task.
    ``on_progress`` gets a :class:`BatchProgress` as workers report and slides finish.
    """
    if split_px is not None and split_px < 1:
        raise ValueError(f"split_px={split_px} must be a whole number of level pixels, >= 1.")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    job = BatchJob(_absolute_model(model), _absolute_cache(options), str(out), tuple(formats),
                   mpp, positive_threshold, min_probability, split_px, retries,
                   dict(resources) if resources else None,
                   f"{TOPIC_PREFIX}-{uuid.uuid4().hex[:12]}")
    manifest = plan(slides, job, Manifest.read(out))
    manifest.write(out)
    if any(r.status == "pending" for r in manifest.rows):
        with _client(client) as c:
            _run(c, job, manifest, on_progress)
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
    with LocalCluster(processes=True, dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


def _run(client: Client, job: BatchJob, manifest: Manifest,
         on_progress: Callable[[BatchProgress], Any] | None) -> None:
    """Submit the pending slides and fill their rows (and the manifest files) as they end."""
    progress, lock = BatchProgress(manifest), threading.Lock()

    def notify() -> None:
        if on_progress is not None:
            on_progress(progress)

    def on_event(event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1]
        with lock:
            progress.tasks[msg["task"]] = (msg["slide"], msg["done"], msg["total"])
            notify()

    client.register_plugin(ThreadLimits())
    client.subscribe_topic(job.topic, on_event)
    resources = None if job.split_px else job.resources  # a split slide's task only merges
    futures = {
        client.submit(process_slide, row.slide, job, retries=job.retries, resources=resources,
                      key=f"patchheat-slide-{Path(row.slide).name}-{uuid.uuid4().hex[:8]}"): i
        for i, row in enumerate(manifest.rows) if row.status == "pending"
    }
    try:
        for future in as_completed(futures):
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
        client.unsubscribe_topic(job.topic)


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
        if not isinstance(exc, (ValueError, OSError, RuntimeError)) or not text:
            text = f"{type(exc).__name__}: {text}".rstrip(": ")
        return SlideRow(slide, "failed", error=text)


# --- on the workers ---------------------------------------------------------------------------


class ThreadLimits(WorkerPlugin):
    """Gives TensorFlow and OpenMP in each worker as many threads as the worker has (before
    TensorFlow loads; variables already set are kept) and quiets TensorFlow's C++ logs."""

    name = "patchheat-thread-limits"

    def setup(self, worker: Any) -> None:
        for var in THREAD_ENV:
            os.environ.setdefault(var, str(worker.state.nthreads))
        if not os.environ.get(DEBUG_ENV):
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


_MODELS = ModelCache()  # in each worker process: models loaded once, kept across tasks
_MODELS_LOCK = threading.Lock()


def _model(job: BatchJob, options: RunOptions) -> Any:
    """The job's model, loaded once per worker process (its threads share it)."""
    with _MODELS_LOCK:
        return _MODELS.get(RunSpec("", job.model, options))


class _Reporter:
    """Sends a task's patch counts to the client as events of the job's topic."""

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


def split_regions(grid: PatchGrid, todo: np.ndarray, split_px: int) -> list[tuple[range, range]]:
    """Blocks of patch rows and columns (``grid.blocks``) whose level region is at most
    ``split_px`` level pixels a side (or one patch), those with a patch of ``todo`` in them."""
    return [(rows, cols) for rows, cols in grid.blocks(split_px)
            if todo[rows.start:rows.stop, cols.start:cols.stop].any()]


def _compute_regions(run: HeatmapRun, slide: str, job: BatchJob,
                     state: dict[str, Any]) -> Iterator[Progress]:
    """The patches of ``run`` computed as region tasks on the cluster, merged into its
    heatmap as they finish; a Progress per region."""
    regions = split_regions(run.grid, run.todo, job.split_px or 0)
    state["regions"] = len(regions)
    total, done, t0 = int(run.todo.sum()), 0, time.perf_counter()
    token = uuid.uuid4().hex[:8]
    with _worker_client() as client:
        futures = [
            client.submit(compute_region, slide, job, run.options, rows, cols,
                          f"{slide}#{k}", retries=job.retries, resources=job.resources,
                          key=f"patchheat-region-{Path(slide).name}-{k}-{token}")
            for k, (rows, cols) in enumerate(regions)
        ]
        for future in as_completed(futures):
            (r0, c0), values, computed = future.result()
            fresh = ~np.isnan(values).any(axis=-1)
            indices = np.argwhere(fresh) + (r0, c0)
            run.heatmap.update(indices, values[fresh])
            done += computed
            yield Progress(indices, values[fresh], done, total, time.perf_counter() - t0)


class _RegionRun(HeatmapRun):
    """A HeatmapRun that computes only the patches of grid ``rows`` and ``cols``."""

    def __init__(self, slide: Any, model: Any, options: RunOptions, rows: range, cols: range):
        super().__init__(slide, model, options)
        self.region = (slice(rows.start, rows.stop), slice(cols.start, cols.stop))

    @property
    def todo(self) -> np.ndarray:
        inside = np.zeros(self.grid.shape, bool)
        inside[self.region] = True
        return super().todo & inside


def compute_region(slide: str, job: BatchJob, options: RunOptions, rows: range, cols: range,
                   task: str) -> tuple[tuple[int, int], np.ndarray, int]:
    """A region task: the patches of grid ``rows`` x ``cols`` of ``slide`` (``options.level``);
    returns the region's origin (row, col), its values (NaN where not computed) and how many
    patches it computed."""
    from .slide import open_slide

    with dask.config.set(scheduler=LOCAL_DASK_SCHEDULER), open_slide(slide) as s:
        run = _RegionRun(s, _model(job, options), options, rows, cols)
        done = 0
        for p in _Reporter(job, slide, task).follow(run.run(), int(run.todo.sum())):
            done = p.done
        return (rows.start, cols.start), np.array(run.heatmap.values[run.region]), done


# --- helpers ----------------------------------------------------------------------------------


def _absolute_model(model: str | os.PathLike[str]) -> str:
    """A built-in name as is; a path made absolute (workers may start in another folder)."""
    return str(model) if is_builtin(str(model)) else str(Path(model).resolve())


def _absolute_cache(options: RunOptions) -> RunOptions:
    """``options`` with its cache folder made absolute."""
    if options.cache_dir is None:
        return options
    return dataclasses.replace(options, cache_dir=Path(options.cache_dir).resolve())


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
    ``workers`` processes of ``threads`` threads (dask's defaults for None) with ``resources``."""
    if scheduler is None:
        with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                          resources=resources, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            yield client
        return
    if workers is not None or threads is not None:
        raise ValueError("--workers and --threads-per-worker size the local cluster: start "
                         "the scheduler's workers with 'dask worker --nworkers N --nthreads T'.")
    try:
        client = (Client(scheduler_file=scheduler) if Path(scheduler).is_file()
                  else Client(scheduler))
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
        width = 30
        filled = int(width * p.finished / max(slides, 1))
        failed = p.manifest.count("failed")
        self.stream.write(
            f"\rslides [{'#' * filled}{'.' * (width - filled)}] {p.finished}/{slides}"
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
