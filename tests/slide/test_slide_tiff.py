"""Opening TIFF slides: the slide's series, its stored levels, associated images, pixels."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from slide_checks import check_regions, expect_error

from napari_patchheat.slide import CHUNK_TARGET_PX, PYRAMID_TOP_PX, open_slide

# --- the real slides ----------------------------------------------------------------------------


def test_svs_tiles_and_chunks(svs_path):
    with open_slide(svs_path) as s:
        assert s.tile_shapes == [(240, 240)]
        assert s.levels[0].chunksize == (960, 960, 3)  # 4 x 4 tiles of 240 px


def test_svs_associated_images(svs_path):
    with open_slide(svs_path) as s:
        assert set(s.associated) == {"thumbnail", "label", "macro"}
        assert s.associated["label"].shape == (463, 387, 3)
        assert s.associated["macro"].compute().shape == (431, 1280, 3)


def test_svs_pixels_are_tifffiles(svs_path):
    with open_slide(svs_path) as s:
        check_regions(s, svs_path)
        np.testing.assert_array_equal(s.levels[0].compute(), tifffile.imread(svs_path))
        assert abs(float(s.levels[0].mean().compute()) - 205.58) < 0.01  # SOURCES.md


def test_ndpi_strips_and_chunks(ndpi_path):
    with open_slide(ndpi_path) as s:
        assert s.tile_shapes[0] == (8, 3968)  # restart-marker strips, whole width
        rows, cols, _ = s.levels[0].chunksize
        assert cols == 3968 and rows % 8 == 0 and rows * cols <= 2 * CHUNK_TARGET_PX**2


def test_ndpi_associated_images(ndpi_path):
    with open_slide(ndpi_path) as s:
        assert set(s.associated) == {"macro", "map"}
        assert s.associated["map"].shape == (203, 594, 3)  # grayscale, as RGB


def test_ndpi_pixels_are_tifffiles(ndpi_path):
    with open_slide(ndpi_path) as s:
        for level in range(4):
            check_regions(s, ndpi_path, level, n=3, seed=level)
        assert abs(float(s.levels[0].mean().compute()) - 13.35) < 0.01


# --- generated slides from real pixels ----------------------------------------------------------

LAYOUTS = {
    "ome-subifds-jpeg-256": dict(layout="subifds", tile=(256, 256), compression="jpeg", mpp=0.25),
    "pages-lzw-240": dict(layout="pages", tile=(240, 240), compression="lzw", mpp=0.5),
    "svs-jpeg-240-x4": dict(layout="svs", tile=(240, 240), compression="jpeg", factor=4,
                            mpp=0.2523),
    "pages-deflate-x3-nonsquare-tiles": dict(layout="pages", tile=(128, 256), compression="zlib",
                                             factor=3),
    "single-tiled": dict(layout="single", tile=(512, 512), compression="jpeg"),
    "single-striped": dict(layout="single", tile=None, compression="lzw"),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_generated_layout_reads_back_as_written(name, slide_writer, real_pixels):
    """Every layout the reader claims: the stored levels, tiles, µm/px and pixels written."""
    options = LAYOUTS[name]
    image = real_pixels[:2100, :1700]  # non-square, not a multiple of any tile
    path, pyramid = slide_writer(f"{name}.tif", image, **options)
    with open_slide(path) as s:
        stored = [lv.shape[:2] for lv in pyramid]
        assert [lv.shape[:2] for lv in s.raw_levels] == stored
        assert [lv.shape[:2] for lv in s.levels[: len(stored)]] == stored
        assert s.tile_shapes[0] == (options["tile"] or (64, 1700))
        for k, (h, w) in enumerate(stored):
            assert s.downsamples[k] == (2100 / h, 1700 / w)
        mpp = options.get("mpp")
        assert s.mpp == (None if mpp is None else pytest.approx((mpp, mpp)))
        for level in range(len(stored)):
            check_regions(s, path, level, n=3, seed=level)
            if options["compression"] != "jpeg":  # lossless: the very pixels written
                np.testing.assert_array_equal(s.levels[level].compute(), pyramid[level])
        assert s.levels[-1].shape[0] <= PYRAMID_TOP_PX


SVS_X4 = dict(layout="svs", factor=4, mpp=0.2523, tile=(240, 240))


def test_svs_layout_levels_are_not_powers_of_two(slide_writer, real_pixels):
    path, _ = slide_writer("a.svs", real_pixels, **SVS_X4)
    with open_slide(path) as s:
        assert [lv.shape[:2] for lv in s.levels] == [(2967, 2220), (741, 555), (185, 138)]
        assert s.downsamples[1] == (2967 / 741, 2220 / 555)


def test_svs_layout_associated_images(slide_writer, real_pixels):
    path, _ = slide_writer("a.svs", real_pixels, **SVS_X4)
    with open_slide(path) as s:
        assert {"thumbnail", "label", "macro"} <= set(s.associated)
        np.testing.assert_array_equal(s.associated["label"].compute(), real_pixels[:300, :400])


# --- TIFFs that are no slide --------------------------------------------------------------------


def test_tiff_header_then_garbage(tmp_path):
    path = tmp_path / "broken.tif"
    noise = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    path.write_bytes(b"II*\x00" + noise)
    message = str(expect_error(path)).replace(str(path), "<path>")
    assert "not a readable TIFF" in message or "no readable image" in message


def test_truncated_svs(svs_path, tmp_path):
    path = tmp_path / "half.svs"
    path.write_bytes(svs_path.read_bytes()[: svs_path.stat().st_size // 2])
    expect_error(path, "truncated")  # the SVS keeps its directories at the end


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_generated(slide_writer, real_pixels, tmp_path, fraction):
    src, _ = slide_writer("whole.ome.tif", real_pixels, layout="subifds")
    path = tmp_path / f"cut{fraction}.ome.tif"
    path.write_bytes(src.read_bytes()[: int(src.stat().st_size * fraction)])
    expect_error(path, "truncated")


def test_tiff_without_image(tmp_path):
    path = tmp_path / "noimage.tif"
    tifffile.imwrite(path, np.zeros((0, 0), np.uint8))
    expect_error(path)
