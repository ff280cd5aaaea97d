"""Run inference in a spawned process and stream its results back.

TensorFlow and a drawing napari viewer cannot share a process (DESIGN.md), so the GUI starts the
run here: a ``multiprocessing`` "spawn" child opens the slide by path, loads the model, runs
:class:`~napari_patchheat.inference.HeatmapRun` and sends small messages back: ``Started``,
a :class:`~napari_patchheat.inference.Progress` per batch, then ``Finished`` or ``Failed``. This
module never imports TensorFlow. The child exits when its parent goes away.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .inference import Progress
from .options import RunOptions

POLL_S = 0.05
JOIN_S = 30.0  # how long messages() waits, after the last message, for the worker to exit
LAST_WORDS_S = 1.0  # how long a dead worker's last messages may take to arrive
WRITE_TILE_PX = 1024  # tile size of the temporary TIFF made for layers without a file


@dataclass(frozen=True)
class RunSpec:
    """Everything the worker needs, picklable: a slide path, a model name or path, the options."""

    slide: str
    model: str
    options: RunOptions


@dataclass(frozen=True)
class Started:
    """The run is set up: heatmap metadata (see Heatmap.metadata), values so far (from the
    cache), and how many patches this run will compute."""

    metadata: dict[str, Any]
    values: np.ndarray
    total: int


@dataclass(frozen=True)
class Finished:
    """The run ended: ``cancelled`` when stopped early; ``done`` patches computed by this run."""

    done: int
    cancelled: bool


@dataclass(frozen=True)
class Failed:
    """The run failed; ``message`` is one sentence for the user. Computed values are kept."""

    message: str


Message = Started | Progress | Finished | Failed  # Progress: one finished batch


def _watch_parent() -> None:
    parent = mp.parent_process()
    if parent is not None:
        parent.join()  # returns when the parent process is gone
        os._exit(3)


def _worker(spec: RunSpec, out: Any, cancel: Any) -> None:
    threading.Thread(target=_watch_parent, daemon=True).start()
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from .inference import HeatmapRun

        run = HeatmapRun(spec.slide, spec.model, spec.options)
        todo = run.todo
        out.put(Started(run.heatmap.metadata(), np.array(run.heatmap.values), int(todo.sum())))
        done = 0
        for progress in run.run(cancel):
            done = progress.done
            out.put(progress)
        out.put(Finished(done, cancel.is_set()))
    except Exception as exc:  # every failure reaches the caller as one sentence
        out.put(Failed(str(exc) or type(exc).__name__))


@dataclass
class RunHandle:
    """A run in its own process: read :meth:`messages`, :meth:`cancel` it, or :meth:`kill` it."""

    spec: RunSpec
    process: Any = field(repr=False)
    _queue: Any = field(repr=False)
    _cancel: Any = field(repr=False)
    ended: bool = False

    def poll(self, timeout: float = 0.0) -> list[Message]:
        """Messages that have arrived (waiting up to ``timeout`` s for the first one).

        A worker that dies without a last word is reported as :class:`Failed`; its last words
        still in the pipe are read first.
        """
        msgs: list[Message] = []
        wait = timeout
        while not self.ended:
            try:
                msg = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                if msgs or self.process.is_alive():
                    break
                if wait < LAST_WORDS_S:  # dead: give what it sent a moment to arrive
                    wait = LAST_WORDS_S
                    continue
                self.ended = True
                msgs.append(Failed(
                    f"the inference process stopped unexpectedly (exit code "
                    f"{self.process.exitcode}); what was computed is kept: run again to resume "
                    "(from a script, put the script's code under if __name__ == '__main__':, "
                    "which spawned processes need)."
                ))
                break
            msgs.append(msg)
            wait = 0.0
            if isinstance(msg, (Finished, Failed)):
                self.ended = True
        if self.ended:
            self.process.join(timeout=0)  # reap it if it is gone; never wait for TF's shutdown
        return msgs

    def messages(self) -> Iterator[Message]:
        """Every message until the run ends (blocking)."""
        while not self.ended:
            yield from self.poll(POLL_S)
        self.process.join(timeout=JOIN_S)  # no zombie: the worker exits once TF has shut down

    def cancel(self) -> None:
        """Ask the worker to stop after the batch in progress; it answers with a cancelled
        :class:`Finished`."""
        self._cancel.set()

    def kill(self) -> None:
        """End the worker at once."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)

    @property
    def alive(self) -> bool:
        """True while the worker process runs."""
        return self.process.is_alive()


def start_run(spec: RunSpec) -> RunHandle:
    """Start ``spec`` in a new spawned process (never importing TensorFlow here)."""
    ctx = mp.get_context("spawn")
    out, cancel = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=_worker, args=(spec, out, cancel), daemon=True,
                          name="patchheat-inference")
    process.start()
    return RunHandle(spec, process, out, cancel)


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
            band = np.asarray(image[y : y + tile])
            for x in range(0, w, tile):
                yield band[:, x : x + tile]

    res: dict[str, Any] = {} if mpp is None else {"resolution": (1e4 / mpp, 1e4 / mpp),
                                                  "resolutionunit": "CENTIMETER"}
    rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    tifffile.imwrite(path, tiles(), shape=image.shape, dtype=image.dtype, tile=(tile, tile),
                     bigtiff=image.nbytes > 2**31, photometric="rgb" if rgb else "minisblack",
                     **res)
    return path
