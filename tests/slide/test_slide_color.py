"""Colour: the ICC profile a TIFF carries, and its levels converted to sRGB equal to Pillow's
ImageCms applied on its own; lazily, from many threads, with one-sentence errors."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import dask.array as da
import numpy as np
import pytest
from PIL import Image, ImageCms

from napari_patchheat.slide import SlideError, open_slide
from napari_patchheat.slide.color import as_srgb, icc_description, srgb_reader, srgb_transform


def imagecms_srgb(rgb: np.ndarray, profile: bytes) -> np.ndarray:
    """The reference: ImageCms's one-call conversion of ``rgb`` from ``profile`` to sRGB."""
    out = ImageCms.profileToProfile(Image.fromarray(rgb), io.BytesIO(profile),
                                    ImageCms.createProfile("sRGB"),
                                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    return np.asarray(out)


def test_the_real_files_carry_no_profile(svs_path, ndpi_path):
    for path in (svs_path, ndpi_path):
        with open_slide(path) as slide:
            assert slide.icc_profile is None


def test_the_tiff_backend_reads_the_profile(icc_slide, wide_rgb_profile):
    with open_slide(icc_slide) as slide:
        assert slide.icc_profile == wide_rgb_profile
        assert icc_description(slide.icc_profile) == (
            "patchheat test RGB (Adobe RGB primaries, gamma 2.2)")
    assert icc_description(None) is None


def test_srgb_levels_equal_imagecms_applied_on_its_own(icc_slide, wide_rgb_profile):
    with open_slide(icc_slide) as slide:
        converted = slide.srgb_levels()
        assert [c.shape for c in converted] == [lv.shape for lv in slide.levels]
        assert [c.chunks for c in converted] == [lv.chunks for lv in slide.levels]
        for k, (y0, y1, x0, x1) in enumerate([(300, 1337, 211, 1200), (0, 750, 0, 600)]):
            stored = slide.levels[k][y0:y1, x0:x1].compute()
            reference = imagecms_srgb(stored, wide_rgb_profile)
            assert (reference != stored).any(axis=2).mean() > 0.3  # not sRGB: pixels change
            assert np.abs(reference.astype(int) - stored).max() > 20
            np.testing.assert_array_equal(converted[k][y0:y1, x0:x1].compute(), reference)


def test_srgb_is_lazy_and_thread_safe(icc_slide, wide_rgb_profile):
    transform = srgb_transform(wide_rgb_profile)
    assert srgb_transform(wide_rgb_profile) is transform  # built once per profile
    blocks: list[tuple[int, ...]] = []
    lock = threading.Lock()

    def counted(rgb: np.ndarray) -> np.ndarray:
        with lock:
            blocks.append(rgb.shape)
        return transform(rgb)

    counted.__dask_tokenize__ = lambda: "counted"  # type: ignore[attr-defined]
    counted.token = "counted"  # type: ignore[attr-defined]
    with open_slide(icc_slide) as slide:
        level = slide.levels[0]
        assert level.numblocks[:2] == (2, 2)
        lazy = as_srgb(level, counted)
        corner = lazy[:100, :100].compute()
        assert blocks == [(1024, 1024, 3)]  # one chunk converted, not the level
        np.testing.assert_array_equal(corner, imagecms_srgb(level[:100, :100].compute(),
                                                            wide_rgb_profile))
        stored = level.compute()
        many = as_srgb(level.rechunk((100, 100, 3)), transform)
        threaded = many.compute(scheduler="threads", num_workers=8)
        np.testing.assert_array_equal(threaded, imagecms_srgb(stored, wide_rgb_profile))


def test_the_run_reader_converts_each_region_read(icc_slide, wide_rgb_profile):
    with open_slide(icc_slide) as slide:
        tiles = slide.reader(0)
        assert hasattr(tiles, "read_tiles")  # the file's tile reader, not a dask level
        reader = srgb_reader(tiles, slide.srgb_transform())
        assert reader.shape == tiles.shape and reader.dtype == np.uint8
        region = (slice(100, 900), slice(250, 1111))
        reference = imagecms_srgb(slide.levels[0][region].compute(), wide_rgb_profile)
        np.testing.assert_array_equal(reader[region], reference)
        with ThreadPoolExecutor(4) as pool:  # bands of CONVERT_ROWS converted on its threads
            np.testing.assert_array_equal(reader.read_tiles(region, pool.map), reference)
        np.testing.assert_array_equal(reader.read_tiles((*region, 1)), reference[..., 1])
        dask_level = srgb_reader(slide.levels[1], slide.srgb_transform())
        assert isinstance(dask_level, da.Array)
        np.testing.assert_array_equal(
            dask_level[:50, :70].compute(),
            imagecms_srgb(slide.levels[1][:50, :70].compute(), wide_rgb_profile))


def test_profiles_littlecms_cannot_use_are_one_sentence(slide_writer, real_pixels, svs_path):
    with open_slide(svs_path) as slide, pytest.raises(SlideError) as info:
        slide.srgb_levels()
    assert str(info.value) == (f"Cannot convert {svs_path} to sRGB: the file carries no ICC "
                               "colour profile; use its colours as stored.")
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    for name, profile, words in [("junk.tif", b"not a profile", "cannot be read by littlecms"),
                                 ("lab.tif", lab, "colour space Lab) does not convert RGB")]:
        path, _ = slide_writer(name, real_pixels[:256, :256], levels=1, iccprofile=profile)
        with open_slide(path) as slide:
            assert slide.icc_profile == profile
            with pytest.raises(SlideError) as info:
                slide.srgb_levels()
        message = str(info.value)
        assert message.startswith(f"Cannot convert {path} to sRGB: its ICC profile (")
        assert words in message and message.endswith("; use its colours as stored.")
        assert info.value.path == str(path)
    assert icc_description(b"not a profile") == (
        "its ICC profile (13 bytes) cannot be read by littlecms (cannot open profile from string)")
