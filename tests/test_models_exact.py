"""Built-in models: values are exact fractions, bit-identical however a run is split.

A built-in's value is a count of pixels over a count of samples; it must not depend on the
batch a patch meets the model in (its size, its padded patches), on the run's region of
interest or tissue threshold, or on the extraction backend.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")

from skimage import color  # noqa: E402

from napari_patchheat import compute_heatmap, load_model  # noqa: E402
from napari_patchheat.heatmap import Heatmap  # noqa: E402
from napari_patchheat.models import BUILTIN_MODELS, PatchModel, stain  # noqa: E402
from napari_patchheat.options import RunOptions  # noqa: E402

SVS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "CMU-1-Small-Region.svs"
MARGIN = 0.005  # rgb2hed units: palette colours this far from a threshold count the same anywhere


@functools.cache
def builtin(name: str) -> PatchModel:
    """One loaded built-in per test session, so its compiled shapes are reused."""
    return load_model(name)


def nearest_float32(q: Fraction) -> np.float32:
    """The float32 nearest ``q`` (ties to even), found by exact comparison of neighbours."""
    guess = np.float32(float(q))
    candidates = [np.nextafter(guess, np.float32(-1)), guess, np.nextafter(guess, np.float32(2))]
    return min(candidates, key=lambda f: (abs(Fraction(float(f)) - q),
                                          int(np.array(f).view(np.int32)) & 1))


def assert_same(a: Heatmap, b: Heatmap) -> int:
    """Patches computed by both heatmaps have bit-identical values; returns how many."""
    both = a.computed & b.computed
    x, y = a.values[both], b.values[both]
    assert x.dtype == y.dtype == np.float32
    assert np.array_equal(x, y, equal_nan=True), (
        f"{int(np.sum(x != y))} of {int(both.sum())} values differ, by up to "
        f"{np.nanmax(np.abs(x - y)):.3g}")
    return int(both.sum())


# --- exact fractions ------------------------------------------------------------------------------
@functools.cache
def palette(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Colours built-in ``name`` counts (positive) and does not (negative), each at least
    MARGIN from its threshold by skimage's float64 rgb2hed."""
    rgb = np.random.default_rng(3).integers(0, 256, (4096, 3), dtype=np.uint8)
    if name == "tissue":
        od = np.log(np.maximum(rgb / 255.0, 1e-6)) / np.log(1e-6)
        score, threshold = od.sum(axis=1), stain.TISSUE_OD_SUM
    else:
        score = color.rgb2hed(rgb[None])[0, :, stain.STAIN_INDEX[name]]
        threshold = stain.POSITIVE_OD[name]
    positive, negative = rgb[score > threshold + MARGIN], rgb[score < threshold - MARGIN]
    assert len(positive) > 10 and len(negative) > 10
    return positive, negative


def counted_patches(name: str, n: int, h: int, w: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` patches of palette colours and, per pixel, whether ``name`` counts it."""
    rng = np.random.default_rng(seed)
    positive, negative = palette(name)
    share = rng.random((n, 1, 1))  # each patch its own share of counted pixels
    counted = rng.random((n, h, w)) < share
    x = negative[rng.integers(0, len(negative), (n, h, w))]
    x[counted] = positive[rng.integers(0, len(positive), int(counted.sum()))]
    return x, counted


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtin_values_are_the_nearest_float32_to_the_exact_fraction(name):
    model = builtin(name)
    for n, h, w, seed in [(40, 224, 224, 1), (25, 17, 41, 2), (9, 3, 5, 3)]:
        x, counted = counted_patches(name, n, h, w, seed)
        exact = [nearest_float32(Fraction(int(c.sum()), h * w)) for c in counted]
        assert len(set(exact)) > n // 2  # the reference varies across patches
        out = model.predict(x)[:, 0]
        np.testing.assert_array_equal(out, np.array(exact, np.float32))
        # the same patches one at a time, in a batch of 256, and with an all-True inside mask
        np.testing.assert_array_equal(np.concatenate([model.predict(p[None]) for p in x[:5]])[:, 0],
                                      out[:5])
        big = np.concatenate([x, np.zeros((256 - n, h, w, 3), np.uint8)])
        np.testing.assert_array_equal(model.predict(big)[:n, 0], out)
        every = np.ones((n, h), bool), np.ones((n, w), bool)
        np.testing.assert_array_equal(model.predict(x, every)[:, 0], out)
        # inside masks: the fraction of the counted samples inside
        rng = np.random.default_rng(seed)
        rows, cols = rng.random((n, h)) < 0.7, rng.random((n, w)) < 0.7
        rows[:, 0] = cols[:, 0] = True
        inside = rows[:, :, None] & cols[:, None, :]
        exact = [nearest_float32(Fraction(int((c & m).sum()), int(m.sum())))
                 for c, m in zip(counted, inside)]
        np.testing.assert_array_equal(model.predict(x, (rows, cols))[:, 0],
                                      np.array(exact, np.float32))


def test_the_exact_reference_rounds_to_nearest_even():
    """The exact reference rounds 2248/50176 (the tester's patch) and ties as IEEE does."""
    assert nearest_float32(Fraction(2248, 50176)) == np.float32(2248) / np.float32(50176)
    assert nearest_float32(Fraction(2248, 50176)) != np.float32(2248) * (1 / np.float32(50176))
    tie = Fraction(2**24 + 1, 2**24)  # halfway between 1 and the next float32: to even, 1
    assert nearest_float32(tie) == np.float32(1)


# --- the tester's case: a real slide, SAME padding ------------------------------------------------
@pytest.mark.skipif(not SVS.exists(), reason=f"real slide {SVS} is absent")
def test_full_roi_and_tissue_runs_of_a_real_slide_agree_bit_for_bit():
    import shapely

    opts = RunOptions(size=224, stride=224, padding="SAME", use_cache=False)
    model = builtin("dab")
    full = compute_heatmap(SVS, model, options=opts)
    assert full.grid.pad_before != (0, 0) and full.n_computed == full.grid.n_patches
    assert np.nanstd(full.values) > 0.01  # the values vary
    runs = {
        "roi": compute_heatmap(SVS, model, options=opts,
                               roi=shapely.box(0, 600, 1500, 2967)),  # (x0, y0, x1, y1)
        "tissue": compute_heatmap(SVS, model, options=opts, tissue_threshold=0.3),
        "batch 1": compute_heatmap(SVS, model, options=opts, batch_size=1),
        "batch 256": compute_heatmap(SVS, model, options=opts, batch_size=256),
        "numpy": compute_heatmap(SVS, model, options=opts, backend="numpy", batch_size=7),
        "tf": compute_heatmap(SVS, model, options=opts, backend="tf", batch_size=13),
    }
    for what, run in runs.items():
        assert 0 < run.n_computed, what
        assert assert_same(full, run) == run.n_computed, what
    assert runs["roi"].n_computed < full.n_computed and runs["tissue"].n_computed < full.n_computed
    # every patch wholly inside has 50,176 samples: its value is the float32 nearest some
    # count / 50176 (version 2 multiplied by float32(1/50176) where the batch had no padding)
    whole = full.values[1:-1, 1:-1, 0].ravel()
    counts = np.rint(whole.astype(np.float64) * 224 * 224).astype(int)
    exact = np.array([nearest_float32(Fraction(int(c), 224 * 224)) for c in counts])
    np.testing.assert_array_equal(whole, exact)


# --- property: however the run is split ---------------------------------------------------------
@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slides")


@st.composite
def small_slides(draw: st.DrawFn) -> np.ndarray:
    """A small white RGB image with a few rectangles of random colours (tissue and glass)."""
    h, w = draw(st.integers(12, 48)), draw(st.integers(12, 48))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), 255, np.uint8)
    for _ in range(draw(st.integers(1, 4))):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = y0 + rng.integers(2, h), x0 + rng.integers(2, w)
        block = image[y0:y1, x0:x1]
        block[:] = rng.integers(0, 256, block.shape, dtype=np.uint8)
    return image


@settings(max_examples=15, deadline=None)
@given(image=small_slides(), name=st.sampled_from(BUILTIN_MODELS),
       size=st.integers(3, 11), stride=st.integers(2, 9), rate=st.integers(1, 2),
       batch_size=st.sampled_from([1, 5, 256]), backend=st.sampled_from(["numpy", "tf"]),
       roi_seed=st.integers(0, 2**16), threshold=st.sampled_from([0.05, 0.5, 0.95]))
def test_builtin_values_are_bit_identical_however_the_run_is_split(
        scratch, image, name, size, stride, rate, batch_size, backend, roi_seed, threshold):
    import tifffile

    path = scratch / f"{roi_seed}-{image.shape[0]}x{image.shape[1]}.tif"
    tifffile.imwrite(path, image, photometric="rgb")
    opts = RunOptions(size=size, stride=stride, rate=rate, padding="SAME", use_cache=False)
    model = builtin(name)
    full = compute_heatmap(path, model, options=opts)
    blocks = np.random.default_rng(roi_seed).random((4, 4)) < 0.5  # 4 x 4 blocks of the slide
    h, w = image.shape[:2]
    roi = blocks[np.arange(h) * 4 // h][:, np.arange(w) * 4 // w]  # a mask of the slide's shape
    for split in [dict(batch_size=batch_size, backend=backend),
                  dict(roi=roi, roi_centre=True, batch_size=batch_size),
                  dict(tissue_threshold=threshold, batch_size=batch_size, backend=backend)]:
        assert_same(full, compute_heatmap(path, model, options=opts, **split))


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtins_traced_without_autograph_give_autographs_values(name, real_pixels):
    """The built-ins are traced without AutoGraph (their first batch ~0.25 s sooner): the
    values, with and without an inside mask, of the function AutoGraph converts."""
    import tensorflow as tf

    model = stain.load_builtin(name)
    assert model.autograph is False
    x = real_pixels[:512, :512].reshape(8, 64, 8, 64, 3).swapaxes(1, 2).reshape(64, 64, 64, 3)
    rng = np.random.default_rng(0)
    inside = rng.random((64, 64)) < 0.8, rng.random((64, 64)) < 0.8
    converted = tf.function(model._forward, jit_compile=True, autograph=True)
    for mask in (None, inside):
        want = converted(tf.constant(x), mask).numpy()
        assert np.nanstd(want) > 0  # the reference varies
        np.testing.assert_array_equal(model.predict(x, mask), want)
