"""The client side of a batch: :func:`run_batch` submits one task per slide (batch/tasks.py)
to a dask.distributed cluster, follows the tasks' progress events and writes the manifest
(manifest.py) as slides finish.

No scheduler of our own: a LocalCluster of worker processes by default, else the caller's
Client (any scheduler: dask-jobqueue, Kubernetes, a scheduler file). Slides, models and the
output folder must be on a filesystem the workers see. TensorFlow is imported by the workers
only: worker processes, except the command's one worker on a machine of few cores for a batch
of little work, which runs in its process (batch/shape.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import dask
from distributed import Client, KilledWorker, LocalCluster, as_completed

from ..files import loads_json
from ..heatmap import recorded_path, slide_stem
from ..inference import run_threads
from ..jobs import JobOutputs, error_text
from ..manifest import Manifest, SlideRow
from ..messages import first_line
from ..models import is_builtin
from ..options import RunOptions
from ..runner import DEBUG_ENV
from ..slide.location import same_file_key, source_name
from .shape import IN_PROCESS_CONFIG, ClusterShape, local_cluster_shape
from .tasks import TOPIC_PREFIX, BatchJob, WorkerSettings, process_slide

CANCEL_POLL_S = 0.2  # how often a batch's cancel watcher checks that the batch still runs
SCHEDULER_CONNECT_S = 20.0  # how long connecting to a scheduler may take before giving up
PROBE_GRACE_S = 1.0  # the probe's own start and clean-up past its timeout
QUIET_LOG_LEVEL = logging.CRITICAL + 1  # the local cluster's log level: no dask line passes


class TaskReport(NamedTuple):
    """A task's last report: its slide, patches done and to do, the worker process's id."""

    slide: str
    done: int
    total: int
    pid: int


@dataclass
class BatchProgress:
    """Where a batch stands: its manifest, each task's last report (task -> TaskReport) and
    running totals, updated as tasks report (:meth:`report`) and slides end (:meth:`finish`):
    a refresh costs the same however many slides and tasks the batch has."""

    manifest: Manifest
    tasks: dict[str, TaskReport] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _reported: dict[str, list[int]] = field(default_factory=dict)  # slide -> [done, to do]
    _pending: set[str] = field(default_factory=set)  # slides whose row is pending
    _totals: list[int] = field(default_factory=lambda: [0, 0])

    def __post_init__(self) -> None:
        for row in self.manifest.rows:
            self._add(self.slide_patches(row), 1)
            if row.status == "pending":
                self._pending.add(row.slide)

    def _add(self, counts: tuple[int, int], sign: int) -> None:
        self._totals[0] += sign * counts[0]
        self._totals[1] += sign * counts[1]

    def report(self, task: str, report: TaskReport) -> None:
        """Take ``task``'s new report (the totals move while its slide is pending)."""
        old = self.tasks.get(task)
        self.tasks[task] = report
        delta = (report.done - (old.done if old else 0), report.total - (old.total if old else 0))
        counts = self._reported.setdefault(report.slide, [0, 0])
        counts[0] += delta[0]
        counts[1] += delta[1]
        if report.slide in self._pending:
            self._add(delta, 1)

    def finish(self, index: int, row: SlideRow) -> None:
        """Row ``index`` of the manifest ended as ``row``."""
        self._add(self.slide_patches(self.manifest.rows[index]), -1)
        self.manifest.rows[index] = row
        self._add(self.slide_patches(row), 1)
        if row.status != "pending":
            self._pending.discard(row.slide)

    def slide_patches(self, row: SlideRow) -> tuple[int, int]:
        """(done, to do) patches of ``row``'s slide in this batch: its tasks' reports while it
        runs, its computed patches once it is ok, what was done when it failed."""
        if row.status == "ok":
            return row.computed, row.computed
        done, total = self._reported.get(row.slide, (0, 0))
        return (done, total) if row.status == "pending" else (done, done)

    @property
    def patches(self) -> tuple[int, int]:
        """(done, to do) patches over the batch's slides, as far as reported."""
        return self._totals[0], self._totals[1]

    @property
    def finished(self) -> int:
        """Slides no longer pending (ok, failed or skipped)."""
        return len(self.manifest.rows) - len(self._pending)

    @property
    def patches_per_s(self) -> float:
        """Patches done per second since the batch started."""
        elapsed = time.monotonic() - self.started
        return self.patches[0] / elapsed if elapsed > 0 else 0.0


def run_batch(slides: Iterable[str | os.PathLike[str]], model: str | os.PathLike[str],
              options: RunOptions, out: str | os.PathLike[str], client: Client | None = None,
              *, outputs: JobOutputs = JobOutputs(), split_px: int | None = None,
              retries: int = 0, resources: dict[str, float] | None = None,
              on_progress: Callable[[BatchProgress], Any] | None = None,
              cancel: threading.Event | None = None,
              storage_options: Mapping[str, Any] | None = None) -> Manifest:
    """Compute the heatmap of each slide with ``model`` on a dask cluster; returns the manifest.

    Each slide gets the files ``patchheat run`` writes for ``outputs`` (formats, level choice,
    class rule: jobs.JobOutputs), in ``out``, and a row in ``out/batch.csv`` and ``batch.json``
    (written as slides finish). Slides a previous batch of the same model, options and outputs
    finished are skipped; a slide that fails is a failed row with one sentence. ``client``: the
    caller's (any scheduler), else a LocalCluster of worker processes for this call.
    ``split_px``: regions of about that many level pixels a side, merged. ``retries`` and
    ``resources`` (e.g. ``{"GPU": 1}``) go to each model task. ``on_progress`` gets a
    :class:`BatchProgress` as workers report and slides finish. Setting ``cancel`` cancels the
    slides' tasks not finished yet: their rows stay ``pending`` (a later batch runs them,
    resuming from the result cache) and run_batch returns. Slides may be URLs (``s3://``,
    ``https://``, ...): each task opens its URL with fsspec and ``storage_options`` (they travel
    in the BatchJob to the workers; the manifest records the URL).
    """
    if split_px is not None and split_px < 1:
        raise ValueError(f"split_px={split_px} must be a whole number of level pixels, >= 1.")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    job = BatchJob(_absolute_model(model), _absolute_paths(options), str(out), outputs=outputs,
                   split_px=split_px, retries=retries,
                   resources=dict(resources) if resources else None,
                   topic=f"{TOPIC_PREFIX}-{uuid.uuid4().hex[:12]}",
                   storage_options=dict(storage_options) if storage_options else None)
    manifest = plan(slides, job, Manifest.read(out))
    manifest.write(out)
    if any(r.status == "pending" for r in manifest.rows):
        with _client(client) as c:
            _run(c, job, manifest, on_progress, cancel)
    return manifest


def plan(slides: Iterable[str | os.PathLike[str]], job: BatchJob,
         previous: Manifest | None) -> Manifest:
    """The manifest a batch starts from: one row per slide (recorded as every heatmap records
    its slide: heatmap.recorded_path; the same file twice, by links too, once), ``skipped``
    where ``previous`` finished it for the same key, ``failed`` where its outputs would have
    the name of an earlier slide's, else ``pending``."""
    done = previous.done_rows(job.key) if previous is not None else {}
    rows: list[SlideRow] = []
    stems: dict[str, str] = {}
    files: dict[str, str] = {}  # the file itself (links followed) -> the slide as recorded
    for s in slides:
        files.setdefault(same_file_key(s), recorded_path(s))
    for slide in files.values():
        stem = slide_stem(source_name(slide))
        if slide in done:
            rows.append(dataclasses.replace(done[slide], status="skipped", computed=0,
                                            seconds=0.0))
        elif stem in stems:
            rows.append(SlideRow(slide, "failed", error=(
                f"{source_name(slide)} has the name of {stems[stem]}: their outputs would "
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
    with cluster_client(None, None, None, None) as c:
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
            progress.report(msg["task"], TaskReport(msg["slide"], msg["done"], msg["total"],
                                                    msg["pid"]))
            notify()

    client.register_plugin(WorkerSettings())
    client.subscribe_topic(job.topic, on_event)
    resources = None if job.split_px else job.resources  # a split slide's task only merges
    futures = {
        client.submit(process_slide, row.slide, job, retries=job.retries, resources=resources,
                      key=f"patchheat-slide-{source_name(row.slide)}-{uuid.uuid4().hex[:8]}"): i
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
                progress.finish(i, row)
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
            f"the workers running {source_name(slide)} died several times (out of memory?): "
            "give the workers more memory, or use --split-px."))
    except Exception as exc:  # the worker's error, as one sentence
        return SlideRow(slide, "failed", error=error_text(exc))


def _absolute_model(model: str | os.PathLike[str]) -> str:
    """A built-in name as is; a path made absolute (workers may start in another folder)."""
    return str(model) if is_builtin(str(model)) else str(Path(model).resolve())


def _absolute_paths(options: RunOptions) -> RunOptions:
    """``options`` with its cache folder and region-of-interest file made absolute."""
    paths: dict[str, Any] = {
        name: Path(value).resolve() for name in ("cache_dir", "roi")
        if isinstance(value := getattr(options, name), (str, os.PathLike))}
    return dataclasses.replace(options, **paths) if paths else options


@contextmanager
def cluster_client(scheduler: str | None, workers: int | None, threads: int | None,
                   resources: dict[str, float] | None, *,
                   in_process: bool | Callable[[], bool] = False) -> Iterator[Client]:
    """A client of ``scheduler`` (an address, or a scheduler file), else of a LocalCluster
    shaped by :func:`local_cluster_shape` from this process's cores (inference.run_threads),
    ``workers``, ``threads`` and ``in_process`` (a bool, or a question asked only where it
    decides; the command's: its worker then imports TensorFlow in this process, which
    napari's must never do), with ``resources``, whose dask
    log lines (in this process and the workers') stay off the terminal: a failed slide is its
    row, not a worker's log block ($PATCHHEAT_DEBUG keeps them). It is not made dask's default
    scheduler: this process's own dask reads stay local."""
    if scheduler is None:
        shape = local_cluster_shape(run_threads(), workers, threads, in_process=in_process)
        # a dashboard costs ~0.3 s to start: worker processes only (few cores, in this
        # process: none)
        with dask.config.set({} if shape.processes else IN_PROCESS_CONFIG), \
                local_cluster(shape, resources, dashboard=shape.processes) as cluster, \
                shaped_client(cluster, shape) as client:
            yield client
        return
    if workers is not None or threads is not None:
        raise ValueError("--workers and --threads-per-worker size the local cluster: start "
                         "the scheduler's workers with 'dask worker --nworkers N --nthreads T'.")
    with connect_scheduler(scheduler) as client:
        yield client


def local_cluster(shape: ClusterShape, resources: dict[str, float] | None = None, *,
                  dashboard: bool = False) -> LocalCluster:
    """A LocalCluster of ``shape`` (:func:`local_cluster_shape`), with ``resources`` and a
    dashboard where asked, its dask log lines off the terminal; its tasks want a
    :func:`shaped_client`."""
    return LocalCluster(n_workers=shape.workers, threads_per_worker=shape.threads,
                        processes=shape.processes, resources=resources,
                        dashboard_address=":0" if dashboard else None,
                        **quiet_cluster_kwargs(shape.processes))


def shaped_client(cluster: LocalCluster, shape: ClusterShape) -> Client:
    """A client of ``cluster`` (of ``shape``) whose workers give each task's run
    ``shape.task_threads`` threads (WorkerSettings, registered before run_batch's default)."""
    client = Client(cluster, set_as_default=False)
    client.register_plugin(WorkerSettings(shape.task_threads))
    return client


def quiet_cluster_kwargs(processes: bool = True) -> dict[str, Any]:
    """LocalCluster keywords that keep dask's and TensorFlow's log lines off the terminal
    (worker processes' TF_CPP_MIN_LOG_LEVEL set before they start; a worker in this process
    imports TensorFlow quietly anyway); $PATCHHEAT_DEBUG keeps them."""
    if os.environ.get(DEBUG_ENV):
        return {"silence_logs": logging.WARNING}
    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    return {"silence_logs": QUIET_LOG_LEVEL, **({"env": env} if processes else {})}


def connect_scheduler(scheduler: str, timeout_s: float = SCHEDULER_CONNECT_S) -> Client:
    """A client of ``scheduler`` (an address such as tcp://host:8786, or a scheduler file),
    within ``timeout_s`` seconds. The address is asked who it is first (a dask scheduler, or
    an OSError of one sentence): no half-made Client, whose clean-up stalls, for a web server,
    a dashboard port or garbage."""
    address = _scheduler_address(scheduler)
    try:
        address = _parsed(address)
    except ValueError as exc:  # an address dask cannot parse
        raise OSError(f"cannot reach the dask scheduler {scheduler}: {str(exc).split(';')[0]}; "
                      "check the address (tcp://host:8786) or the scheduler file.") from None
    try:
        identity = _identity(address, timeout_s)
    except TimeoutError:
        reason = f"no dask scheduler answered within {timeout_s:g} s"
    except OSError as exc:
        reason = first_line(exc).rstrip(".")  # inside our sentence
    except Exception:  # what answered there sent something dask cannot read
        reason = "what answers there does not speak dask's protocol"
    else:
        kind = identity.get("type") if isinstance(identity, dict) else None
        if kind == "Scheduler":
            try:
                return Client(address, timeout=timeout_s, set_as_default=False)
            except Exception as exc:
                reason = first_line(exc).rstrip(".")
        else:
            reason = f"what answers there is a dask {kind}, not a scheduler" if kind \
                else "what answers there is not a dask scheduler"
    raise OSError(f"cannot reach the dask scheduler {scheduler}: {reason}; check the address "
                  "(tcp://host:8786) or the scheduler file.")


def _scheduler_address(scheduler: str) -> str:
    """``scheduler`` itself, or the "address" of the scheduler file (JSON) it names."""
    path = Path(scheduler)
    if not path.is_file():
        return scheduler
    try:
        doc = loads_json(path.read_text())
    except (OSError, ValueError):  # JSONError (nested too deeply too), UnicodeDecodeError
        doc = None
    address = doc.get("address") if isinstance(doc, dict) else None
    if not isinstance(address, str) or not address:
        raise OSError(f"{scheduler} is not a dask scheduler file (JSON with an \"address\"): "
                      "give the file 'dask scheduler --scheduler-file' wrote, or an address "
                      "such as tcp://host:8786.")
    return address


def _parsed(address: str) -> str:
    """``address`` with dask's default scheme ('host:8786' -> 'tcp://host:8786'); a ValueError
    where dask cannot parse it or tell its host from its port ('foo::bar')."""
    from distributed.comm import get_address_host_port, parse_address, unparse_address

    scheme, location = parse_address(address)
    address = unparse_address(scheme, location)
    if scheme != "inproc":  # the one scheme without a host and port
        get_address_host_port(address)
    return address


def _identity(address: str, timeout_s: float) -> Any:
    """What ``address`` says it is (dask's ``identity``), asked in a fresh event loop on a
    thread of its own (the caller may be in a loop); a TimeoutError after ``timeout_s``."""
    from distributed import Security
    from distributed.core import rpc

    async def ask() -> Any:
        # TLS and its certificates as dask's configuration gives them (as Client would)
        remote = rpc(address, timeout=timeout_s,
                     connection_args=Security().get_connection_args("client"))
        try:
            return await asyncio.wait_for(remote.identity(), timeout_s)
        finally:
            await remote.close_rpc()

    answer: dict[str, Any] = {}

    def probe() -> None:
        try:
            answer["identity"] = asyncio.run(ask())
        except BaseException as exc:  # handed to the caller's thread
            answer["error"] = exc

    # a daemon thread, waited for with a bound: Ctrl-C reaches the caller at once
    thread = threading.Thread(target=probe, name="patchheat-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + PROBE_GRACE_S)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout_s:g} s")
    if "error" in answer:
        raise answer["error"]
    return answer["identity"]
