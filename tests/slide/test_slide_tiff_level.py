"""The TIFF tile reader: what it accepts, what it decodes (and how often), and its pixels."""

from __future__ import annotations

import gc
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile
from slide_checks import expect_error, tifffile_level

from napari_patchheat.slide import SlideError, open_slide
from napari_patchheat.slide.tiff_level import TiffLevel


@pytest.fixture()
def decoded(monkeypatch) -> list[int]:
    """The index of every tile (or strip) the slide readers decode, in order."""
    indices: list[int] = []
    original = TiffLevel.decode_tile

    def counting(self, page, index):
        indices.append(index)
        return original(self, page, index)

    monkeypatch.setattr(TiffLevel, "decode_tile", counting)
    return indices


# --- what a read decodes ------------------------------------------------------------------------


def test_ndpi_region_decodes_only_the_rows_it_needs(ndpi_path, decoded):
    """A 1k x 1k read decodes its rows (whole width: NDPI strips), each once, and few more."""
    with open_slide(ndpi_path) as s:
        decoded.clear()
        s.levels[0][2000:3024, 1000:2024].compute()
    assert len(decoded) == len(set(decoded))  # no strip decoded twice
    assert 1024 <= 8 * len(decoded) <= 1024 + 16


def read_svs_in_700_px_regions(slide, ref) -> None:
    """Rows 0..2967, columns 0..2100 of level 0 in 700-px regions (on 240-px tiles), each
    equal to ``ref``."""
    level = slide.raw_levels[0]
    edges = [0, 700, 1400, 2100, 2800, 2967]
    for y0, y1 in zip(edges, edges[1:]):
        for x0, x1 in zip(edges, edges[1:4]):
            np.testing.assert_array_equal(np.asarray(level[y0:y1, x0:x1]), ref[y0:y1, x0:x1])


def test_svs_neighbouring_regions_share_their_edge_tiles(svs_path, decoded):
    """A run's blocks rarely end on tile edges: the tiles a region reads in part are decoded
    once for it and the regions next to it (the edge-tile cache); pixels stay tifffile's."""
    ref = tifffile_level(svs_path, 0)
    with open_slide(svs_path) as s:
        decoded.clear()  # opening checks one tile
        read_svs_in_700_px_regions(s, ref)
        assert s.reader(0).cached_edge_tiles > 0
    tiles = -(-2967 // 240) * -(-2100 // 240)  # 13 x 9 tiles hold rows 0..2967, cols 0..2100
    assert len(decoded) == len(set(decoded)) == tiles


def test_closing_a_slide_forgets_its_edge_tiles(svs_path):
    ref = tifffile_level(svs_path, 0)
    with open_slide(svs_path) as s:
        reader = s.reader(0)
        read_svs_in_700_px_regions(s, ref)
        assert reader.cached_edge_tiles > 0
    assert reader.cached_edge_tiles == 0


def test_wide_strips_skip_the_edge_tile_cache(tmp_path):
    """A block of a striped 40,000-px-wide level needs ~250 MB of strips: more than the cache."""
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, np.full((64, 40000, 3), 200, np.uint8), photometric="rgb",
                     rowsperstrip=8, compression="zlib")
    with open_slide(path) as s:
        assert s.tile_shapes == [(8, 40000)] and not s.reader(0).caches_edges
        assert (s.reader(0)[3:50, 100:3000] == 200).all()
        assert s.reader(0).cached_edge_tiles == 0


def test_concurrent_reads_agree(slide_writer, real_pixels):
    """Many threads reading a freshly opened slide at once (tifffile loads some tags lazily,
    under its file lock: reads must take the same lock) get tifffile's pixels."""
    path, _ = slide_writer("c.ome.tif", real_pixels, layout="subifds")
    ref = tifffile_level(path, 0)
    regions = [(y, x) for y in range(0, 2600, 300) for x in range(0, 1900, 450)]
    for _ in range(4):
        with open_slide(path) as s, ThreadPoolExecutor(8) as pool:
            level = s.levels[0]

            def read(yx, level=level):
                return level[yx[0] : yx[0] + 333, yx[1] : yx[1] + 333].compute()

            reads = pool.map(read, regions)
            for (y, x), got in zip(regions, reads):
                np.testing.assert_array_equal(got, ref[y : y + 333, x : x + 333])


def test_huge_slide_memory_stays_small(huge_slide):
    """Open a 100k x 100k slide (30 GB of pixels) and read a region: a few MB of memory."""
    gc.collect()
    tracemalloc.start()
    try:
        with open_slide(huge_slide) as s:
            assert s.shape == (100_000, 100_000) and len(s.levels) == 7
            cy, cx = s.shape[0] // 2, s.shape[1] // 2
            region = s.levels[0][cy - 1024 : cy + 1024, cx - 1024 : cx + 1024].compute()
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


# --- sample layouts -----------------------------------------------------------------------------


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


# --- what it refuses, and tiles that cannot be read ---------------------------------------------


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


def test_multiplexed_contiguous_channels_are_refused(tmp_path):
    path = tmp_path / "plex.tif"
    tifffile.imwrite(path, np.zeros((64, 64, 6), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    expect_error(path, "6 channels")


def test_multiplexed_ome_channels_are_refused(tmp_path):
    path = tmp_path / "plex.ome.tif"
    tifffile.imwrite(path, np.zeros((6, 64, 64), np.uint8), metadata={"axes": "CYX"})
    expect_error(path, "6 channels", "multiplexed")


def test_unknown_compression(slide_writer, real_pixels):
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
    path, _ = slide_writer("j2k.tif", real_pixels[:600, :600], layout="single",
                           compression="jpeg2000")
    with open_slide(path) as s:  # works with the codec
        assert s.levels[0].shape == (600, 600, 3)
    lookup = type(TIFF.DECOMPRESSORS).__getitem__

    def without_jpeg2k(self, key):  # what tifffile says when imagecodecs lacks the codec
        if key == 34712:
            raise KeyError("<COMPRESSION.JPEG2000: 34712> requires the 'imagecodecs' package")
        return lookup(self, key)

    monkeypatch.setattr(type(TIFF.DECOMPRESSORS), "__getitem__", without_jpeg2k)
    expect_error(path, "JPEG 2000", "imagecodecs")
