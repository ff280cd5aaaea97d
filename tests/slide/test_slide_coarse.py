"""Computed levels of huge TIFFs built once into a file: the same pixels as the lazily computed
levels, progress, cancel, bounded memory, and open_slide reading them from the file."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_patchheat.slide import coarse, open_slide, pyramid
from napari_patchheat.slide.tiff_level import TiffLevel


@pytest.fixture
def huge(monkeypatch, tmp_path):
    """Images above 2**20 px count as huge; the cache folder is in tmp_path."""
    monkeypatch.setattr(coarse, "COARSE_BUILD_MIN_PX", 2**20)
    monkeypatch.setenv("PATCHHEAT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def noisy(shape, seed=0):
    """RGB uint8 with a flat band (runs of equal values) and noise (every rounding case)."""
    image = np.random.default_rng(seed).integers(0, 256, (*shape, 3), np.uint8)
    image[: shape[0] // 5] = (240, 235, 250)
    return image


@pytest.mark.parametrize("tile,top", [((512, 512), 2048), ((256, 384), 96), (None, 2048)])
def test_built_levels_equal_the_computed_levels(huge, monkeypatch, tile, top):
    """Odd sizes, tiles that are not square, (top=96) six computed levels: a block must be a
    multiple of 64 px for every level to halve alone, and (None) strips of 16 rows."""
    monkeypatch.setattr(pyramid, "PYRAMID_TOP_PX", top)
    path = huge / "s.tif"
    layout = {"tile": tile} if tile else {"rowsperstrip": 16}
    tifffile.imwrite(path, noisy((3001, 4099)), photometric="rgb", compression="zlib",
                     **layout)
    with open_slide(path) as s:
        assert coarse.needs_build(s) and s.coarse_path is None
        expected = [lv.compute() for lv in s.levels[1:]]
        done: list[tuple[int, int]] = []
        built = coarse.build_coarse_levels(s, progress=lambda *p: done.append(p))
    assert len(expected) == (2 if top == 2048 else 6)
    assert done[-1] == (3001, 3001) and [d for d, _ in done] == sorted(d for d, _ in done)
    assert built == coarse.coarse_file(path) and built.parent == huge / "cache" / "coarse"
    with tifffile.TiffFile(built) as tif:  # a plain tiled TIFF: read back by tifffile itself
        for page, level in zip(tif.pages, expected, strict=True):
            np.testing.assert_array_equal(page.asarray(), level)
    with open_slide(path) as s:
        assert s.coarse_path == built and not coarse.needs_build(s)
        for k, level in enumerate(expected, start=1):
            assert isinstance(s.reader(k), TiffLevel)  # a run reads the built file
            np.testing.assert_array_equal(s.levels[k].compute(), level)
        assert s.downsamples[1] == (2.0, 2.0)


def test_sixteen_bit_grayscale_goes_through_the_rgb_rule(huge):
    path = huge / "gray16.tif"
    gray = np.random.default_rng(1).integers(0, 65536, (2500, 1100), np.uint16)
    tifffile.imwrite(path, gray, tile=(256, 256), photometric="minisblack")
    with open_slide(path) as s:
        expected = s.levels[1].compute()
        coarse.build_coarse_levels(s)
    with open_slide(path) as s:
        assert s.coarse_path is not None
        np.testing.assert_array_equal(s.levels[1].compute(), expected)


def test_cancel_leaves_nothing_and_the_slide_as_it_was(huge):
    path = huge / "s.tif"
    tifffile.imwrite(path, noisy((2500, 2500)), tile=(256, 256), photometric="rgb")
    cancel = threading.Event()
    with open_slide(path) as s:
        with pytest.raises(coarse.BuildCancelled, match="cancelled"):
            coarse.build_coarse_levels(s, cancel=cancel,
                                       progress=lambda done, total: cancel.set())
    assert list((huge / "cache" / "coarse").iterdir()) == []  # no file, no temporary
    with open_slide(path) as s:
        assert coarse.needs_build(s)


def test_small_sparse_and_png_images_are_not_built(huge, tmp_path, monkeypatch):
    monkeypatch.setattr(coarse, "COARSE_BUILD_MIN_PX", 2**23)
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, noisy((3000, 2500)), tile=(256, 256), photometric="rgb")
    sparse = tmp_path / "sparse.tif"
    rows, cols = -(-4000 // 256), -(-3000 // 256)
    tile = np.full((256, 256, 3), 90, np.uint8)
    tifffile.imwrite(sparse, (tile if i == 0 else None for i in range(rows * cols)),
                     shape=(4000, 3000, 3), dtype=np.uint8, tile=(256, 256), photometric="rgb")
    png = tmp_path / "big.png"
    from PIL import Image

    Image.fromarray(noisy((3000, 3000))).save(png)
    for path in (small, sparse, png):
        with open_slide(path) as s:
            assert len(s.levels) > 1 and not coarse.needs_build(s), path


def test_an_unwritable_cache_is_an_oserror_and_a_foreign_file_is_ignored(huge):
    path = huge / "s.tif"
    tifffile.imwrite(path, noisy((2100, 1100)), tile=(256, 256), photometric="rgb")
    (huge / "cache").write_text("a file where the cache folder should be")
    with open_slide(path) as s, pytest.raises(OSError):
        coarse.build_coarse_levels(s)
    (huge / "cache").unlink()
    target = coarse.coarse_file(path)
    target.parent.mkdir(parents=True)
    tifffile.imwrite(target, np.zeros((1050, 550, 3), np.uint8))  # right shape, not ours
    with open_slide(path) as s:
        assert s.coarse_path is None and coarse.needs_build(s)
        target.write_bytes(b"II*\x00garbage")
    with open_slide(path) as s:
        assert s.coarse_path is None


def test_a_changed_slide_file_is_built_again_and_its_old_file_removed(huge):
    path, other = huge / "s.tif", huge / "other.tif"
    for p in (path, other):
        tifffile.imwrite(p, noisy((2100, 1100)), tile=(256, 256), photometric="rgb")
        with open_slide(p) as s:
            built = coarse.build_coarse_levels(s)
    first = coarse.coarse_file(path)
    tifffile.imwrite(path, noisy((2100, 1100), seed=5), tile=(256, 256), photometric="rgb")
    with open_slide(path) as s:
        assert coarse.coarse_file(path) != first and coarse.needs_build(s)
        second = coarse.build_coarse_levels(s)
    assert sorted(first.parent.iterdir()) == sorted([second, built])  # the other slide's kept
    with open_slide(path) as s:
        assert s.coarse_path == second
        np.testing.assert_array_equal(s.levels[1].compute(), pyramid.halve_block(
            noisy((2100, 1100), seed=5)))


def test_memory_stays_a_block_per_thread_and_a_row_per_level(huge, monkeypatch):
    """An 8,000 x 8,000 image (192 MB of pixels): the build's numpy memory (two threads)
    stays far below."""
    monkeypatch.setattr(coarse, "COARSE_MAX_THREADS", 2)
    path = huge / "big.tif"
    band = np.broadcast_to(np.arange(8000, dtype=np.uint8)[None, :, None] // 32,
                           (256, 8000, 3))
    with tifffile.TiffWriter(path) as tif:
        tif.write((band[:, x: x + 256] for _ in range(32) for x in range(0, 8000, 256)),
                  shape=(8000, 8000, 3), dtype=np.uint8, tile=(256, 256), photometric="rgb",
                  compression="zlib")
    with open_slide(path) as s:
        tracemalloc.start()
        coarse.build_coarse_levels(s)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    with open_slide(path) as s:
        assert s.coarse_path is not None
        np.testing.assert_array_equal(s.levels[-1][0, 6:10, 0].compute(), [0, 0, 1, 1])
    assert peak < 48 * 2**20, peak / 2**20  # 29 MB here


def test_a_full_disk_is_an_oserror_and_leaves_nothing(huge, mounts, monkeypatch):
    """A 200 kB tmpfs as the cache: the build fails with ENOSPC, removes its files (the spooled
    tiles and the half-written TIFF) and the slide opens with its lazy levels."""
    import errno

    full = mounts("full", "200k")
    monkeypatch.setenv("PATCHHEAT_CACHE_DIR", str(full))
    path = huge / "s.tif"
    tifffile.imwrite(path, noisy((2100, 1100)), tile=(256, 256), photometric="rgb")
    with open_slide(path) as s:
        expected = s.levels[1].compute()
        with pytest.raises(OSError) as info:
            coarse.build_coarse_levels(s)
    assert info.value.errno == errno.ENOSPC
    assert [p.name for p in (full / "coarse").iterdir()] == []
    with open_slide(path) as s:
        assert s.coarse_path is None
        np.testing.assert_array_equal(s.levels[1].compute(), expected)
