"""Run inference in a spawned process that stays up across runs, and stream results back.

TensorFlow and a drawing napari viewer cannot share a process (DESIGN.md), so runs go to a
:class:`Worker`: a ``multiprocessing`` "spawn" child that imports TensorFlow once, in the
background, as soon as it starts, keeps the models it loaded, and takes one run at a time
(:meth:`Worker.submit`). For each run it opens the slide by path, runs
:class:`~napari_patchheat.inference.HeatmapRun` and sends small messages back: ``Started``, a
:class:`~napari_patchheat.inference.Progress` per batch (``Warned`` where the cache could not be
used), then ``Finished`` or ``Failed``. Cancel
stops the run, not the process. Between runs it warms models (:meth:`Worker.warm`, warm.py).
:func:`start_run` is a run in a worker of its own. This module never imports TensorFlow. The
child exits when its parent goes away, and keeps TensorFlow's C++ logs off the terminal unless
``$PATCHHEAT_DEBUG`` is set.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import queue
import signal
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .focus import Rect, ViewChannel
from .grid import as_numpy
from .inference import Progress
from .options import RunOptions
from .warm import Warmed, WarmSpec, serve_warm_up

POLL_S = 0.05
JOIN_S = 30.0  # how long a run of its own waits, after its last message, for its worker to exit
WORKER_MODELS_MAX = 4  # models a worker keeps loaded (least recently used go first)
DEBUG_ENV = "PATCHHEAT_DEBUG"  # set: the worker's TensorFlow logs reach the terminal
WORKER_NICE = 10  # added to the shared worker's nice value (Unix); 0 leaves it as it is
LAST_WORDS_S = 1.0  # how long a dead worker's last messages may take to arrive
CLOSE_SHARED_S = 2.0  # how long the shared worker may take to exit when closed, then killed
WRITE_TILE_PX = 1024  # tile size of the temporary TIFF made for layers without a file


@dataclass(frozen=True)
class RunSpec:
    """Everything the worker needs, picklable: a slide path, a model name or path, the options."""

    slide: str
    model: str
    options: RunOptions
    view_mode: str = ""  # focus.VIEW_FIRST or VIEW_ONLY: what napari shows first (or only)


@dataclass(frozen=True)
class Started:
    """The run is set up: heatmap metadata (see Heatmap.metadata), values so far (from the
    cache), and how many patches this run will compute."""

    metadata: dict[str, Any]
    values: np.ndarray
    total: int


@dataclass(frozen=True)
class Finished:
    """The run ended: ``cancelled`` when stopped early; ``done`` patches computed by this run;
    ``view``: the last view a run with a focus followed to its end (focus.ViewFocus.completed),
    else None."""

    done: int
    cancelled: bool
    view: Rect | None = None


@dataclass(frozen=True)
class Warned:
    """Something the user should know that does not stop the run (the cache could not be
    used, a damaged cache was set aside); ``message`` is one sentence."""

    message: str


@dataclass(frozen=True)
class Failed:
    """The run failed; ``message`` is one sentence for the user. Computed values are kept."""

    message: str


Message = Started | Progress | Warned | Finished | Failed  # Progress: one finished batch


def _watch_parent() -> None:
    parent = mp.parent_process()
    if parent is not None:
        parent.join()  # returns when the parent process is gone
        os._exit(3)


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ and absl logs (CUDA probing, oneDNN notes) off the terminal: they
    go to file descriptor 2 before Python can filter them. ``$PATCHHEAT_DEBUG`` keeps them."""
    if os.environ.get(DEBUG_ENV):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _serve(jobs: Any, out: Any, cancel: Any, ready: Any, warmed: Any, latest: Any,
           view: ViewChannel | None = None) -> None:
    """The worker process: import TensorFlow, then run each ``(job id, RunSpec)`` of ``jobs``
    until ``None``, sending ``(job id, message)`` to ``out``; a ``WarmSpec`` is warmed unless
    a newer job (id in ``latest``) came, its ``Warmed`` sent to ``warmed``."""
    threading.Thread(target=_watch_parent, daemon=True).start()
    _quiet_tensorflow()
    try:
        import tensorflow  # noqa: F401  (warm: the first run need not wait for it)
    except Exception as exc:  # a broken install: every run says so
        broken: str | None = f"TensorFlow could not be imported ({exc}): reinstall it."
    else:
        broken = None
    ready.set()
    models = ModelCache()
    while (job := jobs.get()) is not None:
        job_id, spec = job
        if isinstance(spec, WarmSpec):
            if not broken:
                serve_warm_up(spec, job_id, latest, warmed, models.get)
            continue
        runs = iter([Failed(broken)]) if broken else _run(spec, cancel, models, view)
        for msg in runs:
            out.put((job_id, msg))


class ModelCache:
    """Loaded models, kept across runs (at most WORKER_MODELS_MAX, least recently used go)."""

    def __init__(self, size: int = WORKER_MODELS_MAX) -> None:
        self.size = size
        self._models: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    @staticmethod
    def key(spec: RunSpec | WarmSpec) -> tuple[Any, ...]:
        """What identifies a loaded model: its name or path (with the file's size and time, so
        a rewritten file is loaded again), resize and precision."""
        path = Path(spec.model)
        stat = path.stat() if path.exists() else None
        stamp = None if stat is None else (stat.st_mtime_ns, stat.st_size)
        return spec.model, stamp, spec.options.resize, spec.options.mixed_precision

    def get(self, spec: RunSpec | WarmSpec) -> Any:
        """The PatchModel of ``spec``'s model, loaded now or before."""
        from .models import load_model

        key = self.key(spec)
        if key not in self._models:
            self._models[key] = load_model(spec.model, resize=spec.options.resize,
                                           mixed_precision=spec.options.mixed_precision)
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        self._models.move_to_end(key)
        return self._models[key]

    def __len__(self) -> int:
        return len(self._models)


def _run(spec: RunSpec, cancel: Any, models: ModelCache, view: ViewChannel | None = None
         ) -> Iterator[Message]:
    """The messages of one run: Started, a Progress per batch, Finished; or Failed. The cache's
    warnings (CacheWarning) come as Warned, each as soon as it is given."""
    from .cache import CacheWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CacheWarning)
        for msg in _run_messages(spec, cancel, models, view):
            while caught:
                warning = caught.pop(0)
                if issubclass(warning.category, CacheWarning):
                    yield Warned(str(warning.message))
            yield msg


def _run_messages(spec: RunSpec, cancel: Any, models: ModelCache,
                  view: ViewChannel | None = None) -> Iterator[Message]:
    try:
        from .inference import HeatmapRun

        run = HeatmapRun(spec.slide, models.get(spec), spec.options)
        focus = view.focus(spec.view_mode) if view is not None else None
        todo = run.todo
        total = int(todo.sum()) if focus is None else focus.total(todo, run.grid)
        yield Started(run.heatmap.metadata(), np.array(run.heatmap.values), total)
        done = 0
        for progress in run.run(cancel, focus):
            done = progress.done
            yield progress
        yield Finished(done, cancel.is_set(), None if focus is None else focus.completed)
    except Exception as exc:  # every failure reaches the caller as one sentence
        yield Failed(str(exc) or type(exc).__name__)


class Worker:
    """A spawned process that holds TensorFlow and loaded models across runs.

    Starting one costs the parent little (TensorFlow is imported in the child, in the
    background); :attr:`ready` says when that is done. One run at a time: :meth:`submit` a
    :class:`RunSpec`, read its :class:`RunHandle`, then submit the next.
    """

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._jobs, self._out = ctx.Queue(), ctx.Queue()
        self._cancel, self._ready = ctx.Event(), ctx.Event()
        self._ids = itertools.count(1)
        self._warmed, self._latest = ctx.Queue(), ctx.Value("q", 0)  # warm reports, newest job
        self.view = ViewChannel(ctx)
        self.process = ctx.Process(target=_serve, daemon=True, name="patchheat-inference",
                                   args=(self._jobs, self._out, self._cancel, self._ready,
                                         self._warmed, self._latest, self.view))
        self.process.start()
        self.current: RunHandle | None = None
        self.warm_asked: WarmSpec | None = None  # the last warm-up sent
        self.warm_reports: dict[tuple[Any, ...], Warmed] = {}  # the newest of each key

    @property
    def alive(self) -> bool:
        """True while the worker process runs."""
        return self.process.is_alive()

    @property
    def ready(self) -> bool:
        """True once the worker has imported TensorFlow."""
        return self._ready.is_set()

    @property
    def busy(self) -> bool:
        """True while a submitted run has not ended."""
        return self.current is not None and not self.current.ended

    def submit(self, spec: RunSpec) -> RunHandle:
        """Queue ``spec`` as the worker's next run; its handle reads its messages."""
        if self.busy:
            raise RuntimeError("The worker is still running a model: cancel that run first.")
        self._cancel.clear()
        self.view.send(None)  # the new run's view comes with RunHandle.set_view
        handle = RunHandle(spec, self, next(self._ids))
        self.current = handle
        self._latest.value = handle.job_id  # warm-ups still queued give way
        self._jobs.put((handle.job_id, spec))
        return handle

    def warm(self, spec: WarmSpec, again: bool = False) -> bool:
        """Queue a warm-up of ``spec`` (never waits); False while a run is in progress, or when
        it is the last warm-up asked or reported warm (unless ``again``: e.g. two docks of other
        models). A newer job overtakes it."""
        last = None if self.warm_asked is None else self.warm_asked.key
        done = self.warmed().get(spec.key)
        if self.busy or (not again and (spec.key == last or (done is not None and done.warm))):
            return False
        self.warm_asked, job_id = spec, next(self._ids)
        self._latest.value = job_id
        self._jobs.put((job_id, spec))
        return True

    def warmed(self) -> dict[tuple[Any, ...], Warmed]:
        """The warm-ups reported so far, the newest per key (never waits)."""
        while True:
            try:
                report = self._warmed.get_nowait()
            except queue.Empty:
                return self.warm_reports
            self.warm_reports[report.key] = report

    def cancel(self) -> None:
        """Ask the run in progress to stop after its batch (it answers a cancelled Finished)."""
        self._cancel.set()

    def receive(self, timeout: float) -> tuple[int, Message]:
        """The next (job id, message) from the process; queue.Empty after ``timeout`` s."""
        return self._out.get(timeout=timeout) if timeout > 0 else self._out.get_nowait()

    def close(self, timeout: float = JOIN_S) -> None:
        """Let the process finish its run, then exit; kill it if that takes over ``timeout`` s."""
        if self.alive:
            self._jobs.put(None)
            self.process.join(timeout=timeout)
        self.kill()

    def kill(self) -> None:
        """End the process at once (its run, if any, ends as Failed)."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)


@dataclass
class RunHandle:
    """A run in a :class:`Worker`: read :meth:`messages` (or :meth:`poll`), :meth:`cancel` it, or
    :meth:`kill` its worker. ``owns_worker``: the worker was started for this run alone and
    is closed when the run ends."""

    spec: RunSpec
    worker: Worker = field(repr=False)
    job_id: int
    owns_worker: bool = False
    ended: bool = False

    @property
    def process(self) -> Any:
        """The worker's process."""
        return self.worker.process

    def poll(self, timeout: float = 0.0) -> list[Message]:
        """Messages that have arrived (waiting up to ``timeout`` s for the first one).

        A worker that dies without a last word is reported as :class:`Failed`; its last words
        still in the pipe are read first. Messages of other runs are skipped.
        """
        msgs: list[Message] = []
        wait = timeout
        while not self.ended:
            try:
                job_id, msg = self.worker.receive(wait)
            except queue.Empty:
                if msgs or self.worker.alive:
                    break
                if wait < LAST_WORDS_S:  # dead: give what it sent a moment to arrive
                    wait = LAST_WORDS_S
                    continue
                self._end()
                msgs.append(Failed(died_message(self.process.exitcode, self.worker.ready)))
                break
            if job_id != self.job_id:
                continue
            msgs.append(msg)
            wait = 0.0
            if isinstance(msg, (Finished, Failed)):
                self._end()
        return msgs

    def _end(self) -> None:
        self.ended = True
        if self.owns_worker:
            self.worker.close()
        else:
            self.process.join(timeout=0)  # reap it if it died; never wait for TF's shutdown

    def messages(self) -> Iterator[Message]:
        """Every message until the run ends (blocking)."""
        while not self.ended:
            yield from self.poll(POLL_S)

    def cancel(self) -> None:
        """Ask the run to stop after the batch in progress; it answers with a cancelled
        :class:`Finished`. The worker stays up."""
        if not self.ended:
            self.worker.cancel()

    def kill(self) -> None:
        """End the worker's process at once."""
        self.worker.kill()

    def set_view(self, view: Rect | None) -> None:
        """Tell the run what napari shows now: ``(y0, x0, y1, x1)`` of the run's level, level
        pixels (a run of a ``view_mode`` reads it first; others ignore it)."""
        if not self.ended:
            self.worker.view.send(view)

    @property
    def alive(self) -> bool:
        """True while the worker process runs."""
        return self.worker.alive


def died_message(exitcode: int | None, ready: bool) -> str:
    """The sentence for a worker that died without a word: killed by a signal (which), or
    failing as it started (a script without a ``__main__`` guard), or another exit code."""
    kept = "what was computed is kept: run again to resume."
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = {"SIGKILL": " (killed: out of memory, or by a user)",
                "SIGBUS": " (a file it mapped became unreadable, e.g. a full disk)"}
        return (f"the inference process was stopped by {name}{hint.get(name, '')}; {kept}")
    if exitcode == 1 and not ready:
        return ("the inference process failed as it started (exit code 1): from a script, put "
                "the script's code under if __name__ == '__main__':, which spawned processes "
                "need.")
    return f"the inference process stopped unexpectedly (exit code {exitcode}); {kept}"


def lower_priority(pid: int, increment: int = WORKER_NICE) -> bool:
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


_shared: Worker | None = None
_shared_lock = threading.Lock()


def shared_worker(nice: int = WORKER_NICE) -> Worker:
    """This process's warm worker: started (its priority lowered by ``nice``, so a run that
    fills every core leaves the GUI the CPU it needs) on the first call, and again after it
    died. One run at a time for the whole process."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.alive:
            _shared = Worker()
            assert _shared.process.pid is not None  # started
            lower_priority(_shared.process.pid, nice)
        return _shared


def current_worker() -> Worker | None:
    """This process's warm worker if it is running (never starts one)."""
    with _shared_lock:
        return _shared if _shared is not None and _shared.alive else None


def close_shared_worker(timeout: float = CLOSE_SHARED_S) -> None:
    """End this process's warm worker, if started: kill it when it has no run (nothing to
    save; it may still be importing TensorFlow), else cancel the run and let it exit, killing
    it if that takes over ``timeout`` s. The next :func:`shared_worker` starts a new one."""
    global _shared
    with _shared_lock:
        worker, _shared = _shared, None
    if worker is None:
        return
    if worker.busy:
        worker.cancel()
        worker.close(timeout)
    else:
        worker.kill()


def start_run(spec: RunSpec) -> RunHandle:
    """Run ``spec`` in a worker of its own, closed when the run ends (never importing
    TensorFlow here)."""
    worker = Worker()
    handle = worker.submit(spec)
    handle.owns_worker = True
    return handle


def array_to_tiff(image: Any, folder: str | Path | None = None, mpp: float | None = None) -> Path:
    """Write a (Y X C) numpy or dask array to a temporary tiled TIFF the worker can open.

    For image layers that have no file: written one row of tiles at a time (bounded memory),
    uncompressed, so it costs about one memory copy. ``mpp`` (µm/px) goes into the resolution tags.
    """
    import tifffile

    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="patchheat-"))
    path = folder / "layer.tif"
    h, w = image.shape[:2]
    tile = WRITE_TILE_PX

    def tiles() -> Iterator[np.ndarray]:
        for y in range(0, h, tile):
            band = as_numpy(image[y : y + tile])
            for x in range(0, w, tile):
                yield band[:, x : x + tile]

    res: dict[str, Any] = {} if mpp is None else {"resolution": (1e4 / mpp, 1e4 / mpp),
                                                  "resolutionunit": "CENTIMETER"}
    rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    tifffile.imwrite(path, tiles(), shape=image.shape, dtype=image.dtype, tile=(tile, tile),
                     bigtiff=image.nbytes > 2**31, photometric="rgb" if rgb else "minisblack",
                     **res)
    return path
