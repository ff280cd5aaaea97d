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
