"""The edge-tile cache: bounded in bytes, least recently used dropped first, by owner."""

from __future__ import annotations

import numpy as np

from napari_patchheat.slide.tile_cache import EdgeTileCache


def filled(max_bytes: int = 3000, tiles: int = 5) -> EdgeTileCache:
    """A cache of ``max_bytes`` after putting ``tiles`` 1000-byte tiles (key (0, k), value k)."""
    cache = EdgeTileCache(max_bytes=max_bytes)
    for k in range(tiles):
        cache.put((0, k), np.full(1000, k, np.uint8))
    return cache


def test_cache_is_bounded_and_drops_the_oldest():
    cache = filled()
    assert cache.nbytes == 3000 and len(cache) == 3
    assert [cache.get((0, k))[0] for k in range(5)] == [False, False, True, True, True]
    assert cache.get((0, 4))[1][0] == 4


def test_a_read_tile_is_kept_over_older_ones():
    cache = filled(tiles=3)
    cache.get((0, 0))  # now the most recently used
    cache.put((0, 3), np.zeros(1000, np.uint8))
    assert [cache.get((0, k))[0] for k in range(4)] == [True, False, True, True]


def test_an_empty_tile_is_remembered_at_no_cost():
    cache = filled()
    cache.put((0, 9), None)
    assert cache.get((0, 9)) == (True, None) and cache.nbytes == 3000


def test_a_tile_larger_than_the_cache_is_not_kept():
    cache = filled()
    cache.put((0, 8), np.zeros(4000, np.uint8))
    assert cache.get((0, 8)) == (False, None) and cache.nbytes == 3000


def test_count_and_drop_go_by_owner():
    cache = EdgeTileCache(max_bytes=10_000)
    for owner, k in [(1, 0), (1, 1), (2, 0)]:
        cache.put((owner, k), np.zeros(100, np.uint8))
    assert (cache.count(1), cache.count(2), cache.count(3)) == (2, 1, 0)
    cache.drop(1)
    assert (cache.count(1), cache.count(2), len(cache), cache.nbytes) == (0, 1, 1, 100)
