"""Readers as dask arrays, and the array that loads its pixels once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from napari_patchheat.slide.arrays import CHUNK_TARGET_PX, LoadedOnce, as_dask, dask_chunks


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
