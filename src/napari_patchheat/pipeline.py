"""The run's reading side: decoding threads, read-ahead, and their choice from measured costs.

A run (inference.py) reads and decodes blocks of a level and writes their patches into reused
batch buffers (extract.write_batches) on a thread of its own, ahead of the model. How many
threads decode and how many patches a model call takes are chosen here from the measured
CPU cost per patch of the reading side and of the model (:func:`choose_decode_threads`,
:func:`choose_batch_size`), unless RunOptions says. No TensorFlow here.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .extract import POLL_S
from .grid import Needed

THREADS_ENV = "PATCHHEAT_THREADS"  # the cores a run may keep busy (a batch worker sets its own)
# TensorFlow's fixed cost per model call is ~0.5-1 ms here (dispatch, conversion): a call of at
# least this long keeps it to about a tenth
MIN_MODEL_CALL_S = 0.005
# the most bytes of patches an automatically sized batch holds: bigger batches of a cheap model
# fall out of the caches (`dab`, 224 px: 64 per call is the fastest, 256 runs at 0.6x of it)
MAX_AUTO_BATCH_BYTES = 16 * 2**20
MAX_AUTO_BATCH = 1024


def run_threads() -> int:
    """The cores a run may keep busy: ``$PATCHHEAT_THREADS`` where set (each worker of
    ``patchheat batch`` sets its thread count there), else the CPUs this process may run on."""
    if os.environ.get(THREADS_ENV, "").strip():
        try:
            return max(1, int(os.environ[THREADS_ENV]))
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={os.environ[THREADS_ENV]!r} is not a whole number "
                             "of threads: set it to 1 or more, or unset it.") from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LevelReader:
    """A level whose regions decode on ``workers`` threads (default: all cores but the model's):
    a slide's tile reader (``Slide.reader``) decodes its tiles on a thread pool, a dask level
    computes on as many threads, numpy levels pass through. :meth:`set_workers` changes it."""

    def __init__(self, level: Any, workers: int | None = None):
        self.level, self.shape, self.dtype = level, level.shape, level.dtype
        self.workers, self._pool = 1, None  # type: int, ThreadPoolExecutor | None
        self.set_workers(max(1, run_threads() - 1) if workers is None else workers)

    def set_workers(self, workers: int) -> None:
        """Decode on ``workers`` threads from the next read on (not during one)."""
        if workers == self.workers and (workers == 1) == (self._pool is None):
            return
        self.close()
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read_tiles(key)

    def read_tiles(self, key: Any, needed: Needed | None = None) -> np.ndarray:
        """``self[key]``; a tile reader decodes only the tiles ``needed`` takes (see
        ``grid.read_region``)."""
        if hasattr(self.level, "read_tiles"):
            return self.level.read_tiles(key, self._pool.map if self._pool else map, needed)
        part = self.level[key]
        if hasattr(part, "compute"):
            if self._pool is None:
                return part.compute(scheduler="synchronous")
            return part.compute(scheduler="threads", num_workers=self.workers)
        return np.asarray(part)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


@dataclass(frozen=True)
class Costs:
    """Measured CPU-seconds per patch: ``read`` (decoding the blocks and writing the patches
    into batches) and ``model`` (one call on a full batch, after its first)."""

    read: float
    model: float


def choose_decode_threads(costs: Costs, cores: int) -> int:
    """Decoding threads that keep up with the model on ``cores``: the reading side's share of
    the work, ``cores * read / (read + model)``, rounded up (1 to ``cores``). A cheap model
    (`dab`: reading costs twice the model) gets every core; a CNN gets one."""
    share = costs.read / max(costs.read + costs.model, 1e-12)
    return min(cores, max(1, math.ceil(cores * share - 1e-9)))


def choose_batch_size(costs: Costs, patch_bytes: int, start: int) -> int:
    """Patches per model call: ``start`` doubled until a call takes ``MIN_MODEL_CALL_S`` at the
    measured cost (TensorFlow's per-call cost amortised), while a batch holds at most
    ``MAX_AUTO_BATCH_BYTES`` (and ``MAX_AUTO_BATCH`` patches)."""
    size = start
    while (size * costs.model < MIN_MODEL_CALL_S and size * 2 <= MAX_AUTO_BATCH
           and size * 2 * patch_bytes <= MAX_AUTO_BATCH_BYTES):
        size *= 2
    return size


class Prefetch:
    """Runs an iterator in a thread, ``depth`` items ahead; re-raises its errors in the reader."""

    _END = object()

    def __init__(self, source: Iterator[Any], depth: int, cancel: threading.Event | None):
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._cancel = cancel
        self._thread = threading.Thread(target=self._fill, args=(source,), daemon=True)
        self._thread.start()

    def _stopped(self) -> bool:
        return self._stop.is_set() or (self._cancel is not None and self._cancel.is_set())

    def _put(self, item: Any) -> bool:
        while not self._stopped():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, source: Iterator[Any]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                item = self._queue.get(timeout=POLL_S)
            except queue.Empty:
                if self._stopped() or not self._thread.is_alive() and self._queue.empty():
                    return
                continue
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
