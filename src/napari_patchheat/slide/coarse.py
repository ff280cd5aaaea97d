"""The computed levels of a huge TIFF, built once into a file: one pass, progress, cancel.

A slide's computed levels (:func:`~napari_patchheat.slide.pyramid.rgb_pyramid`: 2x2 means of
the last stored level, down to ``PYRAMID_TOP_PX``) are computed lazily, so its first zoomed-out
view or thumbnail decodes the whole last stored level. Where that level has more than
``COARSE_BUILD_MIN_PX`` pixels (and tiles in the file: a sparse TIFF is cheap already),
:func:`build_coarse_levels` computes them all in one pass over it, block by block (each stored
tile decoded once; memory: a block per thread and a block row per computed level), into a
tiled TIFF in ``coarse/`` of the cache folder, keyed by the slide file's path, size and time
or a remote slide's URL and ``Slide.source_key`` (a new build of a changed file removes the old
one); ``open_slide`` reads them from there once
it exists (:func:`use_built_levels`). Values equal
the lazily computed ones bit for bit. No Qt, no TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..cache import coarse_dir
from ..files import atomic_write
from ..grid import as_numpy
from .arrays import as_dask
from .errors import SlideError
from .location import SlideURL, same_file_key
from .pyramid import Slide, halve_block, local_source_key
from .tiff_level import TiffLevel

COARSE_BUILD_MIN_PX = 2**28  # last stored level px above which computed levels are built once
COARSE_TILE_PX = 256  # tiles of the built levels
COARSE_MAX_THREADS = 4  # blocks read and halved at once
COARSE_BLOCK_AREA_PX = 2**22  # stored-level px read per block (whole tiles, 2 tile rows of
# the first built level high: each block row completes one of its tile rows)
COARSE_BUILD_NICE = 10  # the build's threads run this much nicer than the viewer (Linux)
COARSE_FORMAT = "napari-patchheat coarse levels 1"  # the file's ImageDescription
_COMPRESSION, _PREDICTOR = 50000, 2  # Zstd, horizontal differencing: lossless


class BuildCancelled(Exception):
    """The build was cancelled; nothing was written."""


def coarse_file(path: Path | SlideURL, folder: Path | None = None,
                source_key: str | None = None) -> Path:
    """Where the built computed levels of the slide at ``path`` go: a file in ``folder``
    (default ``coarse/`` of the cache folder) named ``<path's hash>-<content's hash>``; the
    content is ``source_key`` (``Slide.source_key``: a remote object's ETag, size and time),
    by default the local file's size and modification time."""
    key = local_source_key(path) if source_key is None else source_key
    version = hashlib.sha1(key.encode()).hexdigest()[:8]
    return (folder or coarse_dir()) / f"{_path_hash(path)}-{version}.tif"


def _path_hash(path: Path | SlideURL) -> str:
    return hashlib.sha1(same_file_key(path).encode()).hexdigest()[:16]


def unbuilt_warning(path: Path | SlideURL, exc: BaseException) -> str:
    """The warning for zoomed-out views of the slide file ``path`` that could not be built
    (``exc``: why); the lazily computed levels serve instead."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return (f"the zoomed-out views of {path.name} could not be built ({reason}); they are "
            "computed from the whole image when needed, which can take minutes.")


def needs_build(slide: Slide) -> bool:
    """True when ``slide``'s computed levels would decode more than ``COARSE_BUILD_MIN_PX``
    stored pixels, from tiles the file holds, and are not read from a built file yet."""
    if slide.coarse_path is not None or len(slide.levels) == slide.stored_level_count:
        return False
    readers = slide.tile_readers
    if len(readers) != slide.stored_level_count:  # PNG, JPEG: decoded whole anyway
        return False
    last = readers[-1]
    return last.shape[0] * last.shape[1] > COARSE_BUILD_MIN_PX and not last.has_absent_tiles


def use_built_levels(slide: Slide, folder: Path | None = None) -> Slide:
    """``slide`` with its computed levels read from their built file, where one exists and
    matches (shapes, format); else ``slide`` as it is. Returns ``slide``."""
    if not needs_build(slide):
        return slide
    path = coarse_file(slide.path, folder, slide.source_key)
    if not path.is_file():
        return slide
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception:  # unreadable: the slide's own lazy levels still give the right pixels
        return slide
    try:
        pages: list[Any] = list(tif.pages)
        shapes = [tuple(lv.shape) for lv in slide.levels[slide.stored_level_count:]]
        if pages[0].description != COARSE_FORMAT or [p.shape for p in pages] != shapes:
            raise SlideError(f"{path} does not hold this slide's levels.", path)
        readers = [TiffLevel(_Series(p), path, f"built level {k + slide.stored_level_count}")
                   for k, p in enumerate(pages)]
    except Exception:
        tif.close()
        return slide
    slide.use_computed_levels([as_dask(r, f"{r.where} of {path.name}") for r in readers],
                              readers, path, tif.close)
    return slide


class _Series:
    """One page as the series :class:`TiffLevel` takes."""

    def __init__(self, page: Any) -> None:
        self.pages, self.axes, self.shape = [page], "YXS", page.shape


def build_coarse_levels(slide: Slide, *, folder: Path | None = None,
                        progress: Callable[[int, int], None] | None = None,
                        cancel: threading.Event | None = None) -> Path:
    """Compute ``slide``'s computed levels in one pass over its last stored level and write
    them (a tiled, lossless TIFF, one page per level) to :func:`coarse_file`, atomically.

    ``progress(done, total)`` (stored-level rows) is called after each strip; a set ``cancel``
    stops the build between blocks (:class:`BuildCancelled`, nothing left behind). Memory: a
    block per thread and a block row per level. Raises OSError where the folder cannot be
    written. Its threads run at a lower priority than the caller's process (Linux).
    """
    target = coarse_file(slide.path, folder, slide.source_key)
    target.parent.mkdir(parents=True, exist_ok=True)
    source = slide.reader(slide.stored_level_count - 1)
    shapes = [lv.shape[:2] for lv in slide.levels[slide.stored_level_count:]]
    height, width = source.shape[:2]
    th, tw = slide.tile_shapes[slide.stored_level_count - 1]
    step = 2 ** len(shapes)  # a block this many px from the origin halves alone, every level
    cols = width if tw >= width else _multiple(math.lcm(tw, step),
                                               COARSE_BLOCK_AREA_PX // (2 * COARSE_TILE_PX))
    rows = _multiple(math.lcm(th, step), min(2 * COARSE_TILE_PX, COARSE_BLOCK_AREA_PX // cols))
    # the first level's tiles go straight into the file; the smaller levels' wait in spools
    spools = [_Spool(*shapes[0])] + [_Spool(h, w, target.parent) for h, w in shapes[1:]]

    def levels_of(x0: int, y0: int, y1: int) -> list[np.ndarray]:
        if cancel is not None and cancel.is_set():
            raise BuildCancelled(f"Building the zoomed-out views of {slide.path} was cancelled.")
        return _halvings(_read(source, y0, y1, x0, min(x0 + cols, width)), len(shapes))

    def first_level(pool: ThreadPoolExecutor) -> Iterator[bytes]:
        """The pass: the first level's encoded tiles, in order, as their rows complete."""
        for y0 in range(0, height, rows):
            y1 = min(y0 + rows, height)
            strips = [np.empty((min(rows >> k + 1, h - (y0 >> k + 1)), w, 3), np.uint8)
                      for k, (h, w) in enumerate(shapes)]
            for i in range(0, width, cols * threads):  # a block per thread at a time
                starts = range(i, min(i + cols * threads, width), cols)
                done = pool.map(levels_of, starts, repeat(y0), repeat(y1))
                for x0, pieces in zip(starts, done):
                    for k, (strip, piece) in enumerate(zip(strips, pieces)):
                        strip[:, x0 >> k + 1: (x0 >> k + 1) + piece.shape[1]] = piece
            for spool, strip in zip(spools, strips):
                spool.add(strip, pool.map)
            if progress is not None:
                progress(y1, height)
            yield from spools[0].take()

    threads = min(os.cpu_count() or 1, COARSE_MAX_THREADS)
    with ThreadPoolExecutor(threads, initializer=_lower_priority) as pool:
        try:
            with atomic_write(target) as tmp:
                _write(tmp, first_level(pool), spools)
        finally:
            for spool in spools:
                spool.close()
    for old in target.parent.glob(f"{_path_hash(slide.path)}-*.tif"):  # the file as it was
        if old != target:
            with contextlib.suppress(OSError):  # in use elsewhere (Windows): left for `clear`
                old.unlink()
    return target


def build_and_use_levels(slide: Slide, *, progress: Callable[[int, int], None] | None = None,
                         cancel: threading.Event | None = None) -> Slide:
    """:func:`build_coarse_levels`, then :func:`use_built_levels`: ``slide`` reading its
    computed levels from the file just built (the same errors as the build). Returns ``slide``."""
    build_coarse_levels(slide, progress=progress, cancel=cancel)
    return use_built_levels(slide)


def _halvings(block: np.ndarray, n: int) -> list[np.ndarray]:
    """``block`` halved ``n`` times (2x2 means, odd last row and column dropped each time)."""
    out = []
    for _ in range(n):
        block = halve_block(block[: block.shape[0] // 2 * 2, : block.shape[1] // 2 * 2])
        out.append(block)
    return out


def _lower_priority() -> None:
    """Lower this thread's scheduling priority (Linux), so the viewer's thread comes first."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COARSE_BUILD_NICE)


def _multiple(unit: int, at_least: int) -> int:
    """The smallest multiple of ``unit`` that is at least ``at_least``."""
    return unit * max(1, -(-at_least // unit))


def _read(source: Any, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """RGB uint8 pixels [y0, y1) x [x0, x1) of the stored level (a block of whole tiles)."""
    if isinstance(source, TiffLevel):
        return source.read_tiles((slice(y0, y1), slice(x0, x1)))
    return as_numpy(source[y0:y1, x0:x1], scheduler="synchronous")


class _Spool:
    """One computed level's tiles, encoded as their rows complete: kept until :meth:`take`n,
    or (with a ``folder``) in an unnamed temporary file there, gone with the process whatever
    happens, until the level is written (:meth:`encoded`)."""

    def __init__(self, height: int, width: int, folder: Path | None = None) -> None:
        self.shape = (height, width, 3)
        self.pending: list[np.ndarray] = []  # rows not yet a whole tile row
        self.file: IO[bytes] | None = (
            None if folder is None else tempfile.TemporaryFile(dir=folder, prefix=".coarse-"))
        self.tiles: list[tuple[int, int]] = []  # (offset, length) in the file, row-major
        self.ready: list[bytes] = []  # without a file: tiles encoded, not yet taken
        self.rows_done = 0

    def add(self, strip: np.ndarray, map_fn: Callable[..., Iterator[bytes]] = map) -> None:
        """Append the level's next rows; encode every tile row they complete (the last, short
        one once the level's last row came), its tiles through ``map_fn``."""
        self.pending.append(strip)
        count = sum(len(rows) for rows in self.pending)
        last = self.rows_done + count >= self.shape[0]
        while count >= COARSE_TILE_PX or (last and count):
            rows = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
            self._encode_row(rows[:COARSE_TILE_PX], map_fn)
            self.rows_done += min(count, COARSE_TILE_PX)
            self.pending = [rows[COARSE_TILE_PX:]] if count > COARSE_TILE_PX else []
            count = max(count - COARSE_TILE_PX, 0)

    def _encode_row(self, row: np.ndarray, map_fn: Callable[..., Iterator[bytes]]) -> None:
        t = COARSE_TILE_PX
        for data in map_fn(_encode_tile, (row[:, x: x + t] for x in range(0, self.shape[1], t))):
            if self.file is None:
                self.ready.append(data)
            else:
                self.tiles.append((self.file.tell(), len(data)))
                self.file.write(data)

    def take(self) -> list[bytes]:
        """The tiles encoded since the last take (a spool without a file)."""
        ready, self.ready = self.ready, []
        return ready

    def encoded(self) -> Iterator[bytes]:
        """The level's encoded tiles, in order (a spool with a file)."""
        assert self.file is not None
        for offset, length in self.tiles:
            self.file.seek(offset)
            yield self.file.read(length)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _encode_tile(part: np.ndarray) -> bytes:
    """A tile (zero-padded to COARSE_TILE_PX a side) as the built file stores it."""
    import imagecodecs

    tile = np.zeros((COARSE_TILE_PX, COARSE_TILE_PX, 3), np.uint8)
    tile[: part.shape[0], : part.shape[1]] = part
    return bytes(imagecodecs.zstd_encode(imagecodecs.delta_encode(tile, axis=-2).tobytes()))


def _write(path: Path, first: Iterator[bytes], spools: list[_Spool]) -> None:
    """A tiled TIFF at ``path``, one page per level, largest first: the first level's tiles
    from ``first`` (as the pass makes them), then each smaller level's from its spool."""
    import tifffile

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for k, spool in enumerate(spools):
            tif.write(first if k == 0 else spool.encoded(), shape=spool.shape, dtype=np.uint8,
                      tile=(COARSE_TILE_PX, COARSE_TILE_PX), photometric="rgb",
                      compression=_COMPRESSION, predictor=_PREDICTOR, metadata=None,
                      description=COARSE_FORMAT if k == 0 else None,
                      subfiletype=1 if k else 0)
            if k == 0:
                for _ in first:  # tifffile stops at the level's last tile: finish the pass
                    raise AssertionError("the first level has more tiles than its shape")
