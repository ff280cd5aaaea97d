"""Numpy-like readers as lazy dask arrays, the array that loads its pixels once, and the
region read from tiles that the tile readers share.

A reader is anything with ``shape`` (Y, X, C), ``dtype`` and ``__getitem__``: the TIFF tile
reader, a PNG decoded on first read, a small computed level. ``as_dask`` wraps one as a dask
array chunked on whole file tiles; ``read_tiled`` places a region's tiles (TIFF and DICOM
levels). No Qt, no TensorFlow.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dask.array as da
import numpy as np

from ..grid import Needed

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


def region_key(key: Any, shape: Sequence[int]
               ) -> tuple[tuple[int, int, int, int], tuple[Any, ...]]:
    """A numpy key of a (Y, X, C) array of ``shape`` as the region it touches, (y0, y1, x0, x1)
    in pixels, and the key that picks the result from that region read whole (all channels):
    slices (any step), integers, index arrays (dask passes fancy indexing through), Ellipsis."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (4 - len(key)) + key[i + 1 :]
    key = key + (slice(None),) * (3 - len(key))
    bounds: list[int] = []
    sub: list[Any] = []  # each axis' index into the bounding region read
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
    return (bounds[0], bounds[1], bounds[2], bounds[3]), (*sub, key[2])


# (layer, tile row, tile column, whole) -> the tile as stored (h, w, channels), or None (absent)
TileGetter = Callable[[int, int, int, bool], np.ndarray | None]


def read_tiled(region: tuple[int, int, int, int], shape: Sequence[int], dtype: np.dtype,
               tile: tuple[int, int], fill: int, get_tile: TileGetter, *, layers: int = 1,
               map_fn: Callable[..., Iterable[Any]] = map, needed: Needed | None = None
               ) -> np.ndarray:
    """Level pixels [y0, y1) x [x0, x1) (``region``), all channels, of a level of ``shape``
    stored in tiles of ``tile`` px, from the tiles the region touches and ``needed`` takes (the
    others' pixels are undefined). The channels are ``layers`` equal groups stored apart
    (planes, pages); ``get_tile(layer, ty, tx, whole)`` gives a tile, ``whole`` True when the
    region covers all of its extent in the level (a tile read in part is worth caching). Each
    tile is got and copied into its place by ``map_fn`` (an executor's ``map``: on its
    threads); an absent tile (None), or the part of its place a short tile leaves, is ``fill``.
    """
    y0, y1, x0, x1 = region
    out = np.empty((y1 - y0, x1 - x0, shape[2]), dtype)
    th, tw = tile
    channels = shape[2] // layers

    def place(job: tuple[int, int, int]) -> None:
        layer, ty, tx = job
        ty0, tx0 = ty * th, tx * tw
        ya, yb, xa, xb = max(y0, ty0), min(y1, ty0 + th), max(x0, tx0), min(x1, tx0 + tw)
        whole = (ya, xa, yb, xb) == (ty0, tx0, min(ty0 + th, shape[0]), min(tx0 + tw, shape[1]))
        pixels, c0 = get_tile(layer, ty, tx, whole), layer * channels
        target = out[ya - y0 : yb - y0, xa - x0 : xb - x0, c0 : c0 + channels]
        if pixels is None or pixels.shape[0] < yb - ty0 or pixels.shape[1] < xb - tx0:
            target[...] = fill  # an absent tile, or one short of its place
        if pixels is not None:
            part = pixels[ya - ty0 : yb - ty0, xa - tx0 : xb - tx0]
            target[: part.shape[0], : part.shape[1]] = part

    rows = range(y0 // th, (y1 - 1) // th + 1 if y1 > y0 else 0)
    cols = range(x0 // tw, (x1 - 1) // tw + 1 if x1 > x0 else 0)
    cells = [(ty, tx) for ty in rows for tx in cols
             if needed is None or needed(ty * th, (ty + 1) * th, tx * tw, (tx + 1) * tw)]
    for _ in map_fn(place, ((layer, ty, tx) for layer in range(layers) for ty, tx in cells)):
        pass
    return out


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
