"""Slide: the pyramid of RGB levels (the RGB rule, computed levels) and what it says of itself."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.slide import SlideError, open_slide, rgb_pyramid, thumbnail_level

ODD_SHAPE = (2601, 4099)  # level 0 of the odd_slide fixture; computed: 1300 x 2049, 650 x 1024


@pytest.fixture
def ome_slide(slide_writer, real_pixels):
    """A 3-level OME-TIFF of the real pixels at 0.25 µm/px."""
    path, _ = slide_writer("p.ome.tif", real_pixels, layout="subifds", levels=3, mpp=0.25)
    with open_slide(path) as s:
        yield s


# --- the real slides ----------------------------------------------------------------------------


def test_svs_pyramid_adds_one_computed_level(svs_path):
    with open_slide(svs_path) as s:
        assert s.shape == (2967, 2220)
        assert s.stored_level_count == 1  # a single-level SVS ...
        assert [lv.shape for lv in s.levels] == [(2967, 2220, 3), (1483, 1110, 3)]  # ... + 1
        assert 2967 / 1483 != 2.0  # the odd height: level-0 size / level size is not the factor
        assert s.downsamples[1] == (2.0, 2.0)  # a 2x2 mean is exactly 2 per axis


def test_svs_computed_level_is_2x2_means(svs_path):
    with open_slide(svs_path) as s:
        level0 = s.levels[0].compute()[:2966].astype(np.float64)  # the odd last row is dropped
        expected = level0.reshape(1483, 2, 1110, 2, 3).mean(axis=(1, 3))
        got = s.levels[1].compute()
        assert np.abs(got - expected).max() <= 0.5  # rounding only


def test_ndpi_pyramid_is_the_stored_levels(ndpi_path):
    with open_slide(ndpi_path) as s:
        assert [lv.shape[:2] for lv in s.levels] == [(4864, 3968), (2432, 1984), (1216, 992),
                                                     (608, 496)]
        assert s.downsamples == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0), (8.0, 8.0)]


# --- the RGB rule -------------------------------------------------------------------------------


def test_grayscale_is_replicated(slide_writer, real_pixels):
    gray = real_pixels[:1200, :900].mean(axis=2).round().astype(np.uint8)
    path, pyramid = slide_writer("gray.tif", gray, layout="pages", compression="lzw")
    with open_slide(path) as s:
        assert s.raw_levels[0].shape == (1200, 900, 1)
        np.testing.assert_array_equal(s.raw_levels[1][..., 0].compute(), pyramid[1])
        np.testing.assert_array_equal(s.levels[1].compute(), np.repeat(pyramid[1][..., None], 3, 2))


def test_rgba_is_composited_on_white(slide_writer, real_pixels):
    rgb = real_pixels[:700, :600].astype(np.uint16)
    ramp = np.linspace(0, 255, 600).round().astype(np.uint16)
    alpha = ramp[None, :, None] * np.ones((700, 1, 1), np.uint16)
    rgba = np.concatenate([rgb, alpha], axis=2).astype(np.uint8)
    path, _ = slide_writer("rgba.tif", rgba, layout="single", compression="zlib")
    with open_slide(path) as s:
        assert s.raw_levels[0].shape == (700, 600, 4)
        expected = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
        np.testing.assert_array_equal(s.levels[0].compute(), expected.astype(np.uint8))
        assert (s.levels[0][:, 0].compute() == 255).all()  # transparent: white glass


def test_sixteen_bit_is_scaled(slide_writer, real_pixels):
    wide = real_pixels[:500, :400].astype(np.uint16) * 257
    path, _ = slide_writer("sixteen.tif", wide, layout="single", compression="zlib")
    with open_slide(path) as s:
        assert s.raw_levels[0].dtype == np.uint16
        np.testing.assert_array_equal(s.levels[0].compute(), real_pixels[:500, :400])


# --- computed levels ----------------------------------------------------------------------------


def test_large_single_level_gets_a_computed_pyramid(slide_writer, real_pixels):
    big = np.tile(real_pixels, (2, 3, 1))  # 5934 x 6660
    path, _ = slide_writer("big.tif", big, layout="single", compression="jpeg", tile=(256, 256))
    with open_slide(path) as s:
        assert s.stored_level_count == 1
        assert [lv.shape[:2] for lv in s.levels] == [(5934, 6660), (2967, 3330), (1483, 1665)]
        top = s.levels[-1].compute()
        again = s.levels[-1][100:200, 100:200].compute()  # served from the computed copy
        np.testing.assert_array_equal(again, top[100:200, 100:200])
        level0 = s.levels[0].compute()[: 1483 * 4, : 1665 * 4].astype(np.float64)
        expected = level0.reshape(1483, 4, 1665, 4, 3).mean(axis=(1, 3))
        assert np.abs(top - expected).max() <= 1  # two roundings


@pytest.fixture
def odd(odd_slide):
    """The odd-sized slide open, and its white squares (level-0 px, multiples of 64: each one
    patch of 32 px on level 1 and of 16 px on level 2)."""
    path, squares = odd_slide
    with open_slide(path) as s:
        yield s, squares


def test_computed_levels_downsample_by_exactly_two_per_level(odd):
    """Each computed level is skimage's 2 x 2 block mean of the level above (odd last row and
    column dropped), so its downsample is a power of two, not level-0 size / level size."""
    from skimage.measure import block_reduce

    s, _ = odd
    assert s.stored_level_count == 1
    assert [lv.shape[:2] for lv in s.levels] == [ODD_SHAPE, (1300, 2049), (650, 1024)]
    assert (2601 / 650, 4099 / 1024) != (4.0, 4.0)  # the shape ratio is not the factor
    assert s.downsamples == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    above = s.levels[0].compute()
    for level in (1, 2):
        h, w = s.levels[level].shape[:2]
        expected = block_reduce(above[: 2 * h, : 2 * w].astype(np.float64), (2, 2, 1), np.mean)
        above = s.levels[level].compute()
        assert np.abs(above - expected).max() <= 0.5  # rounding only


def test_computed_levels_after_stored_ones_double_the_last_stored_downsample(slide_writer,
                                                                               real_pixels):
    """Stored levels keep OpenSlide's level-0 size / level size; computed ones below them are
    the last stored level's downsample times 2 per level."""
    image = np.tile(real_pixels, (2, 2, 1))[:4501, :4099]
    path, _ = slide_writer("two.tif", image, layout="pages", levels=2, compression="jpeg")
    with open_slide(path) as s:
        assert s.stored_level_count == 2
        assert [lv.shape[:2] for lv in s.levels] == [(4501, 4099), (2250, 2049), (1125, 1024)]
        dy, dx = 4501 / 2250, 4099 / 2049
        assert s.downsamples[1] == (dy, dx)
        assert s.downsamples[2] == (2 * dy, 2 * dx) != (4501 / 1125, 4099 / 1024)


def test_rgb_pyramid_of_an_array_downsamples_by_exactly_two():
    """The pyramid built for a layer without a file (the widget's tissue estimate)."""
    import dask.array as da

    image = da.zeros((*ODD_SHAPE, 3), np.uint8, chunks=(1024, 1024, 3))
    levels, downsamples = rgb_pyramid([image])
    assert [lv.shape[:2] for lv in levels] == [ODD_SHAPE, (1300, 2049), (650, 1024)]
    assert downsamples == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]


@pytest.mark.parametrize("level, size", [(1, 32), (2, 16)])
def test_a_heatmap_cell_on_a_computed_level_covers_its_patchs_level0_pixels(odd, level, size):
    """TensorFlow's patches of the computed level find the white squares; the heatmap cell of
    each such patch spans exactly the square's level-0 pixels (world [y0 - 0.5, y1 - 0.5))."""
    import tensorflow as tf

    s, squares = odd
    pixels = s.levels[level].compute()
    patches = tf.image.extract_patches(pixels[None], [1, size, size, 1], [1, size, size, 1],
                                       [1, 1, 1, 1], "VALID").numpy()[0]
    white = np.argwhere((patches == 255).all(axis=-1))
    grid = PatchGrid(*pixels.shape[:2], size, size)
    assert patches.shape[:2] == grid.shape and len(white) == len(squares)
    values = (patches == 255).all(axis=-1)[..., None].astype(np.float32)
    heatmap = Heatmap(values, grid, level, s.downsamples[level], ("white",))
    (sy, sx), (ty, tx) = heatmap.placement()
    cells = [[ty + (i - 0.5) * sy, tx + (j - 0.5) * sx, ty + (i + 0.5) * sy, tx + (j + 0.5) * sx]
             for i, j in white]  # row-major, as the squares sorted by row
    for y0, x0, y1, x1 in squares:
        assert (s.levels[0][y0:y1, x0:x1] == 255).all().compute()
    np.testing.assert_allclose(cells, np.array(sorted(squares)) - 0.5, atol=1e-9)


# --- Slide.reader: what runs read ---------------------------------------------------------------


def test_reader_of_a_stored_rgb_level_is_its_tile_reader(slide_writer, real_pixels):
    """Runs read stored 8-bit RGB levels through the tile reader (no dask graph per read),
    decoding on one thread or a pool, with the dask level's pixels."""
    path, _ = slide_writer("rgb.tif", real_pixels, layout="single")
    with open_slide(path) as s, ThreadPoolExecutor(3) as pool:
        reader = s.reader(0)
        assert hasattr(reader, "read_tiles") and reader.shape == s.levels[0].shape
        key = (slice(13, 977), slice(250, 899), slice(None))
        ref = s.levels[0][key].compute()
        np.testing.assert_array_equal(reader[key], ref)
        np.testing.assert_array_equal(reader.read_tiles(key, pool.map), ref)


def test_reader_of_a_computed_level_is_the_dask_level(slide_writer, real_pixels):
    path, _ = slide_writer("rgb.tif", real_pixels, layout="single")
    with open_slide(path) as s:
        assert s.stored_level_count == 1 and s.reader(1) is s.levels[1]


def test_reader_of_a_sixteen_bit_level_is_the_dask_level(slide_writer, real_pixels):
    wide = real_pixels[:500, :400].astype(np.uint16) * 257
    path, _ = slide_writer("sixteen.tif", wide, layout="single", compression="zlib")
    with open_slide(path) as s:
        assert s.reader(0) is s.levels[0]  # scaled to 8 bits by dask


# --- µm/px, thumbnails, identity, closing -------------------------------------------------------


def test_level_mpp(ome_slide):
    assert ome_slide.level_mpp(2) == pytest.approx((0.25 * 2967 / 741, 0.25 * 2220 / 555))


def test_level_for_mpp_is_the_closest_on_a_log_scale(ome_slide):
    levels = [ome_slide.level_for_mpp(m) for m in (0.13, 0.26, 0.45, 0.55, 1.0, 1.9)]
    assert levels == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("mpp", [0.1, 50, 1000])
def test_level_for_mpp_refuses_a_size_no_level_is_near(ome_slide, mpp):
    # levels of 0.25 to 1 µm/px: more than twice finer or coarser is no level's pixel size
    with pytest.raises(ValueError, match=rf"^mpp={mpp:g} is far from every level of "
                                         r".*, 0.25 to 1 µm/px: choose a pixel size in that "
                                         "range, or a level by its index.$"):
        ome_slide.level_for_mpp(mpp)


def test_level_for_mpp_refuses_a_non_positive_mpp(ome_slide):
    with pytest.raises(ValueError, match="positive"):
        ome_slide.level_for_mpp(0)


def test_level_for_mpp_needs_a_pixel_size(slide_writer, real_pixels):
    path, _ = slide_writer("nompp.tif", real_pixels[:600, :600], layout="single")
    with open_slide(path) as s, pytest.raises(SlideError, match="no pixel size"):
        s.level_for_mpp(0.5)


def test_thumbnail(ome_slide, real_pixels):
    thumb = ome_slide.thumbnail(300)
    assert thumb.dtype == np.uint8 and thumb.shape[0] == 300 and thumb.shape[2] == 3
    assert abs(thumb.shape[1] - 300 * 2220 / 2967) < 1
    assert abs(thumb.mean() - real_pixels.mean()) < 2


def test_thumbnail_level_is_the_coarsest_large_enough_else_level_0():
    shapes = [(3000, 2000, 3), (1500, 1000, 3), (750, 500, 3)]
    assert thumbnail_level(shapes, 1000) == 1
    assert thumbnail_level(shapes, 700) == 2
    assert thumbnail_level(shapes, 4000) == 0  # none is that large: the largest, not the smallest


def test_identity_is_stable(slide_writer, real_pixels):
    path, _ = slide_writer("id.tif", real_pixels[:600, :600], layout="single")
    with open_slide(path) as a, open_slide(path) as b:
        assert a.identity == b.identity and len(a.identity) == 40


def test_identity_follows_the_file(slide_writer, real_pixels):
    path, _ = slide_writer("id.tif", real_pixels[:600, :600], layout="single")
    with open_slide(path) as a:
        before = a.identity
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with open_slide(path) as c:
        assert c.identity != before


def test_read_after_close_says_so(slide_writer, real_pixels):
    path, _ = slide_writer("closed.tif", real_pixels[:600, :600], layout="single")
    s = open_slide(path)
    level = s.levels[0]
    s.close()
    s.close()  # twice is fine
    with pytest.raises(SlideError, match="closed"):
        level[:10, :10].compute()


def test_rgb_pyramid_of_channel_planes_stacked_lazily():
    """A layer built as a dask stack of channel planes (one chunk per channel) gets its coarser
    levels too, equal to those of the same pixels in one chunk."""
    import dask.array as da

    from napari_patchheat.slide import rgb_pyramid

    rng = np.random.default_rng(3)
    planes = [da.from_array(rng.integers(0, 256, (4200, 2300), dtype=np.uint8), chunks=1024)
              for _ in range(3)]
    stacked = da.stack(planes, axis=-1)
    assert stacked.numblocks[2] == 3
    levels, downsamples = rgb_pyramid([stacked])
    whole, _ = rgb_pyramid([da.from_array(np.asarray(stacked), chunks=(1024, 1024, 3))])
    assert downsamples[1:] == [(2.0, 2.0), (4.0, 4.0)]
    np.testing.assert_array_equal(np.asarray(levels[2]), np.asarray(whole[2]))
    assert len(np.unique(np.asarray(levels[2]))) > 100


# --- sparse TIFFs: tiles missing from the file --------------------------------------------------


def _sparse_tiff(path, shape, tile, present):
    """A tiled RGB TIFF of ``shape`` whose tiles ``present`` (tile index -> (tile, tile, 3)
    uint8) are in the file and all others are absent (byte count 0: glass). Writes only those."""
    import tifffile

    count = (-(-shape[0] // tile)) * (-(-shape[1] // tile))
    first = min(present)
    assert first == 0, "tifffile needs the first tile to learn the dtype"
    tifffile.imwrite(path, (present.get(i) for i in range(count)), shape=(*shape, 3),
                     dtype=np.uint8, tile=(tile, tile), photometric="rgb", bigtiff=True)
    return path


def test_a_sparse_tiffs_computed_levels_equal_the_dense_files(tmp_path, real_pixels):
    """Tiles absent from the file read as white; every computed level of the sparse file equals
    that of the same image written whole (white where the sparse file has no tile)."""
    import tifffile

    shape, tile = (5000, 4600), 256
    across = -(-shape[1] // tile)
    rng = np.random.default_rng(5)
    picks = {0, *rng.choice(20 * across, 40, replace=False).tolist()}
    present = {}
    dense = np.full((*shape, 3), 255, np.uint8)
    for i in picks:
        y, x = i // across * tile, i % across * tile
        piece = real_pixels[y % 2000: y % 2000 + tile, x % 2000: x % 2000 + tile]
        h, w = min(tile, shape[0] - y), min(tile, shape[1] - x)
        dense[y: y + h, x: x + w] = piece[:h, :w]
        full = np.full((tile, tile, 3), 255, np.uint8)
        full[:h, :w] = piece[:h, :w]
        present[i] = full
    sparse_path = _sparse_tiff(tmp_path / "sparse.tif", shape, tile, present)
    dense_path = tmp_path / "dense.tif"
    tifffile.imwrite(dense_path, dense, tile=(tile, tile), photometric="rgb")
    with open_slide(sparse_path) as s, open_slide(dense_path) as d:
        assert s.reader(0).has_absent_tiles and not d.reader(0).has_absent_tiles
        assert len(s.levels) == len(d.levels) == 3
        for k in range(len(s.levels)):
            np.testing.assert_array_equal(np.asarray(s.levels[k]), np.asarray(d.levels[k]))
        np.testing.assert_array_equal(s.levels[2][300:700, 200:900].compute(),
                                      d.levels[2][300:700, 200:900].compute())


def test_a_huge_sparse_tiff_never_reads_its_glass(tmp_path, monkeypatch):
    """The issue's case: a 200,000 x 200,000 px single-level TIFF with one stored tile (2.6 MB
    on disk). Its thumbnail reads level-0 pixels only around that tile, not 4e10 of glass."""
    from napari_patchheat.slide.tiff_level import TiffLevel

    red = np.zeros((512, 512, 3), np.uint8)
    red[..., 0] = 200
    path = _sparse_tiff(tmp_path / "huge.tif", (200_000, 200_000), 512, {0: red})
    assert path.stat().st_size < 4_000_000
    read = []
    real_getitem = TiffLevel.__getitem__

    def counting(self, key):
        out = real_getitem(self, key)
        read.append(out.shape[0] * out.shape[1])
        return out

    monkeypatch.setattr(TiffLevel, "__getitem__", counting)
    with open_slide(path) as s:
        assert [lv.shape[0] for lv in s.levels] == [200_000 // 2**k for k in range(8)]
        thumb = s.thumbnail(512)
        top = np.asarray(s.levels[-1])
    assert sum(read) <= 2048 * 2048  # the level-1 chunk over the one stored tile
    assert (top[:4, :4] == [200, 0, 0]).all() and (top[4:] == 255).all()
    assert (top[:, 4:] == 255).all() and thumb.shape == (512, 512, 3)
