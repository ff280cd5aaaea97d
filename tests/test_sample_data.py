"""The sample data: scikit-image's IHC image and the generated pyramidal slide."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_patchheat import _sample_data as sd
from napari_patchheat.slide import open_slide


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory):
    """A 3000 x 5000 (non-square) generated slide in a cache of its own."""
    return sd.sample_slide_path((3000, 5000), cache_dir=tmp_path_factory.mktemp("cache"))


def test_default_is_a_big_slide():
    assert sd.SAMPLE_SIZE_PX >= 30_000


def test_sample_slide_layout(small_sample):
    assert small_sample.name == "patchheat-sample-3000x5000-v1.ome.tif"
    with tifffile.TiffFile(small_sample) as tif:
        assert tif.is_ome and tif.series[0].is_pyramidal
        page = tif.series[0].keyframe
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        assert page.compression == 7  # JPEG
    with open_slide(small_sample) as s:
        assert s.vendor == "ome" and s.mpp == (sd.SAMPLE_MPP_UM, sd.SAMPLE_MPP_UM)
        shapes = [(3000, 5000), (1500, 2500), (750, 1250), (375, 625)]
        assert [lv.shape[:2] for lv in s.levels] == shapes
        assert s.stored_level_count == 4  # stops once the longer side fits SAMPLE_TOP_PX


def test_sample_slide_looks_like_tissue_on_glass(small_sample):
    with open_slide(small_sample) as s:
        top = s.levels[-1].compute().astype(np.int16)
        level0 = s.levels[0][1000:2000, 2000:3000].compute()
    glass = (np.abs(top - np.array(sd.BACKGROUND_RGB)).max(axis=2) <= 3).mean()
    tissue = (np.abs(top - np.array(sd.BACKGROUND_RGB)).sum(axis=2) > 40).mean()
    assert 0.5 < glass < 0.75
    assert 0.2 < tissue < 0.45
    ihc_mean = np.array([177.3, 159.8, 144.0])  # skimage's IHC image: brown-ish
    tissue_px = top[np.abs(top - np.array(sd.BACKGROUND_RGB)).sum(axis=2) > 40]
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
    first = sd.sample_slide_path(1200, cache_dir=tmp_path)
    stamp = first.stat().st_mtime_ns
    again = sd.sample_slide_path(1200, cache_dir=tmp_path)
    assert again == first and again.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind


def test_sample_is_deterministic(tmp_path):
    a = sd.write_sample_slide(tmp_path / "a.ome.tif", 2000, workers=1)
    b = sd.write_sample_slide(tmp_path / "b.ome.tif", 2000, workers=3)
    with open_slide(a) as sa, open_slide(b) as sb:
        for la, lb in zip(sa.levels, sb.levels):
            np.testing.assert_array_equal(la.compute(), lb.compute())


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(sd.CACHE_ENV, str(tmp_path / "mine"))
    assert sd.default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(sd.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sd.default_cache_dir() == tmp_path / "xdg" / "napari-patchheat"


def test_generation_memory_does_not_grow_with_size(tmp_path):
    """Bounded memory: a 4x bigger slide (16x the pixels) needs no more memory to write."""
    peaks = []
    for size in (4096, 16384):
        tracemalloc.start()
        sd.write_sample_slide(tmp_path / f"{size}.ome.tif", size)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.3 + 8 * 2**20, [p / 2**20 for p in peaks]
    assert peaks[1] < 200 * 2**20  # MiB; the 16k slide's pixels are 768 MiB


def test_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="positive"):
        sd.sample_slide_path(0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="multiple of 16"):
        sd.write_sample_slide(tmp_path / "x.ome.tif", 100, tile_px=100)


def test_ihc_sample():
    from skimage.data import immunohistochemistry

    [(data, kwargs, kind)] = sd.make_ihc_sample()
    assert kind == "image" and kwargs["rgb"] and data.shape == (512, 512, 3)
    with open_slide(sd.ihc_sample_path()) as s:
        np.testing.assert_array_equal(s.levels[0].compute(), immunohistochemistry())


def test_slide_sample_layer(tmp_path, monkeypatch):
    monkeypatch.setenv(sd.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(sd, "SAMPLE_SIZE_PX", 2048)
    [(data, kwargs, kind)] = sd.make_slide_sample()
    assert kind == "image" and kwargs["multiscale"] and kwargs["rgb"]
    assert [d.shape for d in data] == [(2048, 2048, 3), (1024, 1024, 3)]
    assert kwargs["metadata"]["mpp"] == (sd.SAMPLE_MPP_UM,) * 2
    assert (tmp_path / "patchheat-sample-2048x2048-v1.ome.tif").is_file()
