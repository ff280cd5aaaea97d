"""The run: every (tissue) patch of a slide level through a model, streamed, cancellable, resumable.

Reading and decoding run ahead of inference in a worker thread through a bounded queue, so the
model does not wait on I/O and memory stays bounded. Results go to an on-disk cache (a memory-
mapped ``.npy`` keyed by slide, level, grid and model), so a cancelled or failed run resumes
where it stopped. This module runs TensorFlow: the napari process never imports it (runner.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .extract import READ_BLOCK_PX, Backend, PatchBatch, batch_blocks, read_blocks
from .grid import PatchGrid
from .heatmap import Heatmap
from .models.keras_model import KERAS_SUFFIXES

PREFETCH_BLOCKS = 2  # blocks read and cut ahead of the model (batches are copied in its thread)
READ_WORKERS = max(1, (os.cpu_count() or 2) - 1)  # decoding threads: leave a core to the model
DEFAULT_BATCH_SIZE = 32


class _LevelReader:
    """A level whose regions decode on at most ``workers`` threads, so reading ahead does not
    take every core from the model: a slide's tile reader (``Slide.reader``) decodes its tiles
    on a thread pool, a dask level computes on as many threads, numpy levels pass through."""

    def __init__(self, level: Any, workers: int | None = None):
        workers = READ_WORKERS if workers is None else workers
        self.level, self.shape, self.dtype, self.workers = level, level.shape, level.dtype, workers
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def __getitem__(self, key: Any) -> np.ndarray:
        if hasattr(self.level, "read_tiles"):
            return self.level.read_tiles(key, self._pool.map if self._pool else map)
        part = self.level[key]
        if hasattr(part, "compute"):
            if self._pool is None:
                return part.compute(scheduler="synchronous")
            return part.compute(scheduler="threads", num_workers=self.workers)
        return np.asarray(part)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class _ModelOutOfMemory(RuntimeError):
    """TensorFlow ran out of memory running the model on a single patch."""


class RunError(RuntimeError):
    """A run that failed; ``heatmap`` holds what was computed before the failure."""

    def __init__(self, message: str, heatmap: Heatmap | None = None):
        super().__init__(message)
        self.heatmap = heatmap


@dataclass(frozen=True)
class Progress:
    """One finished batch: grid ``indices`` (n, 2), ``values`` (n, classes); counts so far."""

    indices: np.ndarray
    values: np.ndarray
    done: int
    total: int
    elapsed_s: float

    @property
    def patches_per_s(self) -> float:
        """Patches computed in this run per second of wall time."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


def default_cache_dir() -> Path:
    """Where run results are cached: ``runs/`` in the project's cache folder
    ($PATCHHEAT_CACHE_DIR, else $XDG_CACHE_HOME/napari-patchheat)."""
    from ._sample_data import default_cache_dir as cache_root

    return cache_root() / "runs"


class HeatmapRun:
    """One run of ``model`` over a level of ``slide``: grid, tissue mask, cache and results.

    Build it (cheap: no patch is read), look at ``grid``, ``todo`` and ``heatmap``, then iterate
    :meth:`run`. ``heatmap.values`` is the cache (a memory map) when caching is on. When
    TensorFlow runs out of memory, the model gets each batch in halves (``model_batch_size``,
    down to one patch) from then on.
    """

    def __init__(
        self,
        slide: Any,
        model: Any,
        *,
        level: int = 0,
        size: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        rate: int | tuple[int, int] = 1,
        padding: str = "VALID",
        batch_size: int = DEFAULT_BATCH_SIZE,
        tissue_threshold: float = 0.0,
        resize: bool = False,
        mixed_precision: bool = False,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        backend: Backend = "auto",
        block_px: int = READ_BLOCK_PX,
    ):
        from .models import load_model
        from .slide import open_slide

        self.slide = open_slide(slide) if isinstance(slide, (str, Path)) else slide
        if isinstance(model, (str, Path)):
            model = load_model(model, resize=resize, mixed_precision=mixed_precision)
        elif mixed_precision and model.precision == "float32":
            if model.kind not in KERAS_SUFFIXES.values():  # built-ins, SavedModels
                raise ValueError(f"Model {model.name!r} ({model.kind}) runs in float32 only: "
                                 "turn mixed precision off.")
            raise ValueError(
                f"Model {model.name!r} was loaded in float32: load it with "
                "load_model(..., mixed_precision=True), or pass its path."
            )
        self.model = model
        if not 0 <= level < len(self.slide.levels):
            raise ValueError(
                f"level={level} does not exist: this slide has levels 0..{len(self.slide.levels) - 1}."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be a whole number of at least 1.")
        if not 0.0 <= tissue_threshold <= 1.0:
            raise ValueError(
                f"tissue_threshold={tissue_threshold} must be a fraction from 0 (keep all) to 1."
            )
        size = size if size is not None else (self.model.input_size or 224)
        self.level, self.batch_size, self.backend, self.block_px = level, batch_size, backend, block_px
        self.model_batch_size = batch_size  # halves when TensorFlow runs out of memory
        self.image = self.slide.levels[level]
        self.reader = self.slide.reader(level)  # the same pixels, read without a dask graph
        self.downsample = tuple(self.slide.downsamples[level])
        self.grid = PatchGrid(self.image.shape[0], self.image.shape[1], size,
                              stride if stride is not None else size, rate, padding)
        self.model.check_patch_size(self.grid.size)
        self.tissue_threshold = tissue_threshold
        self.tissue = self._tissue_fraction() if tissue_threshold > 0 else None
        self.heatmap = self._open_heatmap(cache_dir, use_cache)

    # --- set-up -------------------------------------------------------------------------------
    def _tissue_fraction(self) -> np.ndarray:
        from .tissue import patch_tissue_fraction

        return patch_tissue_fraction(self.slide, self.grid, self.level)

    @property
    def key(self) -> str:
        """Cache key: slide identity, level, grid parameters, model fingerprint."""
        g = self.grid
        parts = [self.slide.identity, self.level, g.height, g.width, g.size, g.stride, g.rate,
                 g.padding, self.model.fingerprint]
        return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:20]

    def _open_heatmap(self, cache_dir: str | Path | None, use_cache: bool) -> Heatmap:
        common = dict(
            level=self.level, downsample=self.downsample, mpp=self.slide.mpp,
            model_name=self.model.name, model_fingerprint=self.model.fingerprint,
            slide_path=str(self.slide.path), slide_shape=tuple(self.slide.shape),
            extra={"tissue_threshold": self.tissue_threshold},
        )
        heatmap = Heatmap.empty(self.grid, self.model.class_names, **common)
        if not use_cache:
            return heatmap
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.key}.npy"
        self.cache_path = path
        if path.exists():
            try:
                values = np.lib.format.open_memmap(path, mode="r+")
                if values.shape == heatmap.values.shape and values.dtype == np.float32:
                    heatmap.values = values
                    return heatmap
            except (ValueError, OSError):
                pass  # unreadable cache: start afresh below
        # a fresh cache under a name of its own, published without replacing one that another
        # run (another viewer, the CLI) published meanwhile: both then share that one
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        values = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                           shape=heatmap.values.shape)
        values[:] = np.nan
        values.flush()
        del values
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        heatmap.values = np.lib.format.open_memmap(path, mode="r+")
        return heatmap

    @property
    def todo(self) -> np.ndarray:
        """(rows, cols) bool: patches this run will compute (tissue, not yet in the cache)."""
        todo = ~self.heatmap.computed
        if self.tissue is not None:
            todo &= self.tissue >= self.tissue_threshold
        return todo

    # --- the run ------------------------------------------------------------------------------
    def run(self, cancel: threading.Event | None = None) -> Iterator[Progress]:
        """Compute the patches in :attr:`todo`, yielding after every batch.

        Stops within one batch once ``cancel`` is set; what is done stays in the heatmap and the
        cache. A failure raises :class:`RunError` holding the partial heatmap.
        """
        todo = self.todo
        total, done, t0 = int(todo.sum()), 0, time.perf_counter()
        if total == 0:
            return
        reader = _LevelReader(self.reader)
        blocks = _Prefetch(read_blocks(reader, self.grid, todo, self.block_px, self.backend),
                           PREFETCH_BLOCKS, cancel)
        try:
            for batch in batch_blocks(blocks, self.batch_size):
                if cancel is not None and cancel.is_set():
                    break
                values = self._predict(batch)
                self.heatmap.update(batch.indices, values)
                done += len(batch)
                yield Progress(batch.indices, values, done, total, time.perf_counter() - t0)
        except Exception as exc:  # reading or the model failed: keep what is done
            raise RunError(_describe(exc, self.slide.path), self.heatmap) from exc
        finally:
            blocks.close()
            reader.close()
            flush = getattr(self.heatmap.values, "flush", None)
            if flush is not None:
                flush()

    def _predict(self, batch: PatchBatch) -> np.ndarray:
        """The model on one batch, in pieces of :attr:`model_batch_size`; when TensorFlow runs
        out of memory, that size halves (down to 1) and the piece is tried again."""
        import tensorflow as tf

        done: list[np.ndarray] = []
        start = 0
        while start < len(batch):
            size = self.model_batch_size
            try:
                done.append(self._predict_piece(batch.patches[start : start + size], size))
            except tf.errors.ResourceExhaustedError as exc:
                if size == 1:
                    raise _ModelOutOfMemory(str(exc)) from exc
                self.model_batch_size = size // 2
                continue
            start += size
        return done[0] if len(done) == 1 else np.concatenate(done)

    def _predict_piece(self, patches: Any, size: int) -> np.ndarray:
        """The model on up to ``size`` patches, zero-padded to ``size`` so that a compiled (XLA)
        model sees one shape and never recompiles for a short piece. Patches on TensorFlow's
        device (the "tf" backend) stay there: only the predictions come back."""
        n, pad = len(patches), size - len(patches)
        if isinstance(patches, np.ndarray):
            if pad:
                patches = np.concatenate([patches, np.zeros((pad, *patches.shape[1:]), patches.dtype)])
            return self.model.predict(patches)[:n]
        import tensorflow as tf

        if pad:
            patches = tf.pad(patches, [[0, pad], [0, 0], [0, 0], [0, 0]])
        return self.model.validate_output(self.model.tf_predict(patches).numpy()[:n], n)

    def result(self) -> Heatmap:
        """A detached copy of the heatmap (values in memory, not the cache's memory map)."""
        h = self.heatmap
        return dataclasses.replace(h, values=np.array(h.values), extra=dict(h.extra))


def _describe(exc: BaseException, path: Any) -> str:
    if isinstance(exc, _ModelOutOfMemory):
        return (f"out of memory while running the model on {Path(str(path)).name} even one "
                "patch at a time: use smaller patches or a smaller model.")
    if isinstance(exc, MemoryError) or "ResourceExhausted" in type(exc).__name__:
        return (f"out of memory while running the model on {Path(str(path)).name}: "
                "lower the batch size or the patch size.")
    if isinstance(exc, (OSError, KeyError)) and not Path(str(path)).exists():
        return f"the slide {path} disappeared during the run: put it back and run again to resume."
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"the run on {Path(str(path)).name} failed: {text}"


class _Prefetch:
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
                self._queue.put(item, timeout=0.05)
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
                item = self._queue.get(timeout=0.05)
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


def compute_heatmap(
    slide: Any,
    model: Any,
    *,
    on_progress: Callable[[Progress], Any] | None = None,
    cancel: threading.Event | None = None,
    **options: Any,
) -> Heatmap:
    """Heatmap of ``model`` (a PatchModel, built-in name or path) over a level of ``slide``.

    ``slide`` is a Slide or a path. ``options`` are :class:`HeatmapRun`'s: level, size (default
    the model's input size), stride (default the size), rate, padding, batch_size,
    tissue_threshold (patches with less tissue stay NaN), resize, mixed_precision, cache_dir,
    use_cache, backend ("tf" extracts with TensorFlow on its device and keeps the patches there;
    "auto" picks it when TensorFlow sees a GPU).
    ``on_progress`` gets a :class:`Progress` per batch; ``cancel`` stops within a batch.
    The streaming form is ``HeatmapRun(slide, model, **options).run(cancel)``.
    """
    run = HeatmapRun(slide, model, **options)
    for progress in run.run(cancel):
        if on_progress is not None:
            on_progress(progress)
    return run.result()
