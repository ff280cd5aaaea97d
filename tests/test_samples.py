"""The sample slides: scikit-image's IHC image as a file and the generated pyramidal slide."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_patchheat import samples
from napari_patchheat.slide import open_slide


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory):
    """A 3000 x 5000 (non-square) generated slide in a cache of its own."""
    return samples.sample_slide_path((3000, 5000), cache_dir=tmp_path_factory.mktemp("cache"))


def test_default_is_a_big_slide():
    assert samples.SAMPLE_SIZE_PX >= 30_000


def test_sample_slide_layout(small_sample):
    assert small_sample.name == "patchheat-sample-3000x5000-v1.ome.tif"
    with tifffile.TiffFile(small_sample) as tif:
        assert tif.is_ome and tif.series[0].is_pyramidal
        page = tif.series[0].keyframe
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        assert page.compression == 7  # JPEG
    with open_slide(small_sample) as s:
        assert s.vendor == "ome" and s.mpp == (samples.SAMPLE_MPP_UM, samples.SAMPLE_MPP_UM)
        shapes = [(3000, 5000), (1500, 2500), (750, 1250), (375, 625)]
        assert [lv.shape[:2] for lv in s.levels] == shapes
        assert s.stored_level_count == 4  # stops once the longer side fits SAMPLE_TOP_PX


def test_sample_slide_looks_like_tissue_on_glass(small_sample):
    with open_slide(small_sample) as s:
        top = s.levels[-1].compute().astype(np.int16)
        level0 = s.levels[0][1000:2000, 2000:3000].compute()
    glass = (np.abs(top - np.array(samples.BACKGROUND_RGB)).max(axis=2) <= 3).mean()
    tissue = (np.abs(top - np.array(samples.BACKGROUND_RGB)).sum(axis=2) > 40).mean()
    assert 0.5 < glass < 0.75
    assert 0.2 < tissue < 0.45
    ihc_mean = np.array([177.3, 159.8, 144.0])  # skimage's IHC image: brown-ish
    tissue_px = top[np.abs(top - np.array(samples.BACKGROUND_RGB)).sum(axis=2) > 40]
    assert np.abs(tissue_px.mean(axis=0) - ihc_mean).max() < 25
    assert level0.std() > 5  # texture, not flat colour


def test_sample_levels_are_coarsenings_of_each_other(small_sample):
    with open_slide(small_sample) as s:
        fine = s.levels[1].compute().astype(np.float64)
        coarse = s.levels[2].compute().astype(np.float64)
    means = fine.reshape(750, 2, 1250, 2, 3).mean(axis=(1, 3))  # level 1 -> level 2
    assert np.abs(means - coarse).mean() < 3  # JPEG noise only
    assert np.abs(means - coarse).mean(axis=(0, 1)).max() < 3


def test_sample_is_cached_and_reused(tmp_path):
    first = samples.sample_slide_path(1200, cache_dir=tmp_path)
    stamp = first.stat().st_mtime_ns
    again = samples.sample_slide_path(1200, cache_dir=tmp_path)
    assert again == first and again.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind


def test_sample_is_deterministic(tmp_path):
    a = samples.write_sample_slide(tmp_path / "a.ome.tif", 2000, workers=1)
    b = samples.write_sample_slide(tmp_path / "b.ome.tif", 2000, workers=3)
    with open_slide(a) as sa, open_slide(b) as sb:
        for la, lb in zip(sa.levels, sb.levels):
            np.testing.assert_array_equal(la.compute(), lb.compute())


def test_generation_memory_does_not_grow_with_size(tmp_path):
    """Bounded memory: a 4x bigger slide (16x the pixels) needs no more memory to write."""
    peaks = []
    for size in (4096, 16384):
        tracemalloc.start()
        samples.write_sample_slide(tmp_path / f"{size}.ome.tif", size)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.3 + 8 * 2**20, [p / 2**20 for p in peaks]
    assert peaks[1] < 200 * 2**20  # MiB; the 16k slide's pixels are 768 MiB


def test_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match=r"size_px=0 must hold whole numbers of at least 1"):
        samples.sample_slide_path(0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="multiple of 16"):
        samples.write_sample_slide(tmp_path / "x.ome.tif", 100, tile_px=100)


def test_ihc_sample_file_is_the_ihc_image():
    from skimage.data import immunohistochemistry

    with open_slide(samples.ihc_sample_path()) as s:
        np.testing.assert_array_equal(s.levels[0].compute(), immunohistochemistry())


def test_sample_slide_goes_to_the_cache_root(tmp_path, monkeypatch):
    from napari_patchheat.cache import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert samples.sample_slide_path(512) == tmp_path / "patchheat-sample-512x512-v1.ome.tif"
