"""Numpy-like readers as lazy dask arrays, and the array that loads its pixels once.

A reader is anything with ``shape`` (Y, X, C), ``dtype`` and ``__getitem__``: the TIFF tile
reader, a PNG decoded on first read, a small computed level. ``as_dask`` wraps one as a dask
array chunked on whole file tiles. No Qt, no TensorFlow.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np

CHUNK_TARGET_PX = 1024  # dask chunks: whole file tiles, grouped to about this many px a side


class LoadedOnce:
    """A numpy-like array whose pixels ``load()`` gives whole on the first read and are kept
    (until ``close()``); thread-safe, so concurrent first reads load once."""

    def __init__(self, load: Callable[[], np.ndarray], shape: Sequence[int],
                 dtype: np.dtype | str) -> None:
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self.tile = (CHUNK_TARGET_PX, CHUNK_TARGET_PX)  # no file tiles: chunks of the target
        self._load = load
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()

    def __getitem__(self, key: Any) -> np.ndarray:
        with self._lock:
            if self._pixels is None:
                self._pixels = self._load()
        return self._pixels[key]

    def close(self) -> None:
        """Forget the pixels (a later read loads them again)."""
        self._pixels = None


def bounding_region(key: Any, shape: Sequence[int]
                    ) -> tuple[tuple[int, int, int, int], tuple[Any, ...]]:
    """The level pixels [y0, y1) x [x0, x1) that the numpy index ``key`` of an array of
    ``shape`` (Y, X, C) touches, and the index that takes ``key``'s result from that region
    (slices with steps, integers, index arrays: dask passes fancy indexing through)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (4 - len(key)) + key[i + 1 :]
    key = key + (slice(None),) * (3 - len(key))
    bounds: list[int] = []
    sub: list[Any] = []  # each axis' index into the bounding region
    for k, n in zip(key[:2], shape[:2]):
        if isinstance(k, slice):
            r = range(*k.indices(n))
            lo, hi = (min(r), max(r) + 1) if len(r) else (0, 0)
            sub.append(slice(r.start - lo, (r.stop - lo) if r.stop >= lo else None, r.step))
        elif np.ndim(k) == 0:
            lo = range(n)[int(k)]
            hi = lo + 1
            sub.append(0)
        else:
            idx = np.arange(n)[np.asarray(k)]
            lo, hi = (int(idx.min()), int(idx.max()) + 1) if idx.size else (0, 0)
            sub.append(idx - lo)
        bounds += [lo, hi]
    y0, y1, x0, x1 = bounds
    return (y0, y1, x0, x1), (*sub, key[2])


def dask_chunks(tile: tuple[int, int], shape: Sequence[int]) -> tuple[int, int, int]:
    """Whole tiles grouped to ~CHUNK_TARGET_PX a side; wide strips grouped to that area."""
    th, tw = tile
    fx = max(1, round(CHUNK_TARGET_PX / tw))
    if tw <= CHUNK_TARGET_PX:
        fy = max(1, round(CHUNK_TARGET_PX / th))
    else:  # NDPI or striped: a chunk decodes whole rows anyway, so keep chunks ~1 Mpx
        fy = max(1, round(CHUNK_TARGET_PX**2 / (tw * th)))
    return min(th * fy, shape[0]), min(tw * fx, shape[1]), shape[2]


def as_dask(reader: Any, name: str, chunks: Any = None) -> da.Array:
    """``reader`` as a dask array read through its ``__getitem__`` (no lock, no copy), chunked
    on ``chunks`` or else on its ``tile`` (:func:`dask_chunks`); ``name`` tells it apart."""
    token = hashlib.sha1(f"{name}|{id(reader)}".encode()).hexdigest()[:16]
    return da.from_array(
        reader,
        chunks=dask_chunks(reader.tile, reader.shape) if chunks is None else chunks,
        asarray=False,
        lock=False,
        inline_array=True,
        meta=np.empty((0, 0, 0), reader.dtype),
        name=f"slide-{token}",
    )
