"""open_slide on the real slides, on slides generated in every layout it claims, and on bad input."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import downscale

from napari_patchheat.slide import (
    CHUNK_TARGET_PX,
    PYRAMID_TOP_PX,
    Slide,
    SlideError,
    open_slide,
)


def tifffile_level(path: Path, level: int) -> np.ndarray:
    """tifffile's own decoding of a whole stored level (the reference)."""
    with tifffile.TiffFile(path) as tif:
        levels = sorted(tif.series[0].levels, key=lambda s: -s.shape[0] * s.shape[1])
        return levels[level].asarray()


def check_regions(slide: Slide, path: Path, level: int = 0, n: int = 6, seed: int = 0) -> None:
    """Random regions of ``level`` (tile-unaligned, some at the edges) equal tifffile's crops."""
    ref = tifffile_level(path, level)
    if ref.ndim == 2:
        ref = ref[..., None]
    h, w = ref.shape[:2]
    rng = np.random.default_rng(seed)
    raw = slide.raw_levels[level]
    for _ in range(n):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        y1, x1 = int(rng.integers(y0 + 1, h + 1)), int(rng.integers(x0 + 1, w + 1))
        np.testing.assert_array_equal(raw[y0:y1, x0:x1].compute(), ref[y0:y1, x0:x1])
    np.testing.assert_array_equal(raw[h - 7 :, w - 300 :].compute(), ref[h - 7 :, w - 300 :])


# --- the real slides ----------------------------------------------------------------------------


def test_svs(svs_path):
    with open_slide(svs_path) as s:
        assert s.vendor == "aperio"
        assert s.mpp == (0.499, 0.499)
        assert s.objective_power == 20.0
        assert s.shape == (2967, 2220)
        assert s.stored_level_count == 1  # a single-level SVS ...
        assert [lv.shape for lv in s.levels] == [(2967, 2220, 3), (1483, 1110, 3)]  # ... + 1
        assert s.downsamples[1] == (2967 / 1483, 2220 / 1110)
        assert s.tile_shapes == [(240, 240)]
        assert s.levels[0].chunksize == (960, 960, 3)  # 4 x 4 tiles of 240 px
        assert set(s.associated) == {"thumbnail", "label", "macro"}
        assert s.associated["label"].shape == (463, 387, 3)
        assert s.associated["macro"].compute().shape == (431, 1280, 3)
        check_regions(s, svs_path)
        np.testing.assert_array_equal(s.levels[0].compute(), tifffile.imread(svs_path))
        assert abs(float(s.levels[0].mean().compute()) - 205.58) < 0.01  # SOURCES.md


def test_svs_computed_level_is_2x2_means(svs_path):
    with open_slide(svs_path) as s:
        level0 = s.levels[0].compute()[:2966].astype(np.float64)  # the odd last row is dropped
        expected = level0.reshape(1483, 2, 1110, 2, 3).mean(axis=(1, 3))
        got = s.levels[1].compute()
        assert np.abs(got - expected).max() <= 0.5  # rounding only


def test_ndpi(ndpi_path):
    with open_slide(ndpi_path) as s:
        assert s.vendor == "hamamatsu"
        assert s.mpp == pytest.approx((0.2282, 0.2282), abs=1e-4)
        assert s.objective_power == 40.0
        assert [lv.shape[:2] for lv in s.levels] == [(4864, 3968), (2432, 1984), (1216, 992), (608, 496)]
        assert s.downsamples == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0), (8.0, 8.0)]
        assert s.tile_shapes[0] == (8, 3968)  # restart-marker strips, whole width
        rows, cols, _ = s.levels[0].chunksize
        assert cols == 3968 and rows % 8 == 0 and rows * cols <= 2 * CHUNK_TARGET_PX**2
        assert set(s.associated) == {"macro", "map"}
        assert s.associated["map"].shape == (203, 594, 3)  # grayscale, as RGB
        for level in range(4):
            check_regions(s, ndpi_path, level, n=3, seed=level)
        assert abs(float(s.levels[0].mean().compute()) - 13.35) < 0.01


@pytest.fixture()
def decoded(monkeypatch) -> list[int]:
    """The index of every tile (or strip) the slide readers decode, in order."""
    from napari_patchheat.slide.tiff_level import _TiffLevel

    indices: list[int] = []
    original = _TiffLevel._tile

    def counting(self, page, index):
        indices.append(index)
        return original(self, page, index)

    monkeypatch.setattr(_TiffLevel, "_tile", counting)
    return indices


def test_ndpi_region_decodes_only_the_rows_it_needs(ndpi_path, decoded):
    """A 1k x 1k read decodes its rows (whole width: NDPI strips), each once, and few more."""
    with open_slide(ndpi_path) as s:
        decoded.clear()
        s.levels[0][2000:3024, 1000:2024].compute()
    assert len(decoded) == len(set(decoded))  # no strip decoded twice
    assert 1024 <= 8 * len(decoded) <= 1024 + 16


def test_svs_neighbouring_regions_share_their_edge_tiles(svs_path, decoded):
    """A run's blocks rarely end on tile edges: the tiles a region reads in part are decoded
    once for it and the regions next to it (the edge-tile cache); pixels stay tifffile's."""
    from napari_patchheat.slide.tiff_level import _EDGE_TILES

    ref = tifffile_level(svs_path, 0)
    with open_slide(svs_path) as s:
        level = s.raw_levels[0]
        decoded.clear()  # opening checks one tile
        edges = [0, 700, 1400, 2100, 2800, 2967]  # 700-px regions on 240-px tiles
        for y0, y1 in zip(edges, edges[1:]):
            for x0, x1 in zip(edges, edges[1:4]):
                np.testing.assert_array_equal(np.asarray(level[y0:y1, x0:x1]),
                                              ref[y0:y1, x0:x1])
        number = s.reader(0)._number
        assert any(key[0] == number for key in _EDGE_TILES._tiles)
    tiles = -(-2967 // 240) * -(-2100 // 240)  # 13 x 9 tiles hold rows 0..2967, cols 0..2100
    assert len(decoded) == len(set(decoded)) == tiles
    assert not any(key[0] == number for key in _EDGE_TILES._tiles)  # closing forgets them


def test_wide_strips_skip_the_edge_tile_cache(tmp_path):
    """A block of a striped 40,000-px-wide level needs ~250 MB of strips: more than the cache."""
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, np.full((64, 40000, 3), 200, np.uint8), photometric="rgb",
                     rowsperstrip=8, compression="zlib")
    with open_slide(path) as s:
        assert s.tile_shapes == [(8, 40000)] and not s.reader(0).caches_edges
        assert (s.reader(0)[3:50, 100:3000] == 200).all()


def test_edge_tile_cache_is_bounded_and_drops_the_oldest():
    from napari_patchheat.slide.tiff_level import _EdgeTiles

    cache = _EdgeTiles(max_bytes=3 * 1000)
    for k in range(5):
        cache.put(("level", 0, k), np.full(1000, k, np.uint8))
    assert cache.nbytes == 3000
    assert [cache.get(("level", 0, k))[0] for k in range(5)] == [False, False, True, True, True]
    assert cache.get(("level", 0, 4))[1][0] == 4
    cache.put(("level", 0, 9), None)  # an empty tile is remembered too, at no cost
    assert cache.get(("level", 0, 9)) == (True, None) and cache.nbytes == 3000
    cache.put(("level", 0, 8), np.zeros(4000, np.uint8))  # larger than the cache: not kept
    assert cache.get(("level", 0, 8)) == (False, None) and cache.nbytes == 3000


def test_png(ihc_png_path):
    from skimage.data import immunohistochemistry

    with open_slide(ihc_png_path) as s:
        assert s.vendor == "png" and s.mpp is None and s.objective_power is None
        assert [lv.shape for lv in s.levels] == [(512, 512, 3)]
        np.testing.assert_array_equal(s.levels[0].compute(), immunohistochemistry())
        np.testing.assert_array_equal(s.levels[0][10:20, 500:].compute(), immunohistochemistry()[10:20, 500:])


# --- generated slides from real pixels ----------------------------------------------------------

LAYOUTS = {
    "ome-subifds-jpeg-256": dict(layout="subifds", tile=(256, 256), compression="jpeg", mpp=0.25),
    "pages-lzw-240": dict(layout="pages", tile=(240, 240), compression="lzw", mpp=0.5),
    "svs-jpeg-240-x4": dict(layout="svs", tile=(240, 240), compression="jpeg", factor=4, mpp=0.2523),
    "pages-deflate-x3-nonsquare-tiles": dict(layout="pages", tile=(128, 256), compression="zlib", factor=3),
    "single-tiled": dict(layout="single", tile=(512, 512), compression="jpeg"),
    "single-striped": dict(layout="single", tile=None, compression="lzw"),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_generated_layouts(name, slide_writer, real_pixels):
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


def test_svs_layout_metadata(slide_writer, real_pixels):
    path, _ = slide_writer("a.svs", real_pixels, layout="svs", factor=4, mpp=0.2523, tile=(240, 240))
    with open_slide(path) as s:
        assert s.vendor == "aperio" and s.objective_power == 40
        assert [lv.shape[:2] for lv in s.levels] == [(2967, 2220), (741, 555), (185, 138)]
        assert s.downsamples[1] == (2967 / 741, 2220 / 555)  # not powers of two
        assert {"thumbnail", "label", "macro"} <= set(s.associated)
        np.testing.assert_array_equal(s.associated["label"].compute(), real_pixels[:300, :400])


def test_ome_metadata_units(slide_writer, real_pixels, tmp_path):
    path = tmp_path / "nm.ome.tif"
    tifffile.imwrite(
        path, real_pixels[:512, :512], photometric="rgb", tile=(256, 256),
        metadata={"axes": "YXS", "PhysicalSizeX": 250.0, "PhysicalSizeXUnit": "nm",
                  "PhysicalSizeY": 0.26, "PhysicalSizeYUnit": "µm"},
    )  # fmt: skip
    with open_slide(path) as s:
        assert s.vendor == "ome"
        assert s.mpp == pytest.approx((0.26, 0.25))


def test_grayscale_is_replicated(slide_writer, real_pixels):
    gray = real_pixels[:1200, :900].mean(axis=2).round().astype(np.uint8)
    path, pyramid = slide_writer("gray.tif", gray, layout="pages", compression="lzw")
    with open_slide(path) as s:
        assert s.raw_levels[0].shape == (1200, 900, 1)
        np.testing.assert_array_equal(s.raw_levels[1][..., 0].compute(), pyramid[1])
        np.testing.assert_array_equal(s.levels[1].compute(), np.repeat(pyramid[1][..., None], 3, 2))


def test_rgba_is_composited_on_white(slide_writer, real_pixels):
    rgb = real_pixels[:700, :600].astype(np.uint16)
    alpha = np.linspace(0, 255, 600).round().astype(np.uint16)[None, :, None] * np.ones((700, 1, 1), np.uint16)
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


def test_reader_is_the_tile_reader_of_stored_rgb_levels_only(slide_writer, real_pixels):
    """Runs read stored 8-bit RGB levels through the tile reader (no dask graph per read),
    decoding on one thread or a pool, with the dask level's pixels; other levels stay dask."""
    from concurrent.futures import ThreadPoolExecutor

    rgb, _ = slide_writer("rgb.tif", real_pixels, layout="single")
    wide, _ = slide_writer("sixteen.tif", real_pixels[:500, :400].astype(np.uint16) * 257,
                           layout="single", compression="zlib")
    with open_slide(rgb) as s, ThreadPoolExecutor(3) as pool:
        reader = s.reader(0)
        assert hasattr(reader, "read_tiles") and reader.shape == s.levels[0].shape
        key = (slice(13, 977), slice(250, 899), slice(None))
        ref = s.levels[0][key].compute()
        np.testing.assert_array_equal(reader[key], ref)
        np.testing.assert_array_equal(reader.read_tiles(key, pool.map), ref)
        assert s.stored_level_count == 1 and s.reader(1) is s.levels[1]  # a computed level
    with open_slide(wide) as s:
        assert s.reader(0) is s.levels[0]  # scaled to 8 bits by dask


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


def test_jpeg_file(tmp_path, real_pixels):
    from PIL import Image

    path = tmp_path / "photo.jpg"
    Image.fromarray(real_pixels[:300, :400]).save(path, quality=90)
    with open_slide(path) as s:
        assert s.vendor == "jpeg" and s.levels[0].shape == (300, 400, 3)
        np.testing.assert_array_equal(s.levels[0].compute(), np.asarray(Image.open(path)))


def test_level_for_mpp_and_thumbnail(slide_writer, real_pixels):
    path, _ = slide_writer("p.ome.tif", real_pixels, layout="subifds", levels=3, mpp=0.25)
    with open_slide(path) as s:
        assert s.level_mpp(2) == pytest.approx((0.25 * 2967 / 741, 0.25 * 2220 / 555))
        assert [s.level_for_mpp(m) for m in (0.1, 0.26, 0.45, 0.55, 1.0, 50)] == [0, 0, 1, 1, 2, 2]
        thumb = s.thumbnail(300)
        assert thumb.dtype == np.uint8 and thumb.shape[0] == 300 and thumb.shape[2] == 3
        assert abs(thumb.shape[1] - 300 * 2220 / 2967) < 1
        assert abs(thumb.mean() - real_pixels.mean()) < 2
        with pytest.raises(ValueError, match="positive"):
            s.level_for_mpp(0)
    path, _ = slide_writer("nompp.tif", real_pixels[:600, :600], layout="single")
    with open_slide(path) as s, pytest.raises(SlideError, match="no pixel size"):
        s.level_for_mpp(0.5)


def test_identity_is_stable_and_follows_the_file(slide_writer, real_pixels):
    path, _ = slide_writer("id.tif", real_pixels[:600, :600], layout="single")
    with open_slide(path) as a, open_slide(path) as b:
        assert a.identity == b.identity and len(a.identity) == 40
    import os

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with open_slide(path) as c:
        assert c.identity != a.identity


def test_concurrent_reads_agree(slide_writer, real_pixels):
    """Many threads reading a freshly opened slide at once (tifffile loads some tags lazily,
    under its file lock: reads must take the same lock) get tifffile's pixels."""
    path, _ = slide_writer("c.ome.tif", real_pixels, layout="subifds")
    ref = tifffile_level(path, 0)
    regions = [(y, x) for y in range(0, 2600, 300) for x in range(0, 1900, 450)]
    for _ in range(4):
        with open_slide(path) as s, ThreadPoolExecutor(8) as pool:
            level = s.levels[0]
            reads = pool.map(lambda yx: level[yx[0] : yx[0] + 333, yx[1] : yx[1] + 333].compute(), regions)
            for (y, x), got in zip(regions, reads):
                np.testing.assert_array_equal(got, ref[y : y + 333, x : x + 333])


def test_read_after_close_says_so(slide_writer, real_pixels):
    path, _ = slide_writer("closed.tif", real_pixels[:600, :600], layout="single")
    s = open_slide(path)
    level = s.levels[0]
    s.close()
    s.close()  # twice is fine
    with pytest.raises(SlideError, match="closed"):
        level[:10, :10].compute()


def test_huge_slide_memory_stays_small(huge_slide):
    """Open a 100k x 100k slide (30 GB of pixels) and read a region: a few MB of memory."""
    gc.collect()
    tracemalloc.start()
    try:
        with open_slide(huge_slide) as s:
            assert s.shape == (100_000, 100_000) and len(s.levels) == 7
            h, w = s.shape
            region = s.levels[0][h // 2 - 1024 : h // 2 + 1024, w // 2 - 1024 : w // 2 + 1024].compute()
            top = s.levels[-1].compute()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert region.shape == (2048, 2048, 3) and region.std() > 10  # real tissue, decoded
    assert top.shape == (1562, 1562, 3)
    assert (top[0, 0] == 255).all()  # missing tiles read as glass
    slide_bytes = 100_000 * 100_000 * 3
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert peak < slide_bytes / 200


# --- bad input ----------------------------------------------------------------------------------


def expect_error(path: Path, *words: str) -> SlideError:
    with pytest.raises(SlideError) as info:
        open_slide(path)
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word in message.replace(str(path), "<path>"), message
    assert info.value.path == str(path)
    assert isinstance(info.value, OSError)
    return info.value


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.svs", "no such file")


def test_directory(tmp_path):
    expect_error(tmp_path, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    expect_error(path, "empty")


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.svs"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expect_error(path, "not a TIFF, PNG or JPEG")


def test_tiff_header_then_garbage(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00" + np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    message = str(expect_error(path)).replace(str(path), "<path>")
    assert "not a readable TIFF" in message or "no readable image" in message


def test_truncated_svs(svs_path, tmp_path):
    path = tmp_path / "half.svs"
    path.write_bytes(svs_path.read_bytes()[: svs_path.stat().st_size // 2])
    expect_error(path, "truncated")  # the SVS keeps its directories at the end


def test_truncated_generated(slide_writer, real_pixels, tmp_path):
    src, _ = slide_writer("whole.ome.tif", real_pixels, layout="subifds")
    for fraction in (0.1, 0.5, 0.9):
        path = tmp_path / f"cut{fraction}.ome.tif"
        path.write_bytes(src.read_bytes()[: int(src.stat().st_size * fraction)])
        expect_error(path, "truncated")


def test_corrupt_tile_fails_when_read(slide_writer, real_pixels):
    path, _ = slide_writer("corrupt.tif", real_pixels, layout="single", tile=(256, 256))
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[20], page.databytecounts[20]
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = bytes(count)  # zeros: not JPEG
    path.write_bytes(bytes(data))
    with open_slide(path) as s:
        s.levels[0][:256, :256].compute()  # other tiles still read
        ty, tx = divmod(20, -(-2220 // 256))
        with pytest.raises(SlideError, match=r"tile 20 .*corrupt\.tif"):
            s.levels[0][ty * 256 : ty * 256 + 10, tx * 256 : tx * 256 + 10].compute()


def test_stack_is_not_a_slide(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((5, 64, 64), np.uint8))
    expect_error(path, "not a 2-D image")


def test_float_is_refused(tmp_path):
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.float32))
    expect_error(path, "float32")


def test_multiplexed_is_refused(tmp_path):
    path = tmp_path / "plex.tif"
    tifffile.imwrite(path, np.zeros((64, 64, 6), np.uint8), photometric="minisblack", planarconfig="contig")
    expect_error(path, "6 channels")
    path = tmp_path / "plex.ome.tif"
    tifffile.imwrite(path, np.zeros((6, 64, 64), np.uint8), metadata={"axes": "CYX"})
    expect_error(path, "6 channels", "multiplexed")


def test_ome_channels_as_pages(tmp_path, real_pixels):
    """OME CYX with 3 channels in 3 pages is read as RGB."""
    path = tmp_path / "cyx.ome.tif"
    planes = np.moveaxis(real_pixels[:300, :200], 2, 0).copy()
    tifffile.imwrite(path, planes, metadata={"axes": "CYX"}, tile=(64, 64), compression="zlib")
    with open_slide(path) as s:
        np.testing.assert_array_equal(s.levels[0].compute(), real_pixels[:300, :200])


def test_planar_separate(tmp_path, real_pixels):
    path = tmp_path / "planar.tif"
    planes = np.moveaxis(real_pixels[:300, :200], 2, 0).copy()
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate", rowsperstrip=16)
    with open_slide(path) as s:
        np.testing.assert_array_equal(s.levels[0].compute(), real_pixels[:300, :200])


def test_tiff_without_image(tmp_path):
    path = tmp_path / "noimage.tif"
    tifffile.imwrite(path, np.zeros((0, 0), np.uint8))
    expect_error(path)


def test_unknown_compression(slide_writer, real_pixels, tmp_path):
    path, _ = slide_writer("lzw.tif", real_pixels[:600, :600], layout="single", compression="lzw")
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages[0].tags["Compression"].overwrite(60000)
    expect_error(path, "compression 60000", "imagecodecs")


def test_missing_codec_names_it(slide_writer, real_pixels, monkeypatch):
    """JPEG 2000 slides need imagecodecs' jpeg2k codec: say so when it is missing."""
    import imagecodecs
    from tifffile import TIFF

    if not imagecodecs.JPEG2K.available:
        pytest.skip("this imagecodecs has no JPEG 2000 codec to write the test file")
    path, _ = slide_writer("j2k.tif", real_pixels[:600, :600], layout="single", compression="jpeg2000")
    with open_slide(path) as s:  # works with the codec
        assert s.levels[0].shape == (600, 600, 3)
    lookup = type(TIFF.DECOMPRESSORS).__getitem__

    def without_jpeg2k(self, key):  # what tifffile says when imagecodecs lacks the codec
        if key == 34712:
            raise KeyError("<COMPRESSION.JPEG2000: 34712> requires the 'imagecodecs' package")
        return lookup(self, key)

    monkeypatch.setattr(type(TIFF.DECOMPRESSORS), "__getitem__", without_jpeg2k)
    expect_error(path, "JPEG 2000", "imagecodecs")


def test_open_from_many_threads(slide_writer, real_pixels):
    """Opening is thread-safe (the widget may open while a run reads)."""
    path, _ = slide_writer("t.ome.tif", real_pixels, layout="subifds")
    errors = []

    def job():
        try:
            with open_slide(path) as s:
                s.levels[1][:100, :100].compute()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_thumbnail_level_is_the_coarsest_large_enough_else_level_0():
    from napari_patchheat.slide import thumbnail_level

    shapes = [(3000, 2000, 3), (1500, 1000, 3), (750, 500, 3)]
    assert thumbnail_level(shapes, 1000) == 1
    assert thumbnail_level(shapes, 700) == 2
    assert thumbnail_level(shapes, 4000) == 0  # none is that large: the largest, not the smallest
