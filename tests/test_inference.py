"""The run: heatmap == model.predict on TensorFlow's own patches; tissue skipping; cancel/resume;
errors keep the partial heatmap."""

import dataclasses
import functools
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from napari_patchheat import PatchGrid, compute_heatmap, load_model, open_slide
from napari_patchheat.inference import HeatmapRun, Progress, RunError
from napari_patchheat.models import BUILTIN_MODELS
from napari_patchheat.options import RunOptions

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SVS = REAL / "CMU-1-Small-Region.svs"
needs_svs = pytest.mark.skipif(not SVS.exists(), reason=f"real slide {SVS} is absent")
CLASSES = ["stroma", "tumour", "other"]


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory) -> Path:
    """A small random CNN (64 x 64 RGB -> 3 classes) saved as .keras, with a model card."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((64, 64, 3)),
        keras.layers.Conv2D(4, 5, strides=4, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    model.save(path)
    path.with_suffix(".json").write_text(json.dumps(
        {"class_names": CLASSES, "preprocessing": "0..1", "input_size": [64, 64]}))
    return path


def reference(level: np.ndarray, grid: PatchGrid, cnn_path: Path) -> np.ndarray:
    """model.predict on patches from one whole-level tf.image.extract_patches call."""
    patches = tf.image.extract_patches(level[None], [1, *grid.size, 1], [1, *grid.stride, 1],
                                       [1, *grid.rate, 1], grid.padding).numpy()[0]
    patches = patches.reshape(grid.rows * grid.cols, *grid.size, 3).astype(np.float32) / 255
    model = keras.models.load_model(cnn_path)
    return model.predict(patches, verbose=0).reshape(grid.rows, grid.cols, -1)


@needs_svs
@pytest.mark.parametrize("backend", ["numpy", "tf"])  # "tf": patches stay on TF's device
@pytest.mark.parametrize("stride, rate, padding", [(64, 1, "VALID"), (48, 2, "SAME")])
def test_heatmap_equals_model_on_tensorflow_patches(cnn_path, tmp_path, stride, rate, padding,
                                                    backend):
    with open_slide(SVS) as slide:
        level = np.asarray(slide.levels[0])
        h = compute_heatmap(slide, load_model(cnn_path), level=0, size=64, stride=stride,
                            rate=rate, padding=padding, batch_size=50, cache_dir=tmp_path,
                            block_px=700, backend=backend)
    assert h.class_names == tuple(CLASSES)
    assert h.grid == PatchGrid(*level.shape[:2], 64, stride, rate, padding)
    assert h.n_computed == h.grid.n_patches
    np.testing.assert_allclose(h.values, reference(level, h.grid, cnn_path), rtol=1e-4, atol=1e-6)
    assert h.mpp == pytest.approx((0.499, 0.499))


@needs_svs
@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_background_is_skipped_and_nan(cnn_path, tmp_path, backend):
    with open_slide(SVS) as slide:
        level = np.asarray(slide.levels[0])
        run = HeatmapRun(slide, cnn_path, RunOptions(size=64, stride=64, tissue_threshold=0.5,
                                                     cache_dir=tmp_path, backend=backend))
        keep = run.tissue >= 0.5
        assert 0.1 < keep.mean() < 0.95  # the region has both tissue and glass
        list(run.run())
        h = run.result()
    assert (h.computed == keep).all()
    assert np.isnan(h.values[~keep]).all()
    ref = reference(level, h.grid, cnn_path)
    np.testing.assert_allclose(h.values[keep], ref[keep], rtol=1e-4, atol=1e-6)


@pytest.fixture()
def ihc_tif(tmp_path) -> Path:
    """The real IHC image (scikit-image's) as a TIFF the slide reader opens."""
    import skimage.data
    import tifffile

    path = tmp_path / "ihc.tif"
    tifffile.imwrite(path, skimage.data.immunohistochemistry(), photometric="rgb")
    return path


def test_cancel_then_resume_equals_one_run_and_computes_only_the_rest(ihc_tif, tmp_path):
    opts = dict(size=32, stride=16, batch_size=16, cache_dir=tmp_path / "cache")
    whole = compute_heatmap(ihc_tif, "dab", use_cache=False, **opts)
    n = whole.grid.n_patches

    cancel = threading.Event()
    seen = []

    def stop_after_three(p):
        seen.append(p.done)
        if len(seen) == 3:
            cancel.set()

    partial = compute_heatmap(ihc_tif, "dab", cancel=cancel, on_progress=stop_after_three, **opts)
    assert partial.n_computed == 48 and seen == [16, 32, 48]
    np.testing.assert_array_equal(partial.values[partial.computed], whole.values[partial.computed])

    run = HeatmapRun(ihc_tif, "dab", RunOptions(**opts))
    assert run.todo.sum() == n - 48  # the cache holds the first 48
    done = [p.done for p in run.run()][-1]
    assert done == n - 48
    np.testing.assert_allclose(run.result().values, whole.values, rtol=1e-6)
    assert HeatmapRun(ihc_tif, "dab", RunOptions(**opts)).todo.sum() == 0  # a third: nothing to do


def test_cache_is_keyed_by_grid_and_model(ihc_tif, tmp_path):
    def key(model="dab", **fields):
        return HeatmapRun(ihc_tif, model, RunOptions(size=32, cache_dir=tmp_path, **fields)).key

    a = key(stride=16)
    assert a != key(stride=8)
    assert a != key(stride=16, padding="SAME")
    assert a != key("tissue", stride=16)
    assert a == key(stride=16)


def test_keywords_override_the_options_given(ihc_tif):
    options = RunOptions(size=32, stride=64, use_cache=False)
    h = compute_heatmap(ihc_tif, "dab", options=options, stride=32)
    assert h.grid.stride == (32, 32) and options.stride == (64, 64)
    np.testing.assert_array_equal(
        h.values, compute_heatmap(ihc_tif, "dab", size=32, stride=32, use_cache=False).values)


def test_dab_heatmap_is_higher_on_brown_than_on_blue(ihc_tif, tmp_path):
    import skimage.color
    import skimage.data

    h = compute_heatmap(ihc_tif, "dab", size=32, stride=32, use_cache=False)
    hed = skimage.color.rgb2hed(skimage.data.immunohistochemistry())
    # per-patch mean DAB and haematoxylin optical density, from scikit-image alone
    dab = hed[..., 2].reshape(16, 32, 16, 32).mean(axis=(1, 3))
    hem = hed[..., 0].reshape(16, 32, 16, 32).mean(axis=(1, 3))
    brown = dab > np.quantile(dab, 0.8)
    blue = (hem > np.quantile(hem, 0.8)) & (dab < np.quantile(dab, 0.3))
    assert brown.sum() > 5 and blue.sum() > 5
    assert np.nanmean(h.values[brown, 0]) > 2 * np.nanmean(h.values[blue, 0])


class NaNModel:
    """A model that fails after its first batch (outputs NaN), as a real user model can."""

    def __init__(self):
        self.inner = load_model("dab")
        self.name, self.class_names, self.input_size = "nan", self.inner.class_names, None
        self.fingerprint, self.mpp, self.calls = "nan-model", None, 0

    def check_patch_size(self, size):
        return None

    def predict(self, batch):
        self.calls += 1
        out = self.inner.predict(batch)
        if self.calls > 1:
            return self.inner.validate_output(np.full_like(out, np.nan))
        return out


def test_a_failing_model_keeps_the_partial_heatmap_and_the_cache(ihc_tif, tmp_path):
    with pytest.raises(RunError, match="NaN|non-finite|infinite") as info:
        compute_heatmap(ihc_tif, NaNModel(), size=32, stride=32, batch_size=10, cache_dir=tmp_path,
                        backend="numpy")  # a host-only stand-in: no tf_predict, also on a GPU
    assert info.value.heatmap.n_computed == 10
    run = HeatmapRun(ihc_tif, "dab", RunOptions(size=32, stride=32, batch_size=10,
                                                cache_dir=tmp_path))
    assert run.todo.sum() == 256  # another model: its own cache, untouched
    again = HeatmapRun(ihc_tif, NaNModel(), RunOptions(size=32, stride=32, cache_dir=tmp_path))
    assert again.todo.sum() == 256 - 10


def test_a_slide_that_breaks_mid_run_is_one_clear_error(tmp_path):
    import skimage.data
    import tifffile

    path = tmp_path / "big.tif"
    img = np.tile(skimage.data.immunohistochemistry(), (4, 4, 1))
    tifffile.imwrite(path, img, tile=(256, 256), photometric="rgb", compression="zlib")
    run = HeatmapRun(path, "dab", RunOptions(size=64, stride=64, batch_size=8, use_cache=False),
                     block_px=256)
    it = run.run()
    next(it)
    with open(path, "r+b") as f:  # the file is overwritten under the reader
        f.truncate(4096)
    with pytest.raises(RunError, match="big.tif") as info:
        list(it)
    assert info.value.heatmap.n_computed >= 8
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(level=5), "level=5 does not exist"), (dict(batch_size=0), "batch_size=0"),
     (dict(tissue_threshold=1.5), "tissue_threshold=1.5"), (dict(stride=0), "stride=0"),
     (dict(size=600), "No patch fits")],
)
def test_bad_parameters(ihc_tif, kwargs, message):
    with pytest.raises(ValueError, match=message):
        HeatmapRun(ihc_tif, "dab", RunOptions(**{"size": 32, **kwargs}))


def test_patch_size_must_fit_the_model(cnn_path, ihc_tif):
    with pytest.raises(ValueError, match="64"):
        HeatmapRun(ihc_tif, cnn_path, RunOptions(size=32, use_cache=False))
    run = HeatmapRun(ihc_tif, cnn_path, RunOptions(size=32, resize=True, use_cache=False))
    assert run.grid.size == (32, 32)


def test_copying_the_slide_keeps_its_identity_apart(ihc_tif, tmp_path):
    other = tmp_path / "copy.tif"
    shutil.copy(ihc_tif, other)
    with open_slide(ihc_tif) as a, open_slide(other) as b:
        assert a.identity != b.identity


@needs_svs
def test_mixed_precision_run_is_close_to_float32_and_cached_apart(cnn_path, tmp_path):
    full_options = RunOptions(size=64, stride=96, cache_dir=tmp_path, backend="tf")
    mixed_options = dataclasses.replace(full_options, mixed_precision=True)
    with open_slide(SVS) as slide:
        full = HeatmapRun(slide, cnn_path, full_options)
        mixed = HeatmapRun(slide, cnn_path, mixed_options)
        assert mixed.model.precision == "mixed_float16" and mixed.key != full.key
        for run in (full, mixed):
            list(run.run())
        with pytest.raises(ValueError, match="was loaded in float32: load it with"):
            HeatmapRun(slide, load_model(cnn_path), mixed_options)
        with pytest.raises(ValueError, match=r"'dab' \(builtin\) runs in float32 only: turn "
                                             r"mixed precision off\.$"):
            HeatmapRun(slide, load_model("dab"), mixed_options)
    a, b = full.result(), mixed.result()
    assert a.n_computed == b.n_computed == a.grid.n_patches
    diff = np.abs(a.values - b.values).max()
    assert 0 < diff < 5e-3, diff


def memory_hungry_model(fits: int, jit_compile: bool = False):
    """A PatchModel that runs out of TensorFlow memory on more than ``fits`` patches at once, as
    a large model on a small GPU does (a real out-of-memory cannot be provoked safely here);
    it returns each patch's mean RGB, 0..1."""
    from napari_patchheat.models import PatchModel

    def forward(x):
        if x.shape[0] > fits:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2]) / 255

    return PatchModel(forward, name=f"fits{fits}", class_names=["r", "g", "b"],
                      input_size=None, fingerprint=f"memory-hungry-{fits}",
                      jit_compile=jit_compile)


@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_out_of_memory_halves_the_batch_until_it_fits(ihc_tif, tmp_path, backend):
    import skimage.data

    options = RunOptions(size=32, stride=32, batch_size=24, cache_dir=tmp_path, backend=backend)
    run = HeatmapRun(ihc_tif, memory_hungry_model(fits=5, jit_compile=True), options)
    list(run.run())
    assert run.model_batch_size == 3  # 24 -> 12 -> 6 -> 3
    assert run.model.jit_compile  # running out of memory is not XLA failing
    ihc = skimage.data.immunohistochemistry().astype(np.float64)
    ref = ihc.reshape(16, 32, 16, 32, 3).mean(axis=(1, 3)) / 255
    np.testing.assert_allclose(run.result().values, ref, rtol=1e-5)


def test_out_of_memory_for_one_patch_is_one_clear_error(ihc_tif, tmp_path):
    with pytest.raises(RunError, match=r"^out of memory while running the model on ihc.tif even "
                                       r"one patch at a time: use smaller patches or a smaller "
                                       r"model\.$") as info:
        compute_heatmap(ihc_tif, memory_hungry_model(fits=0), size=32, stride=32, batch_size=4,
                        cache_dir=tmp_path)
    assert info.value.heatmap.n_computed == 0


def test_out_of_memory_outside_the_model_asks_for_smaller_batches(ihc_tif):
    from napari_patchheat.inference import _describe

    exc = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
    assert _describe(exc, ihc_tif) == ("out of memory while running the model on ihc.tif: lower "
                                       "the batch size or the patch size.")


def test_reading_in_turn_ahead_or_on_a_thread_pool_gives_the_same_heatmap(tmp_path,
                                                                         monkeypatch):
    """$PATCHHEAT_THREADS 1: blocks read in turn with the model (no read-ahead thread); 2 and 4:
    blocks read ahead on one thread and batches written on another, decoding on a pool of as
    many threads as the measured costs ask."""
    import skimage.data
    import tifffile

    import napari_patchheat.inference as inference

    path = tmp_path / "tiled.tif"
    img = np.tile(skimage.data.immunohistochemistry(), (2, 2, 1))
    tifffile.imwrite(path, img, tile=(128, 128), photometric="rgb", compression="zlib")
    opts = dict(size=48, stride=40, padding="SAME", batch_size=16, use_cache=False, block_px=300)
    ahead = []

    class Watched(inference.Prefetch):
        def __init__(self, *args):
            ahead.append(threading.current_thread())
            super().__init__(*args)

    monkeypatch.setattr(inference, "Prefetch", Watched)
    heatmaps = {}
    for threads in ("1", "2", "4"):
        monkeypatch.setenv("PATCHHEAT_THREADS", threads)
        assert inference.run_threads() == int(threads)
        heatmaps[threads] = compute_heatmap(path, "dab", **opts)
    assert len(ahead) == 4  # two stages ahead with 2 and 4 threads, none with one
    one = heatmaps["1"]
    assert one.n_computed == one.grid.n_patches and np.nanstd(one.values) > 0.01
    for threads in ("2", "4"):
        np.testing.assert_array_equal(heatmaps[threads].values, one.values)


def test_run_threads_defaults_to_the_cpus_the_process_may_use(monkeypatch):
    import os

    from napari_patchheat.inference import run_threads

    monkeypatch.delenv("PATCHHEAT_THREADS", raising=False)
    assert run_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("PATCHHEAT_THREADS", "two")
    with pytest.raises(ValueError, match="PATCHHEAT_THREADS='two' is not a whole number"):
        run_threads()


# --- SAME padding: built-ins count only the samples inside the level ----------------------------
THRESHOLD_BAND = 1e-5  # pixels this close to a threshold may go either way (float32 vs float64)


def write_tif(path: Path, image: np.ndarray) -> Path:
    import tifffile

    tifffile.imwrite(path, image, photometric="rgb")
    return path


def tf_same_patches(image: np.ndarray, size: int, stride: int, rate: int) -> np.ndarray:
    """tf.image.extract_patches of (H, W, C) with SAME padding: (rows, cols, size * size, C)."""
    out = tf.image.extract_patches(image[None], [1, size, size, 1], [1, stride, stride, 1],
                                   [1, rate, rate, 1], "SAME").numpy()[0]
    return out.reshape(*out.shape[:2], size * size, image.shape[2])


def pixel_score(level: np.ndarray, name: str) -> tuple[np.ndarray, float]:
    """Per pixel, what built-in ``name`` thresholds (skimage's rgb2hed, or the summed optical
    density for tissue), and its threshold."""
    import skimage.color

    from napari_patchheat.models import stain

    if name == "tissue":
        od = np.log(np.maximum(level / 255.0, 1e-6)) / np.log(1e-6)
        return od.sum(-1), stain.TISSUE_OD_SUM
    return skimage.color.rgb2hed(level)[..., stain.STAIN_INDEX[name]], stain.POSITIVE_OD[name]


def in_level_fraction(level: np.ndarray, name: str, size: int, stride: int, rate: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bounds (lo, hi) of built-in ``name`` on TensorFlow's SAME patches counted over the
    samples that are level pixels (found by their coordinates), NaN where a patch has none;
    and the fraction of each patch's samples inside the level."""
    h, w = level.shape[:2]
    coords = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1) + 1
    yx = tf_same_patches(coords.astype(np.int32), size, stride, rate) - 1  # padding: -1
    inside = ((yx >= 0) & (yx < (h, w))).all(-1)
    score, threshold = pixel_score(level, name)
    value = tf_same_patches(score[..., None], size, stride, rate)[..., 0]
    with np.errstate(invalid="ignore"):
        lo, hi = (((value > threshold + band) & inside).sum(-1) / inside.sum(-1)
                  for band in (THRESHOLD_BAND, -THRESHOLD_BAND))
    return lo, hi, inside.mean(-1)


def assert_within(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """A heatmap's one class lies in [lo, hi] patch by patch, NaN exactly where they are."""
    v = values[..., 0]
    np.testing.assert_array_equal(np.isnan(v), np.isnan(lo))
    ok = np.isnan(lo) | ((lo - 1e-6 <= v) & (v <= hi + 1e-6))
    assert ok.all(), (np.argwhere(~ok)[:5], v[~ok][:5], lo[~ok][:5], hi[~ok][:5])


@pytest.mark.parametrize("backend", ["numpy", "tf"])
@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_same_padding_of_a_blank_slide_is_neither_stain_nor_tissue(tmp_path, name, backend):
    white = np.full((100, 100, 3), 255, np.uint8)
    black = (tf_same_patches(white, 64, 32, 1) == 0).all(-1).mean(-1)
    assert black[0, 0] > 0.7 and black[1, 1] == 0  # TF's corner patches are mostly padding
    h = compute_heatmap(write_tif(tmp_path / "white.tif", white), name, size=64, stride=32,
                        padding="SAME", batch_size=5, use_cache=False, backend=backend)
    assert h.grid.shape == (4, 4) and h.n_computed == 16
    np.testing.assert_array_equal(h.values, 0.0)


@pytest.mark.parametrize("backend", ["numpy", "tf"])
@pytest.mark.parametrize("name", ["tissue", "dab"])
def test_a_patch_of_padding_only_is_nan(tmp_path, name, backend):
    import skimage.data

    crop = skimage.data.immunohistochemistry()[288:300, 12:24]  # tissue, glass, brown, blue
    lo, hi, inside = in_level_fraction(crop, name, 2, 1, 20)
    # starts -10..1, samples 20 apart: patches 2..9 on either axis have no sample inside
    empty = np.zeros((12, 12), bool)
    empty[2:10], empty[:, 2:10] = True, True
    np.testing.assert_array_equal(inside == 0, empty)
    assert np.nanstd(lo) > 0.1  # the patches with samples inside vary
    h = compute_heatmap(write_tif(tmp_path / "crop.tif", crop), name, size=2, stride=1, rate=20,
                        padding="SAME", batch_size=7, use_cache=False, backend=backend)
    assert h.grid.shape == (12, 12)
    assert_within(h.values, lo, hi)


@functools.cache
def svs_reference(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with open_slide(SVS) as slide:
        level = np.asarray(slide.levels[0])
    return in_level_fraction(level, name, 64, 48, 2)


@needs_svs
@pytest.mark.parametrize("backend", ["numpy", "tf"])
@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_same_run_on_a_real_slide_counts_the_samples_inside(name, backend):
    lo, hi, inside = svs_reference(name)
    assert (inside < 1).sum() > 100 and np.nanstd(lo) > 0.1  # edges padded; values vary
    h = compute_heatmap(SVS, name, size=64, stride=48, rate=2, padding="SAME", batch_size=50,
                        use_cache=False, backend=backend, block_px=700)
    assert h.grid.shape == lo.shape and h.n_computed == lo.size
    assert_within(h.values, lo, hi)


@pytest.fixture(scope="module")
def flatten_path(tmp_path_factory) -> Path:
    """A Keras model whose outputs are its 8 x 8 RGB input, flattened: it shows what it sees."""
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()])
    path = tmp_path_factory.mktemp("model") / "flatten.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_a_user_model_sees_tensorflows_zero_padded_patches(tmp_path, flatten_path, backend):
    import skimage.data

    crop = skimage.data.immunohistochemistry()[200:240, 150:200]
    expected = tf_same_patches(crop, 8, 5, 2).reshape(8, 10, -1).astype(np.float32)
    padding = (expected.reshape(8, 10, 64, 3) == 0).all(-1)
    assert not (crop == 0).all(-1).any() and padding[0, 0].sum() > 20  # zeros are TF's padding
    assert expected.std() > 10
    h = compute_heatmap(write_tif(tmp_path / "crop.tif", crop), flatten_path, size=8, stride=5,
                        rate=2, padding="SAME", batch_size=7, use_cache=False, backend=backend)
    np.testing.assert_array_equal(h.values, expected)


@needs_svs
@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_valid_runs_of_builtins_equal_the_model_on_tensorflows_patches(backend):
    with open_slide(SVS) as slide:
        level = np.asarray(slide.levels[0])
    grid = PatchGrid(*level.shape[:2], 64, 48, 2, "VALID")
    patches = tf.image.extract_patches(level[None], [1, 64, 64, 1], [1, 48, 48, 1],
                                       [1, 2, 2, 1], "VALID").numpy()[0]
    patches = patches.reshape(-1, 64, 64, 3)
    for name in BUILTIN_MODELS:
        expected = load_model(name).predict(patches).reshape(*grid.shape, 1)
        assert expected.std() > 0.1
        h = compute_heatmap(SVS, name, size=64, stride=48, rate=2, batch_size=50,
                            use_cache=False, backend=backend, block_px=700)
        np.testing.assert_array_equal(h.values, expected)


def inside_mask_model(fits: int):
    """The ``dab`` built-in's function as a PatchModel that, like a large model on a small GPU,
    runs out of TensorFlow memory on more than ``fits`` patches at once."""
    from napari_patchheat.models import PatchModel, stain

    def forward(x, inside):
        if x.shape[0] > fits:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return stain.positive_fraction(x, "dab", inside)

    return PatchModel(forward, name=f"dab{fits}", class_names=["dab_positive"], input_size=None,
                      fingerprint=f"dab-fits-{fits}", input_dtype="uint8",
                      needs_inside_mask=True)


@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_out_of_memory_halving_keeps_the_inside_masks_with_their_patches(ihc_tif, backend):
    options = RunOptions(size=32, stride=24, rate=3, padding="SAME", batch_size=24,
                         use_cache=False, backend=backend)
    whole = HeatmapRun(ihc_tif, "dab", options)
    list(whole.run())
    run = HeatmapRun(ihc_tif, inside_mask_model(fits=5), options)
    list(run.run())
    assert run.model_batch_size == 3  # 24 -> 12 -> 6 -> 3
    expected = whole.result().values
    edge = np.ones(whole.grid.shape, bool)
    edge[3:-3, 3:-3] = False
    assert np.nanstd(expected[edge]) > 0.1 and np.isfinite(expected).all()
    np.testing.assert_array_equal(run.result().values, expected)


def test_progress_says_the_time_left_at_its_rate():
    empty = np.zeros((0, 2), np.int64)
    p = Progress(empty, np.zeros((0, 1), np.float32), done=30, total=130, elapsed_s=10.0)
    assert p.patches_per_s == 3.0 and p.eta_text == "0:33"  # 100 patches at 3/s
    assert Progress(empty, empty, done=0, total=5, elapsed_s=0.0).eta_text == "?"
    assert Progress(empty, empty, done=1, total=7201, elapsed_s=1.0).eta_text == "120:00"
