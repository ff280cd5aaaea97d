"""The run: every (tissue) patch of a slide level through a model, streamed, cancellable, resumable.

Given more than one core (:func:`run_threads`), one thread reads and decodes blocks and another
writes their patches into reused batch buffers, ahead of the model through bounded queues, so
the model's thread only runs the model; given one, they take turns with it. Decoding threads and
batch size not given are chosen from measured costs (pipeline.py). Memory stays bounded.
Results go to the resume cache (cache.py: a SQLite file of finished batches keyed by slide,
level, grid and model, never by a region of interest: a run inside one reuses and adds to the
whole slide's), so a cancelled or failed run resumes where it stopped. This module runs
TensorFlow, in the inference worker (runner.py); it imports TensorFlow inside the functions
that need it, so the napari process may import it for :class:`Progress`, the worker's
per-batch message.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cache import RunCache, open_run_cache, run_key
from .extract import (
    BatchBuffers,
    Block,
    PatchBatch,
    auto_backend,
    batch_blocks,
    read_blocks,
    write_batches,
)
from .focus import ViewFocus
from .grid import READ_BLOCK_PX, PatchGrid
from .heatmap import Heatmap, recorded_path
from .messages import first_line
from .models.augment import augment_model
from .models.keras_model import KERAS_SUFFIXES
from .models.patch_model import InsideMask
from .options import DEFAULT_BATCH_SIZE, SRGB, RunOptions
from .pipeline import THREADS_ENV as THREADS_ENV  # batch/tasks.py sets it for its workers
from .pipeline import (
    Costs,
    LevelReader,
    Prefetch,
    choose_batch_size,
    choose_decode_threads,
    run_threads,
)
from .slide.location import is_url, source_name

BATCH_BUFFERS = 4  # reused batches: the model's, two ready, one being written by the reading side
FOCUS_BUFFERS = 2  # following a view: the model's and one written, so a pan waits a batch or two
DEFAULT_PATCH_PX = 224  # patch size of a model that takes any size, when none is given
# a run this short keeps the starting batch size and decoding threads (nothing worth measuring)
TUNE_MIN_BATCHES = 4


class _ModelOutOfMemory(RuntimeError):
    """TensorFlow ran out of memory running the model on a single patch."""


class RunError(RuntimeError):
    """A run that failed; ``heatmap`` holds what was computed before the failure."""

    def __init__(self, message: str, heatmap: Heatmap | None = None):
        super().__init__(message)
        self.heatmap = heatmap


@dataclass(frozen=True)
class Progress:
    """One finished batch: grid ``indices`` (n, 2), ``values`` (n, classes); counts so far.

    Also the inference worker's per-batch message (runner.py): small and picklable.
    """

    indices: np.ndarray
    values: np.ndarray
    done: int
    total: int
    elapsed_s: float

    @property
    def patches_per_s(self) -> float:
        """Patches computed in this run per second of wall time."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_text(self) -> str:
        """Time left at the run's rate so far, 'm:ss' ('?' before the rate is known)."""
        rate = self.patches_per_s
        if rate <= 0:
            return "?"
        eta = round((self.total - self.done) / rate)
        return f"{eta // 60}:{eta % 60:02d}"


class HeatmapRun:
    """One run of ``model`` over a level of ``slide``: grid, tissue mask, cache and results.

    Build it (cheap: no patch is read), look at ``grid``, ``todo`` and ``heatmap``, then iterate
    :meth:`run`. ``heatmap.values`` starts with the cached patches when caching is on. When
    TensorFlow runs out of memory, the model gets each batch in halves (``model_batch_size``,
    down to one patch) from then on. ``block_px`` is the side of the level region (level
    pixels) one read covers.
    """

    def __init__(self, slide: Any, model: Any, options: RunOptions = RunOptions(), *,
                 block_px: int = READ_BLOCK_PX):
        from .slide import open_slide

        self.options = options
        self.slide = open_slide(slide) if isinstance(slide, (str, Path)) else slide
        self.model = _run_model(model, options)
        level, n_levels = options.level, len(self.slide.levels)
        if not 0 <= level < n_levels:
            raise ValueError(
                f"level={level} does not exist: this slide has levels 0..{n_levels - 1}.")
        self.level, self.backend, self.block_px = level, options.backend, block_px
        # options.batch_size None: DEFAULT_BATCH_SIZE until run() measures the model's cost
        self.batch_size = options.batch_size or DEFAULT_BATCH_SIZE
        self.model_batch_size = self.batch_size  # halves when TensorFlow runs out of memory
        self.decode_threads = options.decode_threads  # the run's, once it has started
        self.tuned_rest: Block | None = None  # the first block less what _tune computed
        self.image = self.slide.levels[level]
        self.reader = self._reader(level)
        self.downsample = tuple(self.slide.downsamples[level])
        self.grid = self._grid()
        # the test-time augmentation, dropout passes and sd channels the card and options ask
        # (normalised first: NormalisedModel rebuilds from the plain model's forward function)
        self.model = _normalised(self.model, self.slide, options)
        self.model = augment_model(self.model, options.tta, options.mc_samples, options.uncertainty)
        self.model.check_patch_size(self.grid.size)
        self.tissue_threshold = options.tissue_threshold
        self.tissue = self._tissue_fraction() if self.tissue_threshold > 0 else None
        self.roi = self._roi_mask() if options.roi is not None else None
        self.heatmap = self._open_heatmap()

    # --- set-up -------------------------------------------------------------------------------
    def _reader(self, level: int) -> Any:
        """The level's pixels as the model gets them, read without a dask graph where the file
        allows: as stored, or each region converted to sRGB as it is read (color="srgb")."""
        reader = self.slide.reader(level)
        if self.options.color != SRGB:
            return reader
        from .slide.color import srgb_reader

        return srgb_reader(reader, self.slide.srgb_transform())

    def _grid(self) -> PatchGrid:
        """The options' grid on this level; the size defaults to the model's input size."""
        o = self.options
        size = o.size if o.size is not None else (self.model.input_size or DEFAULT_PATCH_PX)
        return PatchGrid(self.image.shape[0], self.image.shape[1], size,
                         o.stride if o.stride is not None else size, o.rate, o.padding)

    def _tissue_fraction(self) -> np.ndarray:
        from .tissue import patch_tissue_fraction

        return patch_tissue_fraction(self.slide, self.grid, self.level)

    def _roi_mask(self) -> np.ndarray:
        """(rows, cols) bool: the patches inside the options' region of interest."""
        from .roi import roi_patch_mask

        o = self.options
        return roi_patch_mask(o.roi, self.grid, self.downsample, self.slide.shape[:2],
                              min_fraction=o.roi_min_fraction, centre=o.roi_centre)

    @property
    def key(self) -> str:
        """Cache key: slide identity, level, grid parameters, model fingerprint, the input's
        colour conversion; not the region (a region's run shares the whole slide's cache)."""
        from .slide.color import SRGB_INTENT

        color = f"sRGB, {SRGB_INTENT}" if self.options.color == SRGB else ""
        return run_key(self.slide.identity, self.level, self.grid, self.model.fingerprint, color)

    def _open_heatmap(self) -> Heatmap:
        """An empty (NaN) heatmap; with caching on, the cached patches filled in (inside the
        region of interest only: the cache is the whole slide's)."""
        heatmap = Heatmap.empty(
            self.grid, self.model.class_names,
            level=self.level, downsample=self.downsample, mpp=self.slide.mpp,
            model_name=self.model.name, model_fingerprint=self.model.fingerprint,
            slide_path=recorded_path(self.slide.path), slide_shape=tuple(self.slide.shape),
            extra={"tissue_threshold": self.tissue_threshold, "color": self.options.color,
                   "positive_threshold": getattr(self.model, "positive_threshold", None),
                   **self._roi_extra(), **_stain_extra(self.model),
                   **getattr(self.model, "heatmap_extra", {})},
        )
        self.cache: RunCache | None = None
        if self.options.use_cache:
            self.cache = open_run_cache(self.key, self.grid, len(self.model.class_names),
                                        self.options.cache_dir)
            heatmap.values = self.cache.values if self.roi is None else np.where(
                self.roi[..., None], self.cache.values, np.float32(np.nan))
        return heatmap

    def _roi_extra(self) -> dict[str, Any]:
        """What the heatmap records of the region: the rule and the patches inside."""
        if self.roi is None:
            return {}
        o = self.options
        return {"roi": {"patches": int(self.roi.sum()), "min_fraction": o.roi_min_fraction,
                        "centre": o.roi_centre}}

    @property
    def todo(self) -> np.ndarray:
        """(rows, cols) bool: patches this run will compute (tissue, inside the region of
        interest, not yet in the cache)."""
        todo = ~self.heatmap.computed
        if self.tissue is not None:
            todo &= self.tissue >= self.tissue_threshold
        if self.roi is not None:
            todo &= self.roi
        return todo

    # --- the run ------------------------------------------------------------------------------
    def run(self, cancel: threading.Event | None = None,
            focus: ViewFocus | None = None) -> Iterator[Progress]:
        """Compute the patches in :attr:`todo`, yielding after every batch.

        Stops within one batch once ``cancel`` is set; what is done stays in the heatmap and the
        cache. A failure raises :class:`RunError` holding the partial heatmap. ``focus``
        (focus.py) computes what is in its view first (or only); without it, in reading order.
        """
        todo = self.todo
        total = int(todo.sum()) if focus is None else focus.total(todo, self.grid)
        done, t0 = 0, time.perf_counter()
        if total == 0:
            return
        reader = LevelReader(self.reader, self.options.decode_threads)
        read = read_blocks(reader, self.grid, todo, self.block_px, self.backend, focus)
        blocks: Iterator[Block] = read
        buffers: BatchBuffers | None = None
        stages: list[Prefetch] = []
        try:
            if self._tunes(total):  # the first two batches alone, measured; the rest as chosen
                for probe, values in self._tune(read, reader):
                    done += len(probe)
                    yield Progress(probe.indices, values, done, total, time.perf_counter() - t0)
                    if cancel is not None and cancel.is_set():
                        return
                rest = self.tuned_rest
                blocks = read if rest is None else itertools.chain([rest], read)
            self.decode_threads = reader.workers
            batches, buffers, stages = self._stream(
                blocks, reader.shape[2], reader.dtype, cancel,
                BATCH_BUFFERS if focus is None else FOCUS_BUFFERS)
            for batch in batches:
                if cancel is not None and cancel.is_set():
                    break
                values = self._predict(batch)
                if buffers is not None and batch.buffer is not None:
                    # the model call has returned (values are numpy): the buffer may be refilled
                    buffers.give(batch.buffer)
                done += self.record(batch.indices, values)
                yield Progress(batch.indices, values, done, total, time.perf_counter() - t0)
        except Exception as exc:  # reading or the model failed: keep what is done
            raise RunError(_describe(exc, self.slide.path), self.heatmap) from exc
        finally:
            if buffers is not None:
                buffers.close()  # a reading side waiting for a buffer stops
            for stage in stages:  # their threads stop, and the reading with them
                stage.close()
            if not stages:
                read.close()  # a generator's close stops its reading too
            reader.close()
            if self.cache is not None:
                self.cache.flush()

    def _stream(self, blocks: Iterator[Block], channels: int, dtype: Any,
                cancel: threading.Event | None, ahead_batches: int = BATCH_BUFFERS
                ) -> tuple[Iterator[PatchBatch], BatchBuffers | None, list[Prefetch]]:
        """The batches of ``blocks``, their buffers (None for patches on TensorFlow's device:
        gathered there) and the threads that make them. Given more than one core, one thread
        reads and decodes blocks, another writes their patches into the buffers (the decoding
        of a block overlaps the writing of the one before) and the model's thread only runs
        the model; given one, all take turns. ``ahead_batches`` batches are in flight at most."""
        ahead = run_threads() > 1
        stages: list[Prefetch] = []
        if (self.backend if self.backend != "auto" else auto_backend()) != "numpy":
            batches = batch_blocks(blocks, self.batch_size)
            buffers = None
        else:
            buffers = BatchBuffers(ahead_batches, self.batch_size, (*self.grid.size, channels),
                                   dtype)
            if ahead:
                stages.append(Prefetch(blocks, 1, cancel))
                blocks = iter(stages[-1])
            batches = write_batches(blocks, buffers)
        if ahead:
            stages.append(Prefetch(batches, ahead_batches - 1, cancel))
            batches = iter(stages[-1])
        return batches, buffers, stages

    def _tunes(self, total: int) -> bool:
        """Whether :meth:`run` measures costs to choose what the options leave open."""
        o = self.options
        return (o.batch_size is None or o.decode_threads is None) and (
            total >= TUNE_MIN_BATCHES * self.batch_size)

    def _tune(self, read: Iterator[Block], reader: LevelReader
              ) -> Iterator[tuple[PatchBatch, np.ndarray]]:
        """Measure the CPU-seconds per patch of reading the first block and of the model on its
        second batch (the first may trace and compile; with one batch in the block, that one),
        then set the decoding threads and the batch size the options leave open (pipeline.py).
        Records and yields those batches with their values, one at a time (a cancel stops
        between them), then leaves the first block less them in :attr:`tuned_rest` (None
        where a followed view left nothing to read)."""
        self.tuned_rest, done = None, 0
        c0 = time.process_time()
        block = next(read, None)
        if block is None:
            return
        read_s = (time.process_time() - c0) / len(block)
        for start in range(0, min(2 * self.batch_size, len(block)), self.batch_size):
            probe = block.piece(start, min(start + self.batch_size, len(block)))
            c0 = time.process_time()
            values = self._predict(probe)
            model_s = (time.process_time() - c0) / self.model_batch_size
            done += self.record(probe.indices, values)
            yield probe, values
        costs = Costs(read_s, model_s)
        o = self.options
        if o.decode_threads is None:
            reader.set_workers(choose_decode_threads(costs, run_threads()))
        if o.batch_size is None and self.model_batch_size == self.batch_size:
            patch_bytes = int(np.prod(probe.patches.shape[1:])) * np.dtype(reader.dtype).itemsize
            self.batch_size = self.model_batch_size = choose_batch_size(
                costs, patch_bytes, self.batch_size)
        self.tuned_rest = dataclasses.replace(block, local=block.local[done:])

    def record(self, indices: np.ndarray, values: np.ndarray) -> int:
        """Put computed ``values`` of patches ``indices`` (n, 2) into the heatmap and the cache
        (flushed when the run ends); returns how many."""
        self.heatmap.update(indices, values)
        if self.cache is not None:
            self.cache.add(indices, values)
        return len(indices)

    def _predict(self, batch: PatchBatch) -> np.ndarray:
        """The model on one batch, in pieces of :attr:`model_batch_size`; when TensorFlow runs
        out of memory, that size halves (down to 1) and the piece is tried again."""
        import tensorflow as tf

        inside = self._inside(batch.indices)
        done: list[np.ndarray] = []
        start = 0
        while start < len(batch):
            size = self.model_batch_size
            piece = slice(start, start + size)
            patches = batch.patches[piece]
            if batch.buffer is not None and len(batch.buffer) == size:  # zero-padded already
                patches = batch.buffer
            try:
                done.append(self._predict_piece(
                    patches, min(size, len(batch) - start), size,
                    None if inside is None else (inside[0][piece], inside[1][piece])))
            except tf.errors.ResourceExhaustedError as exc:
                if size == 1:
                    raise _ModelOutOfMemory(str(exc)) from exc
                self.model_batch_size = size // 2
                continue
            start += size
        return done[0] if len(done) == 1 else np.concatenate(done)

    def _inside(self, indices: np.ndarray) -> InsideMask | None:
        """The in-level samples of patches ``indices`` (n, 2) for a model that counts only those
        (the built-ins); None when the model sees every sample or every sample is inside."""
        grid = self.grid
        if not getattr(self.model, "needs_inside_mask", False) or not any(
                grid.pad_before + grid.pad_after):
            return None
        rows, cols = grid.inside_samples(indices[:, 0], indices[:, 1])
        return None if rows.all() and cols.all() else (rows, cols)

    def _predict_piece(self, patches: Any, n: int, size: int,
                       inside: InsideMask | None) -> np.ndarray:
        """The model on the first ``n`` of ``patches``, zero-padded to ``size`` so that a
        compiled (XLA) model sees one shape and never recompiles for a short piece (the
        padding's inside masks are all True); a batch buffer comes padded. Patches on
        TensorFlow's device (the "tf" backend) stay there: only the predictions come back."""
        pad = size - len(patches)
        full = _pad_inside(inside, size - n)
        if isinstance(patches, np.ndarray):
            if pad:
                zeros = np.zeros((pad, *patches.shape[1:]), patches.dtype)
                patches = np.concatenate([patches, zeros])
            return self.model.predict(patches, *_mask_arg(full))[:n]
        import tensorflow as tf

        if pad:
            patches = tf.pad(patches, [[0, pad], [0, 0], [0, 0], [0, 0]])
        out = self.model.tf_predict(patches, *_mask_arg(full)).numpy()[:n]
        return self.model.validate_output(out, n, inside)

    def result(self) -> Heatmap:
        """A detached copy of the heatmap (its own values and extra)."""
        h = self.heatmap
        return dataclasses.replace(h, values=np.array(h.values), extra=dict(h.extra))


def _pad_inside(inside: InsideMask | None, rows: int) -> InsideMask | None:
    """``inside`` with ``rows`` patches of all-True masks appended (None stays None)."""
    if inside is None or rows == 0:
        return inside
    y, x = (np.concatenate([m, np.ones((rows, m.shape[1]), bool)]) for m in inside)
    return y, x


def _mask_arg(inside: InsideMask | None) -> tuple[InsideMask, ...]:
    """The arguments that pass ``inside`` to a model: none for None, so that models without
    inside masks (user models, duck-typed ones) are called with the patches alone."""
    return () if inside is None else (inside,)


def _run_model(model: Any, options: RunOptions) -> Any:
    """``model`` as a PatchModel: a name or path is loaded with the options' resize and
    precision; a model already loaded must be in the precision the options ask for."""
    if isinstance(model, (str, Path)):
        from .models import load_model

        return load_model(model, resize=options.resize, mixed_precision=options.mixed_precision)
    if options.mixed_precision and model.precision == "float32":
        if model.kind not in KERAS_SUFFIXES.values():  # built-ins, SavedModels
            raise ValueError(f"Model {model.name!r} ({model.kind}) runs in float32 only: "
                             "turn mixed precision off.")
        raise ValueError(
            f"Model {model.name!r} was loaded in float32: load it with "
            "load_model(..., mixed_precision=True), or pass its path."
        )
    return model


def _normalised(model: Any, slide: Any, options: RunOptions) -> Any:
    """``model`` fed patches stain-normalised as ``options`` ask (models/normalised.py)."""
    if options.stain_norm == "none":
        return model
    from .models.normalised import normalise_model

    return normalise_model(model, slide, options.stain_norm, options.stain_target)


def _stain_extra(model: Any) -> dict[str, Any]:
    """The heatmap's record of the stain normalisation: ``{"stain_norm": fit}``, or nothing."""
    fit = getattr(model, "stain_fit", None)
    return {} if fit is None else {"stain_norm": fit.to_json()}


def _describe(exc: BaseException, path: Any) -> str:
    name = source_name(path)
    if isinstance(exc, _ModelOutOfMemory):
        return (f"out of memory while running the model on {name} even one "
                "patch at a time: use smaller patches or a smaller model.")
    if isinstance(exc, MemoryError) or "ResourceExhausted" in type(exc).__name__:
        return (f"out of memory while running the model on {name}: "
                "lower the batch size or the patch size.")
    if isinstance(exc, (OSError, KeyError)) and not is_url(path) and not Path(str(path)).exists():
        return f"the slide {path} disappeared during the run: put it back and run again to resume."
    return f"the run on {name} failed: {first_line(exc)}"


def compute_heatmap(
    slide: Any,
    model: Any,
    *,
    on_progress: Callable[[Progress], Any] | None = None,
    cancel: threading.Event | None = None,
    options: RunOptions | None = None,
    block_px: int = READ_BLOCK_PX,
    **fields: Any,
) -> Heatmap:
    """Heatmap of ``model`` (a PatchModel, built-in name or path) over a level of ``slide``.

    ``slide`` is a Slide or a path. ``options`` (:class:`RunOptions`) and keyword ``fields`` of
    RunOptions (level, size, stride, rate, padding, ...; they override ``options``) say how.
    ``on_progress`` gets a :class:`Progress` per batch; ``cancel`` stops within a batch.
    The streaming form is ``HeatmapRun(slide, model, options).run(cancel)``.
    """
    options = dataclasses.replace(options or RunOptions(), **fields)
    run = HeatmapRun(slide, model, options, block_px=block_px)
    for progress in run.run(cancel):
        if on_progress is not None:
            on_progress(progress)
    return run.result()
