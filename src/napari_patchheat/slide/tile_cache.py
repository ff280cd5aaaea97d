"""The edge-tile cache: decoded TIFF tiles that a read covered only in part, for the next read.

Regions of a run (blocks with their halo) rarely end on tile edges: the tiles at a block's right
and bottom edges are the first ones the next blocks need. One cache (``EDGE_TILES``) serves every
level of every open slide, bounded in bytes, least recently used dropped first. Keys are tuples
whose first item is the owner (a number per level reader). No Qt, no TensorFlow.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

EDGE_TILE_CACHE_BYTES = 96 * 2**20  # decoded tiles kept for the neighbouring read (all levels)


class EdgeTileCache:
    """Decoded tiles by key, at most ``max_bytes`` of them, least recently used dropped first.

    An empty tile (None) is remembered too, at no cost. Thread-safe: dask reads chunks on
    several threads.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.nbytes = max_bytes, 0
        self._tiles: OrderedDict[tuple, np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[bool, np.ndarray | None]:
        """(found, tile) for ``key``."""
        with self._lock:
            if key not in self._tiles:
                return False, None
            self._tiles.move_to_end(key)
            return True, self._tiles[key]

    def put(self, key: tuple, tile: np.ndarray | None) -> None:
        """Keep ``tile`` under ``key`` (not if larger than the whole cache), dropping the least
        recently used tiles until the cache fits ``max_bytes``."""
        size = 0 if tile is None else tile.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._tiles:
                return
            self._tiles[key] = tile
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, old = self._tiles.popitem(last=False)
                self.nbytes -= 0 if old is None else old.nbytes

    def through(self, key: tuple, decode: Callable[[], np.ndarray | None]) -> np.ndarray | None:
        """The tile under ``key``, ``decode()``-d and kept on a miss."""
        found, tile = self.get(key)
        if not found:
            tile = decode()
            self.put(key, tile)
        return tile

    def count(self, owner: object) -> int:
        """How many tiles of ``owner`` (the first item of their keys) the cache holds."""
        with self._lock:
            return sum(1 for key in self._tiles if key[0] == owner)

    def drop(self, owner: object) -> None:
        """Drop every tile of ``owner`` (the first item of their keys)."""
        with self._lock:
            for key in [k for k in self._tiles if k[0] == owner]:
                tile = self._tiles.pop(key)
                self.nbytes -= 0 if tile is None else tile.nbytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._tiles)


EDGE_TILES = EdgeTileCache(EDGE_TILE_CACHE_BYTES)
