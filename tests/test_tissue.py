"""Background skipping: tissue masks of real and synthetic images, and per-patch fractions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import napari_patchheat.tissue as tissue
from napari_patchheat.density import optical_density
from napari_patchheat.grid import PatchGrid
from napari_patchheat.slide import open_slide
from napari_patchheat.tissue import (
    FLUORESCENCE_MODEL_WARNING,
    TISSUE_SHOWN_FRACTION,
    choose_mask_level,
    grid_status,
    grid_tissue_fraction,
    is_fluorescence,
    patch_tissue_fraction,
    patch_tissue_mask,
    slide_tissue_mask,
    tissue_level_mask,
    tissue_mask,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="shared data ../shared/data/real absent")


# --- fractions ----------------------------------------------------------------------------------
def brute_force_fraction(mask, mask_ds, grid, grid_ds):
    """Loop over patches and mask pixels, summing exact overlap areas (level-0 pixels)."""
    mdy, mdx = mask_ds
    out = np.zeros(grid.shape)
    for i in range(grid.rows):
        for j in range(grid.cols):
            y0, x0, y1, x1 = grid.box(i, j, grid_ds)
            area = 0.0
            for p, q in zip(*np.nonzero(mask)):
                oy = max(0.0, min(y1, (p + 1) * mdy) - max(y0, p * mdy))
                ox = max(0.0, min(x1, (q + 1) * mdx) - max(x0, q * mdx))
                area += oy * ox
            out[i, j] = area / ((y1 - y0) * (x1 - x0))
    return out


def test_fraction_of_half_tissue_is_exact():
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True  # level-0 columns [0, 16) with 4 level-0 px per mask px
    grid = PatchGrid(32, 32, 8, 8)
    expected = np.tile([1.0, 1.0, 0.0, 0.0], (4, 1))
    np.testing.assert_array_equal(grid_tissue_fraction(mask, 4, grid), expected)
    overlapping = PatchGrid(32, 32, 8, 4)  # starts 0, 4, ..., 24: the one at 12 is half tissue
    got = grid_tissue_fraction(mask, 4, overlapping)
    np.testing.assert_array_equal(got[0], [1, 1, 1, 0.5, 0, 0, 0])
    # the same grid described on a level of downsample 2
    coarse = PatchGrid(16, 16, 4, 2)
    np.testing.assert_array_equal(grid_tissue_fraction(mask, (4, 4), coarse, 2.0), got)
    assert got.dtype == np.float32


def test_fraction_counts_same_padding_as_background():
    grid = PatchGrid(8, 8, 3, 2, padding="SAME")  # 4 x 4, the last patch reaches row/col 8
    assert grid.pad_before == (0, 0) and grid.pad_after == (1, 1)
    got = grid_tissue_fraction(np.ones((8, 8), bool), 1, grid)
    edge = [1, 1, 1, 2 / 3]
    np.testing.assert_allclose(got, np.outer(edge, edge), rtol=1e-6)


def test_fraction_with_fractional_mask_pixels():
    mask = np.array([[1, 0, 1], [0, 1, 0]], bool)
    grid = PatchGrid(10, 12, 5, 5)  # 2 x 2 patches of 5 x 5 on a level of downsample 1
    got = grid_tissue_fraction(mask, (5.0, 4.0), grid)
    # mask pixel (p, q) covers level-0 rows [5p, 5p + 5) and columns [4q, 4q + 4)
    np.testing.assert_allclose(got, [[20 / 25, 10 / 25], [5 / 25, 15 / 25]], rtol=1e-6)
    np.testing.assert_allclose(got, brute_force_fraction(mask, (5.0, 4.0), grid, (1.0, 1.0)),
                               atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    mh=st.integers(1, 9), mw=st.integers(1, 9), seed=st.integers(0, 2**16),
    mds=st.tuples(st.floats(0.5, 9), st.floats(0.5, 9)),
    gds=st.tuples(st.floats(0.5, 4), st.floats(0.5, 4)),
    size=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    stride=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    rate=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.sampled_from(["VALID", "SAME"]),
    hw=st.tuples(st.integers(1, 24), st.integers(1, 24)),
)
def test_vectorised_fraction_equals_brute_force(mh, mw, seed, mds, gds, size, stride, rate,
                                                padding, hw):
    try:
        grid = PatchGrid(hw[0], hw[1], size, stride, rate, padding)
    except ValueError:
        return  # no patch fits (VALID)
    mask = np.random.default_rng(seed).random((mh, mw)) < 0.5
    got = grid_tissue_fraction(mask, mds, grid, gds)
    np.testing.assert_allclose(got, brute_force_fraction(mask, mds, grid, gds), atol=2e-6)


def test_fraction_in_chunks_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(8)
    mask = rng.random((60, 70)) < 0.3
    grid = PatchGrid(300, 350, 16, 7, 2, "SAME")
    whole = grid_tissue_fraction(mask, (5.0, 5.0), grid)
    monkeypatch.setattr(tissue, "_CHUNK_BYTES", 1)
    np.testing.assert_array_equal(grid_tissue_fraction(mask, (5.0, 5.0), grid), whole)


def test_fraction_argument_errors():
    with pytest.raises(ValueError, match="2-D"):
        grid_tissue_fraction(np.ones((4, 4, 3), bool), 1, PatchGrid(4, 4, 2, 2))
    with pytest.raises(ValueError, match="mask_downsample"):
        grid_tissue_fraction(np.ones((4, 4), bool), 0, PatchGrid(4, 4, 2, 2))


# --- masks --------------------------------------------------------------------------------------
def synthetic_slide(h=400, w=600):
    """White background, a 200 x 300 stained rectangle with a small hole, a lone speck."""
    img = np.full((h, w, 3), 245, np.uint8)
    img[100:300, 150:450] = (150, 90, 160)  # H&E-like purple
    img[190:193, 290:293] = 245  # a 3 x 3 hole inside
    img[20, 20] = (60, 30, 90)  # one dark pixel: dust
    return img


def test_mask_of_synthetic_slide():
    mask = tissue_mask(synthetic_slide())
    assert mask.shape == (400, 600) and mask.dtype == bool
    assert not mask[20, 20] and mask[191, 291]  # speck dropped, hole filled
    inside = mask[110:290, 160:440]
    assert inside.all() and mask.sum() == pytest.approx(200 * 300, rel=0.05)  # edges blur ~2 px
    assert not mask[:90].any() and not mask[310:].any()


def test_mask_edge_cases():
    white = np.full((50, 60, 3), 250, np.uint8)
    assert not tissue_mask(white).any()
    assert tissue_mask(np.full((50, 60, 3), 120, np.uint8)).all()  # all tissue
    img = synthetic_slide()
    img[:, :100] = 0  # scanner's black fill
    assert not tissue_mask(img, mode="brightfield")[:, :95].any()
    rgba = np.concatenate([synthetic_slide(), np.full((400, 600, 1), 255, np.uint8)], axis=2)
    rgba[100:200, 150:300, 3] = 0  # transparent: not tissue even where it is purple
    got = tissue_mask(rgba)
    assert not got[110:190, 160:290].any() and got[210:290, 310:440].all()
    grey = synthetic_slide().mean(axis=2).astype(np.uint8)
    np.testing.assert_array_equal(tissue_mask(grey)[110:290, 160:440], True)
    as_float = synthetic_slide() / 255.0
    np.testing.assert_array_equal(tissue_mask(as_float), tissue_mask(synthetic_slide()))
    with pytest.raises(ValueError, match="not RGB"):
        tissue_mask(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="mode="):
        tissue_mask(white, mode="xray")


@needs_real
def test_mask_of_ihc_sample():
    from skimage import io

    ihc = io.imread(REAL / "ihc.png")[..., :3]
    mask = tissue_mask(ihc)
    assert 0.85 < mask.mean() < 0.99
    assert mask[50:200, 50:200].all()  # a brown gland
    assert not mask[310:390, 0:25].any()  # the empty lumen at the left edge


@needs_real
def test_mask_of_he_slide():
    import tifffile

    he = tifffile.imread(REAL / "CMU-1-Small-Region.svs")[::4, ::4]
    mask = tissue_mask(he)
    assert 0.3 < mask.mean() < 0.5
    stained = optical_density(he).sum(axis=2) >= 0.1  # clearly stained pixels
    glass = he.min(axis=2) >= 225  # bright, unstained
    assert mask[stained].mean() > 0.99 and mask[glass].mean() < 0.15


@needs_real
def test_mask_of_fluorescence_slide():
    import tifffile

    with tifffile.TiffFile(REAL / "test3-DAPI-2-387.ndpi") as tif:
        dapi = tif.series[0].levels[2].asarray()
    mask = tissue_mask(dapi)  # "auto" sees the dark background
    np.testing.assert_array_equal(mask, tissue_mask(dapi, mode="fluorescence"))
    nuclei = dapi.max(axis=2) > 100
    assert mask[nuclei].mean() > 0.99 and 0.4 < mask.mean() < 0.85


# --- slides -------------------------------------------------------------------------------------
class FakeSlide:
    """The two attributes tissue.py reads from a Slide: levels (Y X C) and downsamples."""

    def __init__(self, levels, downsamples):
        self.levels, self.downsamples = levels, downsamples


def two_level_slide():
    base = np.repeat(np.repeat(synthetic_slide(), 2, axis=0), 2, axis=1)
    return FakeSlide([base, base[::2, ::2]], [(1.0, 1.0), (2.0, 2.0)])


def test_patch_mask_of_a_slide(monkeypatch):
    slide = two_level_slide()  # level 0: tissue in rows [200, 600), cols [300, 900)
    grid = PatchGrid(800, 1200, 100, 100)
    monkeypatch.setattr(tissue, "TISSUE_MASK_MIN_PX", 500)
    assert choose_mask_level(slide, grid) == 1
    frac = patch_tissue_fraction(slide, grid, level=0)
    expected = np.zeros((8, 12))
    expected[2:6, 3:9] = 1.0
    np.testing.assert_allclose(frac, expected, atol=0.05)  # the mask's edges blur ~2 mask px
    np.testing.assert_array_equal(patch_tissue_mask(slide, grid, 0, 0.5), expected > 0.5)
    # the same patches on level 1
    coarse = PatchGrid(400, 600, 50, 50)
    np.testing.assert_allclose(patch_tissue_fraction(slide, coarse, level=1), frac, atol=1e-6)


def test_mask_level_is_fine_enough_for_the_patches(monkeypatch):
    slide = two_level_slide()
    monkeypatch.setattr(tissue, "TISSUE_MASK_MIN_PX", 500)
    assert choose_mask_level(slide, PatchGrid(800, 1200, 6, 6)) == 0  # 6 px patches
    assert choose_mask_level(slide) == 1


def test_large_level_is_subsampled(monkeypatch):
    monkeypatch.setattr(tissue, "TISSUE_MASK_MAX_PX", 300)
    mask, ds = slide_tissue_mask(synthetic_slide())  # 400 x 600 -> every 2nd pixel
    assert mask.shape == (200, 300) and ds == (2.0, 2.0)
    assert mask[55:145, 80:220].all() and not mask[:45].any()


class Unreadable:
    """A level that fails the test when read."""

    def __init__(self, shape=(100, 100, 3)):
        self.shape = shape

    def __getitem__(self, key):
        raise AssertionError("read")


def test_threshold_zero_reads_nothing():
    slide = FakeSlide([Unreadable()], [(1.0, 1.0)])
    grid = PatchGrid(100, 100, 10, 10)
    assert patch_tissue_mask(slide, grid, 0, 0.0).all()
    with pytest.raises(ValueError, match="between 0 and 1"):
        patch_tissue_mask(slide, grid, 0, 1.5)
    with pytest.raises(ValueError, match="level=3 does not exist"):
        patch_tissue_fraction(slide, grid, 3)


# --- the status line's estimate ----------------------------------------------------------------
def test_level_mask_is_the_runs_mask_within_a_read_bound(monkeypatch):
    slide = two_level_slide()  # level 1: 400 x 600 px
    mask, ds = tissue_level_mask(slide, 1)
    want, want_ds = slide_tissue_mask(slide, level=1)
    np.testing.assert_array_equal(mask, want)
    assert ds == want_ds == (2.0, 2.0) and mask.any() and not mask.all()
    monkeypatch.setattr(tissue, "TISSUE_ESTIMATE_MAX_READ_PX", 400 * 600)
    assert tissue_level_mask(slide, 1) is not None
    monkeypatch.setattr(tissue, "TISSUE_ESTIMATE_MAX_READ_PX", 400 * 600 - 1)
    unread = FakeSlide([Unreadable((800, 1200, 3)), Unreadable((400, 600, 3))],
                       [(1.0, 1.0), (2.0, 2.0)])
    assert tissue_level_mask(unread, 1) is None  # past the bound: nothing read


def test_grid_status_counts_the_patches_the_run_computes():
    """The share is of patches at least TISSUE_SHOWN_FRACTION tissue whatever the threshold;
    "to run" counts those at the threshold (and inside the region)."""
    grid = PatchGrid(40, 30, 10, 10)  # 4 x 3 patches
    fraction = np.array([[0.0, 0.2, 0.5], [0.6, 1.0, 0.4], [0.1, 0.9, 0.5], [0.0, 0.0, 0.7]])
    assert TISSUE_SHOWN_FRACTION == 0.5  # 6 of the 12 patches
    assert grid_status(grid, None, 0.5) == "4 x 3 = 12 patches"
    assert grid_status(grid, fraction, 0.0) == "4 x 3 = 12 patches, 50% tissue"
    assert grid_status(grid, fraction, 0.2) == "4 x 3 = 12 patches, 50% tissue, 8 to run"
    assert grid_status(grid, fraction, 0.9) == "4 x 3 = 12 patches, 50% tissue, 2 to run"
    inside = np.zeros(grid.shape, bool)
    inside[:2] = True
    assert grid_status(grid, None, 0.5, inside) == \
        "4 x 3 = 12 patches, 6 in the region, 6 to run"
    assert grid_status(grid, fraction, 0.5, inside) == \
        "4 x 3 = 12 patches, 6 in the region, 50% tissue, 3 to run"
    assert grid_status(grid, fraction, 0.0, inside) == \
        "4 x 3 = 12 patches, 6 in the region, 50% tissue, 6 to run"
    big = PatchGrid(4000, 3000, 1, 1)
    assert grid_status(big, None, 0.5) == "4,000 x 3,000 = 12,000,000 patches"


def test_tissue_module_does_not_import_tensorflow():
    code = ("import sys, numpy as np, napari_patchheat.tissue as t; "
            "t.tissue_mask(np.full((8, 8, 3), 200, np.uint8)); "
            "assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- fluorescence -------------------------------------------------------------------------------
def fluorescence_image(background=4.0, noise=1.0, glow=14.0, nuclei=160.0, *, fraction=0.35,
                       shape=(600, 800), seed=0):
    """A dark-background (DAPI-like) image, RGB uint8, and its known tissue region, bool (H, W).

    Glass at ``background`` grey levels (Gaussian noise of sd ``noise``); an ellipse covering
    ``fraction`` of the image glows at ``glow`` and holds nuclei (discs of radius 3 px) at
    ``nuclei``. Blue carries the signal, green a quarter of it, red nothing (as the real NDPI).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    scale = np.sqrt(fraction / np.pi)  # semi-axes h * scale, w * scale: area fraction * h * w
    region = ((yy - h / 2) / (h * scale)) ** 2 + ((xx - w / 2) / (w * scale)) ** 2 <= 1
    signal = np.where(region, glow, background) + rng.normal(0.0, noise, shape)
    room = ndimage.binary_erosion(region, iterations=4)
    centres = np.zeros(shape, bool)
    centres.flat[rng.choice(np.flatnonzero(room), room.sum() // 150, replace=False)] = True
    disc = np.hypot(*np.mgrid[-3:4, -3:4]) <= 3
    signal[ndimage.binary_dilation(centres, disc)] = nuclei
    grey = np.clip(np.round(signal), 0, 255).astype(np.uint8)
    return np.stack([np.zeros_like(grey), grey // 4, grey], axis=-1), region


@pytest.mark.parametrize(
    ("background", "noise", "glow", "nuclei", "fraction"),
    [
        (4, 1, 14, 160, 0.35),  # DAPI, as on the real NDPI
        (4, 1, 14, 160, 0.75),  # tissue over most of the slide
        (30, 3, 45, 200, 0.35),  # glass well above black (camera offset, glowing glass)
        (1, 0.5, 8, 12, 0.35),  # faint: a 16-bit scan that uses a few of its 8-bit levels
    ],
)
def test_fluorescence_mask_is_the_bright_region(background, noise, glow, nuclei, fraction):
    rgb, region = fluorescence_image(background, noise, glow, nuclei, fraction=fraction)
    assert is_fluorescence(rgb)
    mask = tissue_mask(rgb)
    inside = ndimage.binary_erosion(region, iterations=4)
    outside = ~ndimage.binary_dilation(region, iterations=4)
    assert mask[inside].mean() > 0.99 and mask[outside].mean() < 0.01


def test_fluorescence_slide_patches(slide_writer, monkeypatch):
    """A 16-bit grey OME-TIFF pyramid: detected on its coarsest level, masked on another."""
    rgb, region = fluorescence_image(shape=(1200, 1600), seed=3)
    path, _ = slide_writer("dapi.ome.tif", rgb[..., 2].astype(np.uint16) * 257, levels=3,
                           compression="zlib")
    monkeypatch.setattr(tissue, "TISSUE_MASK_MIN_PX", 500)
    grid = PatchGrid(1200, 1600, 64, 64)
    with open_slide(path) as slide:
        assert len(slide.levels) == 3 and is_fluorescence(slide)
        assert choose_mask_level(slide, grid) == 1
        fraction = patch_tissue_fraction(slide, grid, 0)
    blocks = region[: grid.rows * 64, : grid.cols * 64].reshape(grid.rows, 64, grid.cols, 64)
    covered = blocks.mean(axis=(1, 3))
    assert (covered == 1).sum() > 50 and (covered == 0).sum() > 50
    assert fraction[covered == 1].min() > 0.95 and fraction[covered == 0].max() < 0.05


def test_brightfield_with_black_fill_stays_brightfield(real_pixels):
    """A scanner's black fill over most of the image does not make an H&E slide fluorescence."""
    he = real_pixels[::4, ::4]
    image = np.zeros((he.shape[0], he.shape[1] * 9 // 4, 3), np.uint8)  # 5/9 of it black fill
    image[:, : he.shape[1]] = he
    assert not is_fluorescence(image)
    brightfield = tissue_mask(image, mode="brightfield")
    assert not np.array_equal(brightfield, tissue_mask(image, mode="fluorescence"))
    np.testing.assert_array_equal(tissue_mask(image), brightfield)


def test_real_slides_are_recognised(ndpi_path, svs_path, ihc_png_path):
    for path, fluorescence in ((ndpi_path, True), (svs_path, False), (ihc_png_path, False)):
        with open_slide(path) as slide:
            assert is_fluorescence(slide) is fluorescence, path.name


def test_is_fluorescence_reads_only_the_coarsest_level():
    rgb, _ = fluorescence_image()
    assert is_fluorescence(FakeSlide([Unreadable((2400, 3200, 3)), rgb], [(1, 1), (4, 4)]))
    white = np.full((600, 800, 3), 240, np.uint8)
    assert not is_fluorescence(FakeSlide([Unreadable((2400, 3200, 3)), white], [(1, 1), (4, 4)]))


def test_ndpi_glass_is_not_tissue(ndpi_path):
    """The issue's grid (224 px at level 0, 21 x 17 patches) on the DAPI NDPI: patches of glass
    only (as tifffile reads the file) are background; every bright nucleus is tissue."""
    import tifffile

    with tifffile.TiffFile(ndpi_path) as tif:
        brightest = tif.series[0].levels[2].asarray().max(axis=2)  # level 2: 4x downsampled
    glass_max = np.percentile(brightest[:150, :150], 99.9)  # the top-left corner is bare glass
    with open_slide(ndpi_path) as slide:
        assert is_fluorescence(slide)
        grid = PatchGrid(*slide.shape, 224, 224)
        fraction = patch_tissue_fraction(slide, grid, 0)
        mask, mask_ds = slide_tissue_mask(slide)
    assert grid.shape == (21, 17) and mask_ds == (4.0, 4.0) and mask.shape == brightest.shape
    side = 224 // 4
    blocks = brightest[: grid.rows * side, : grid.cols * side]
    blocks = blocks.reshape(grid.rows, side, grid.cols, side)
    glass_only = np.percentile(blocks, 99, axis=(1, 3)) <= glass_max
    assert glass_only.sum() >= 20 and not glass_only.all()
    assert fraction[glass_only].mean() < 0.5 and fraction[glass_only].max() < 0.05
    nuclei = brightest > 100
    assert nuclei.mean() > 0.05 and mask[nuclei].mean() > 0.99
    assert not mask[:150, :150].any()


def test_fluorescence_warning_names_the_model():
    text = FLUORESCENCE_MODEL_WARNING.format(model="hematoxylin")
    assert "'hematoxylin'" in text and "fluorescence" in text and "brightfield" in text
    assert text.endswith(".") and text.count(". ") == 0
