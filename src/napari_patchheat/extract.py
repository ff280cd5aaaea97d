"""Patch extraction: ``tf.image.extract_patches`` on numpy input, and streamed over whole levels.

TensorFlow is imported inside the functions that need it, so importing this module is cheap and
never loads TensorFlow into a napari process by itself.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .focus import ViewFocus
from .grid import READ_BLOCK_PX, Needed, PatchGrid, read_region

BLOCK_PATCH_BYTES = 256 * 2**20  # "tf" backend: most bytes of patches one extraction returns
Backend = Literal["auto", "tf", "numpy"]
POLL_S = 0.05  # how often a thread waiting on a queue looks at its stop and cancel events


def _check_images(images: Any) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim not in (3, 4) or arr.shape[-1] < 1 or 0 in arr.shape:
        raise ValueError(
            f"images of shape {arr.shape} is not an image: pass (height, width, channels) or "
            "(batch, height, width, channels) with no empty axis."
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(
            f"images of dtype {arr.dtype} is not numeric: TensorFlow extracts patches of "
            "integer, float and complex images; convert it, e.g. with .astype(np.uint8)."
        )
    return arr


def extract_patches(
    images: Any,
    sizes: int | Sequence[int],
    strides: int | Sequence[int],
    rates: int | Sequence[int] = 1,
    padding: str = "VALID",
) -> np.ndarray:
    """``tf.image.extract_patches`` with numpy in and out, through TensorFlow.

    ``images`` is (H, W, C) or (N, H, W, C); ``sizes``, ``strides`` and ``rates`` are ints,
    (y, x) pairs or TF's ``[1, y, x, 1]``. Returns (rows, cols, size_y * size_x * C), with a
    leading N for 4-D input: each patch flattened row by row, channels innermost.
    """
    arr = _check_images(images)
    grid = PatchGrid(arr.shape[-3], arr.shape[-2], sizes, strides, rates, padding)
    batch = arr if arr.ndim == 4 else arr[None]
    out = _tf_extract(batch, grid).numpy()
    return out if arr.ndim == 4 else out[0]


def _tf_extract(batch: np.ndarray, grid: PatchGrid) -> Any:
    """``tf.image.extract_patches`` of (N, H, W, C) with ``grid``'s parameters: a tf.Tensor."""
    import tensorflow as tf  # heavy, and never wanted in the napari process

    return tf.image.extract_patches(
        batch,
        sizes=[1, *grid.size, 1],
        strides=[1, *grid.stride, 1],
        rates=[1, *grid.rate, 1],
        padding=grid.padding,
    )


def valid_view(region: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """VALID patches of a (H, W, C) region with ``grid``'s size, stride and rate, as a strided
    view of the region (no copy): (rows, cols, size_y, size_x, C)."""
    ey, ex = grid.effective_size
    win = np.lib.stride_tricks.sliding_window_view(region, (ey, ex), axis=(0, 1))
    win = win[:: grid.stride[0], :: grid.stride[1], :, :: grid.rate[0], :: grid.rate[1]]
    return win.transpose(0, 1, 3, 4, 2)


def numpy_extract_valid(region: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """VALID patches of a (H, W, C) region, by NumPy: :func:`valid_view` copied once.

    Returns (rows, cols, size_y, size_x, C). Equal to TF's VALID extraction of the region,
    reshaped (the tests hold it to that).
    """
    return np.ascontiguousarray(valid_view(region, grid))


@functools.cache
def auto_backend() -> Backend:
    """The streaming backend: "tf" where TensorFlow sees a GPU, else "numpy".

    On CPU, TensorFlow's extract_patches kernel moves uint8 patches 3.3-27x slower than NumPy's
    strided copy (benchmarks/bench_extract.py); both give identical patches (tests/test_extract.py).
    """
    import tensorflow as tf

    return "tf" if tf.config.list_physical_devices("GPU") else "numpy"


def block_patches(region: np.ndarray, grid: PatchGrid, backend: Backend) -> Any:
    """All VALID patches of one block's region as (rows, cols, size_y, size_x, C): a strided
    numpy view for "numpy"; for "tf" a ``tf.Tensor`` that ``tf.image.extract_patches`` made on
    TensorFlow's device (the GPU when there is one), so the patches never come back to the host."""
    if backend == "numpy":
        return valid_view(region, grid)
    if backend == "tf":
        import tensorflow as tf

        valid = PatchGrid(region.shape[0], region.shape[1], grid.size, grid.stride, grid.rate)
        flat = _tf_extract(region[None], valid)[0]
        return tf.reshape(flat, (*valid.shape, *grid.size, region.shape[2]))
    raise ValueError(f"backend={backend!r} is unknown: use 'auto', 'tf' or 'numpy'.")


def _take(patches: Any, rows: np.ndarray, cols: np.ndarray) -> Any:
    """Patches (rows[i], cols[i]) of a block's patches: a numpy copy, or a gather on TF's device."""
    if isinstance(patches, np.ndarray):
        return patches[rows, cols]  # fancy indexing: copies these patches
    import tensorflow as tf

    return tf.gather_nd(patches, np.stack([rows, cols], axis=1))


# EIGEN_MAX_ALIGN_BYTES (64 with AVX-512); 128 is the widest any build uses
ALIGN_BYTES = 128


def aligned_empty(shape: Sequence[int], dtype: Any = np.uint8) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts on an :data:`ALIGN_BYTES` boundary:
    :meth:`PatchModel.predict` hands a batch in one to TensorFlow in place, without a copy."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGN_BYTES, np.uint8)
    start = -raw.ctypes.data % ALIGN_BYTES
    return raw[start:start + nbytes].view(dtype).reshape(tuple(shape))


@dataclass(frozen=True)
class PatchBatch:
    """Patches and their grid indices: ``indices`` (n, 2) int64 (row, col), ``patches``
    (n, size_y, size_x, C) of the level's dtype: numpy, or a ``tf.Tensor`` on TensorFlow's device
    from the "tf" backend (``np.asarray`` brings it to the host). ``buffer``: for batches of
    :func:`write_batches`, the reused buffer whose first n patches ``patches`` views (its other
    patches zero), to give back to its :class:`BatchBuffers` once the model is done with it."""

    indices: np.ndarray
    patches: Any
    buffer: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class Block:
    """One block read and cut, its patches not yet copied: ``patches`` (rows, cols, size_y,
    size_x, C) is a strided numpy view of the block's region, or TF's output on its device;
    ``local`` (n, 2) the block-local (row, col) of the patches to take; ``origin`` the grid
    (row, col) of its first patch."""

    patches: Any
    local: np.ndarray
    origin: tuple[int, int]

    def __len__(self) -> int:
        return len(self.local)

    def piece(self, start: int, stop: int) -> PatchBatch:
        """Patches ``local[start:stop]``: a fresh copy (numpy) or a gather on TF's device."""
        lr, lc = self.local[start:stop, 0], self.local[start:stop, 1]
        indices = np.stack([lr + self.origin[0], lc + self.origin[1]], axis=1)
        return PatchBatch(indices.astype(np.int64), _take(self.patches, lr, lc))

    def pieces(self, chunk: int | None = None) -> Iterator[PatchBatch]:
        """The block's patches to take, in pieces of at most ``chunk`` (default: all)."""
        step = chunk or len(self)
        for start in range(0, len(self), step):
            yield self.piece(start, start + step)


def read_blocks(
    level: Any,
    grid: PatchGrid,
    mask: np.ndarray | None = None,
    block_px: int = READ_BLOCK_PX,
    backend: Backend = "auto",
    focus: ViewFocus | None = None,
) -> Generator[Block, None, None]:
    """A whole level's patches, one :class:`Block` at a time (one region read, one extraction).

    ``level`` is Y X C (numpy, dask or a slide's tile reader) of the grid's height and width.
    ``mask`` (rows, cols) bool keeps only its True patches: a block reads only the bounding box
    of its kept patches, and blocks without any are never read. Memory: one block's region,
    and for the "tf" backend its output, capped at ``BLOCK_PATCH_BYTES`` by smaller blocks.
    ``focus`` (focus.py) reads what is in view first; without it, blocks come in reading order.
    """
    if tuple(level.shape[:2]) != (grid.height, grid.width) or len(level.shape) != 3:
        raise ValueError(
            f"level of shape {tuple(level.shape)} does not match the grid's "
            f"{grid.height} x {grid.width} image: pass a (height, width, channels) array."
        )
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != grid.shape:
            raise ValueError(f"mask of shape {mask.shape} must be the grid's shape {grid.shape}.")
    if backend == "auto":
        backend = auto_backend()
    order = read_order(level, grid, block_px, backend)
    for rows, cols, keep in (_masked(order, mask) if focus is None
                             else focus.order(grid, order, mask)):
        if keep is not None:
            if not keep.any():
                continue
            # read only the bounding box of the patches kept in this block
            kr, kc = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
            keep = keep[kr[0] : kr[-1] + 1, kc[0] : kc[-1] + 1]
            rows = range(rows.start + kr[0], rows.start + kr[-1] + 1)
            cols = range(cols.start + kc[0], cols.start + kc[-1] + 1)
        needed = None if keep is None else _overlaps_kept(grid, keep, rows, cols)
        region = read_region(level, *grid.block_region(rows, cols), needed=needed)
        patches = block_patches(region, grid, backend)
        local = np.argwhere(keep if keep is not None else np.ones(patches.shape[:2], bool))
        yield Block(patches, local, (rows.start, cols.start))


def _masked(order: list[tuple[range, range]], mask: np.ndarray | None
            ) -> Iterator[tuple[range, range, np.ndarray | None]]:
    """``order``'s blocks in reading order, each with its part of ``mask`` (None: all)."""
    for rows, cols in order:
        yield rows, cols, None if mask is None else mask[rows.start:rows.stop,
                                                         cols.start:cols.stop]


def _overlaps_kept(grid: PatchGrid, keep: np.ndarray, rows: range, cols: range) -> Needed:
    """Whether level pixels [y0, y1) x [x0, x1) overlap a patch ``keep`` (the block's patches
    from grid row and column (rows.start, cols.start)) keeps: a tile reader decodes only
    those tiles of a block's region (its other pixels are never cut into patches)."""
    def needed(y0: int, y1: int, x0: int, x1: int) -> bool:
        rr, cc = grid.patches_in(y0, x0, y1, x1)
        return bool(keep[max(rr.start - rows.start, 0):max(rr.stop - rows.start, 0),
                         max(cc.start - cols.start, 0):max(cc.stop - cols.start, 0)].any())

    return needed


def read_order(level: Any, grid: PatchGrid, block_px: int = READ_BLOCK_PX,
               backend: Backend = "auto") -> list[tuple[range, range]]:
    """The blocks of patch rows and columns :func:`read_blocks` reads, in its order: regions
    of at most ``block_px`` level pixels a side, for the "tf" backend also at most
    ``BLOCK_PATCH_BYTES`` of patches of ``level`` (Y X C)."""
    if backend == "auto":
        backend = auto_backend()
    max_patches = None
    if backend == "tf":  # TF materialises every patch of a block: bound the block by that
        patch_bytes = grid.depth_per_channel * level.shape[2] * np.dtype(level.dtype).itemsize
        max_patches = max(1, BLOCK_PATCH_BYTES // patch_bytes)
    return grid.blocks(block_px, max_patches)


def iter_blocks(
    level: Any,
    grid: PatchGrid,
    mask: np.ndarray | None = None,
    block_px: int = READ_BLOCK_PX,
    backend: Backend = "auto",
    chunk: int | None = None,
    focus: ViewFocus | None = None,
) -> Iterator[PatchBatch]:
    """The patches of :func:`read_blocks`, block after block, in pieces of at most ``chunk``
    (default: a block's all), each a fresh copy. Memory: one block's region and one piece."""
    for block in read_blocks(level, grid, mask, block_px, backend, focus):
        yield from block.pieces(chunk)


def batch_blocks(blocks: Iterable[Block], batch_size: int) -> Iterator[PatchBatch]:
    """The patches of ``blocks`` in batches of ``batch_size`` (the last may be smaller).

    The copying happens here, in the caller's thread: a run reads blocks ahead in another
    thread and batches them in its own, which would otherwise wait for the reader.
    """
    pending: list[PatchBatch] = []
    count = 0
    for block in blocks:
        start = 0
        while start < len(block):  # take what fills the batch, straight from the block
            take = min(batch_size - count, len(block) - start)
            pending.append(block.piece(start, start + take))
            count += take
            start += take
            if count == batch_size:
                yield _concat(pending)
                pending, count = [], 0
    if pending:
        yield _concat(pending)


class BatchBuffers:
    """``count`` reused batch buffers of ``size`` patches of ``shape`` (size_y, size_x, C).

    The reading side takes a free one (:meth:`take`), writes a batch into it and hands it on;
    the model's side gives it back (:meth:`give`) only after the model call that read it has
    returned. A buffer is therefore never refilled while a model reads it, even a model whose
    tensor shares the buffer's memory (TensorFlow may wrap an aligned numpy array without a
    copy). Memory: ``count`` batches, allocated once.
    """

    def __init__(self, count: int, size: int, shape: tuple[int, ...], dtype: Any):
        self.size = size
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(count):
            buffer = aligned_empty((size, *shape), dtype)  # TensorFlow reads it in place
            buffer.fill(0)
            self._free.put(buffer)
        self._closed = threading.Event()

    def take(self) -> np.ndarray | None:
        """A free buffer, waiting for one to be given back; None once :meth:`close` is called."""
        while not self._closed.is_set():
            try:
                return self._free.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return None

    def give(self, buffer: np.ndarray) -> None:
        """Give back a buffer of :meth:`take` whose batch the model has finished with."""
        self._free.put(buffer)

    def close(self) -> None:
        """Stop a reading side waiting in :meth:`take` (the run ended)."""
        self._closed.set()


def write_batches(blocks: Iterable[Block], buffers: BatchBuffers) -> Iterator[PatchBatch]:
    """The patches of numpy ``blocks`` in batches of ``buffers.size`` (the last may be smaller),
    each patch written once from its block's region into a buffer of ``buffers``: no other copy,
    no fresh memory. Run it on the reading side; give each batch's ``buffer`` back after the
    model call on it (or the next :meth:`BatchBuffers.take` waits). Stops once the buffers close.
    """
    buffer: np.ndarray | None = None
    count, parts = 0, list[np.ndarray]()
    for block in blocks:
        for start, stop in _row_runs(block.local):
            while start < stop:
                if buffer is None:
                    buffer, count, parts = buffers.take(), 0, []
                    if buffer is None:
                        return
                take = min(stop - start, buffers.size - count)
                row, col = block.local[start]
                # consecutive patches of one row of the block: one strided copy, no temporary
                np.copyto(buffer[count : count + take], block.patches[row, col : col + take])
                parts.append(block.local[start : start + take] + block.origin)
                count, start = count + take, start + take
                if count == buffers.size:
                    yield PatchBatch(np.concatenate(parts), buffer[:count], buffer)
                    buffer = None
    if buffer is not None and count:
        buffer[count:] = 0  # a short last batch is padded with zeros, as the model will see it
        yield PatchBatch(np.concatenate(parts), buffer[:count], buffer)


def _row_runs(local: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) ranges of ``local`` (n, 2) block-local (row, col), row-major, over which
    the row stays and the column goes up by one."""
    breaks = np.flatnonzero((np.diff(local[:, 0]) != 0) | (np.diff(local[:, 1]) != 1)) + 1
    bounds = [0, *breaks.tolist(), len(local)]
    return list(zip(bounds[:-1], bounds[1:]))


def iter_patch_batches(
    level: Any,
    grid: PatchGrid,
    batch_size: int,
    mask: np.ndarray | None = None,
    block_px: int = READ_BLOCK_PX,
    backend: Backend = "auto",
) -> Iterator[PatchBatch]:
    """Patches of a whole level in batches of ``batch_size`` (the last may be smaller).

    Same result as extracting from the whole level at once (see :func:`read_blocks`), in
    bounded memory: one block plus one batch. With the "tf" backend the patches are tensors on
    TensorFlow's device: feed them to ``PatchModel.tf_predict`` without a trip to the host.
    """
    if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} must be a whole number of at least 1.")
    return batch_blocks(read_blocks(level, grid, mask, block_px, backend), batch_size)


def _concat(parts: list[PatchBatch]) -> PatchBatch:
    indices = np.concatenate([p.indices for p in parts])
    if not isinstance(parts[0].patches, np.ndarray):
        import tensorflow as tf

        return PatchBatch(indices, tf.concat([p.patches for p in parts], axis=0))
    if len(parts) == 1:
        return PatchBatch(indices, np.ascontiguousarray(parts[0].patches))
    return PatchBatch(indices, np.concatenate([p.patches for p in parts]))
