"""Readers as dask arrays, the array that loads its pixels once, and regions read from tiles."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from napari_patchheat.slide.arrays import (
    CHUNK_TARGET_PX,
    LoadedOnce,
    TileGetter,
    as_dask,
    dask_chunks,
    read_tiled,
)


def counted(pixels: np.ndarray) -> tuple[LoadedOnce, list[int]]:
    """A LoadedOnce of ``pixels`` and the list its loads append to."""
    loads: list[int] = []

    def load() -> np.ndarray:
        loads.append(1)
        return pixels

    return LoadedOnce(load, pixels.shape, pixels.dtype), loads


def test_loaded_once_loads_on_the_first_read_only():
    pixels = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
    array, loads = counted(pixels)
    assert not loads and array.shape == (4, 5, 3) and array.dtype == np.uint8
    np.testing.assert_array_equal(array[1:3, 2], pixels[1:3, 2])
    np.testing.assert_array_equal(array[...], pixels)
    assert len(loads) == 1


def test_loaded_once_loads_once_under_concurrent_first_reads():
    array, loads = counted(np.zeros((8, 8, 3), np.uint8))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: array[k], range(8)))
    assert len(loads) == 1


def test_loaded_once_loads_again_after_close():
    array, loads = counted(np.zeros((2, 2, 1), np.uint16))
    array[0]
    array.close()
    array[0]
    assert len(loads) == 2


def test_as_dask_reads_through_the_reader_in_chunks_of_the_target():
    pixels = np.random.default_rng(0).integers(0, 256, (2500, 1100, 3), dtype=np.uint8)
    array, loads = counted(pixels)
    level = as_dask(array, "test")
    assert level.chunksize == (CHUNK_TARGET_PX, CHUNK_TARGET_PX, 3) and not loads
    np.testing.assert_array_equal(level[1000:2100, 5:1100].compute(), pixels[1000:2100, 5:1100])


def test_dask_chunks_group_whole_tiles_and_wide_strips():
    assert dask_chunks((256, 256), (5000, 5000, 3)) == (1024, 1024, 3)
    assert dask_chunks((240, 240), (5000, 5000, 3)) == (960, 960, 3)
    assert dask_chunks((512, 512), (300, 5000, 3)) == (300, 1024, 3)  # no larger than the level
    assert dask_chunks((8, 4000), (9000, 4000, 3)) == (264, 4000, 3)  # strips: ~1 Mpx


TILE = (8, 16)
ABSENT, SHORT = (1, 1), (2, 0)  # (tile row, tile column): a tile not stored, one cut short


def tiles_of(image: np.ndarray, layers: int) -> tuple[TileGetter, list[tuple[int, int, int, bool]]]:
    """A tile getter over ``image`` cut in TILE tiles and ``layers`` channel groups, with tile
    ABSENT missing and tile SHORT stored as its top-left 5 x 9 px; and the list of its calls."""
    calls: list[tuple[int, int, int, bool]] = []
    th, tw = TILE
    channels = image.shape[2] // layers

    def get(layer: int, ty: int, tx: int, whole: bool) -> np.ndarray | None:
        calls.append((layer, ty, tx, whole))
        if (ty, tx) == ABSENT:
            return None
        tile = image[ty * th:(ty + 1) * th, tx * tw:(tx + 1) * tw,
                     layer * channels:(layer + 1) * channels]
        return tile[:5, :9] if (ty, tx) == SHORT else tile

    return get, calls


def test_read_tiled_places_each_layers_tiles_and_fills_absent_and_short_ones():
    image = np.random.default_rng(0).integers(0, 250, (37, 53, 4), dtype=np.uint8)
    expected = image.copy()
    expected[8:16, 16:32] = 255  # ABSENT
    short = expected[16:24, 0:16]
    short[5:], short[:, 9:] = 255, 255  # SHORT past its 5 x 9 px
    region = (3, 30, 5, 50)
    assert expected[3:30, 5:50].std() > 50  # the reference varies
    with ThreadPoolExecutor(3) as pool:
        for map_fn in (map, pool.map):
            get, calls = tiles_of(image, layers=2)
            out = read_tiled(region, image.shape, np.dtype(np.uint8), TILE, 255, get, layers=2,
                             map_fn=map_fn)
            np.testing.assert_array_equal(out, expected[3:30, 5:50])
            # 4 x 4 tiles per layer; whole: inside the region (rows 1-2, columns 1-2)
            assert sorted(calls) == [(layer, ty, tx, ty in (1, 2) and tx in (1, 2))
                                     for layer in (0, 1) for ty in range(4) for tx in range(4)]


def test_read_tiled_counts_a_tile_cut_by_the_level_edge_whole_and_reads_only_needed_tiles():
    image = np.random.default_rng(1).integers(0, 250, (37, 53, 3), dtype=np.uint8)
    get, calls = tiles_of(image, layers=1)
    out = read_tiled((30, 37, 40, 53), image.shape, np.dtype(np.uint8), TILE, 255, get)
    np.testing.assert_array_equal(out, image[30:37, 40:53])
    assert sorted(calls) == [(0, 3, 2, False), (0, 3, 3, False), (0, 4, 2, False),
                             (0, 4, 3, True)]  # rows 32-37 x columns 48-53: the level's end
    get, calls = tiles_of(image, layers=1)
    out = read_tiled((0, 37, 0, 53), image.shape, np.dtype(np.uint8), TILE, 255, get,
                     needed=lambda y0, y1, x0, x1: x0 >= 32)
    np.testing.assert_array_equal(out[:, 32:], image[:, 32:])
    assert sorted(calls) == [(0, ty, tx, True) for ty in range(5) for tx in (2, 3)]
