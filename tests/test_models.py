"""Models: loading Keras files and SavedModels with their cards, and the built-in stain models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from skimage import color, data  # noqa: E402

from napari_patchheat.models import (  # noqa: E402
    BUILTIN_MODELS,
    PREPROCESSING_FAMILIES,
    PatchModel,
    load_model,
    read_card,
    stain,
)
from napari_patchheat.models.patch_model import preprocess  # noqa: E402

IHC_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "ihc.png"
SIZE = 16


def small_cnn(classes: int = 3, size: int | None = SIZE, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def save(model: keras.Model, path: Path) -> Path:
    if path.suffix:
        model.save(path)
    else:
        model.export(path, verbose=False)
    return path


def write_card(path: Path, **card) -> Path:
    path.write_text(json.dumps(card))
    return path


@pytest.fixture(scope="module")
def cnn() -> keras.Model:
    return small_cnn()


@pytest.fixture(scope="module", params=["m.keras", "m.h5", "m_savedmodel"])
def saved(request, cnn, tmp_path_factory) -> Path:
    return save(cnn, tmp_path_factory.mktemp("models") / request.param)


def patches(n: int = 5, size: int = SIZE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# --- import hygiene -----------------------------------------------------------------------------
def test_importing_models_and_tissue_does_not_import_tensorflow():
    code = ("import sys; import napari_patchheat.models as m, napari_patchheat.tissue; "
            "assert m.BUILTIN_MODELS == ('tissue', 'hematoxylin', 'eosin', 'dab'); "
            "bad = [k for k in ('tensorflow', 'keras') if k in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- user models ----------------------------------------------------------------------------------
def test_load_each_format_matches_keras(saved, cnn):
    model = load_model(saved)
    assert isinstance(model, PatchModel)
    assert model.class_names == ("class_0", "class_1", "class_2")
    assert model.input_size == (SIZE, SIZE) and model.channels == 3 and model.mpp is None
    assert model.kind == {".keras": "keras", ".h5": "h5", "": "savedmodel"}[saved.suffix]
    x = patches()
    out = model.predict(x)
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_allclose(out, cnn(x.astype(np.float32)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.tf_predict(tf.constant(x)).numpy(), out, rtol=1e-6)


def test_card_gives_names_preprocessing_and_resolution(tmp_path, cnn):
    path = save(cnn, tmp_path / "tumour.keras")
    write_card(tmp_path / "tumour.json", class_names=["normal", "tumour", "stroma"],
               preprocessing="torch", input_size=[SIZE, SIZE], magnification=20,
               name="Tumour finder", description="test")
    model = load_model(path)
    assert model.class_names == ("normal", "tumour", "stroma")
    assert model.name == "Tumour finder" and model.magnification == 20 and model.mpp == 0.5
    x = patches()
    expected = cnn(keras.applications.densenet.preprocess_input(x.astype(np.float32))).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("where", ["beside", "inside"])
def test_savedmodel_card_beside_or_inside(tmp_path, cnn, where):
    path = save(cnn, tmp_path / "sm")
    card = tmp_path / "sm.json" if where == "beside" else path / "model_card.json"
    write_card(card, class_names=["a", "b", "c"], mpp=0.25)
    model = load_model(path)
    assert model.class_names == ("a", "b", "c") and model.mpp == 0.25


def test_card_named_after_the_full_file_name(tmp_path, cnn):
    path = save(cnn, tmp_path / "m.h5")
    write_card(tmp_path / "m.h5.json", class_names=["x", "y", "z"])
    assert load_model(path).class_names == ("x", "y", "z")


@pytest.mark.parametrize("family", sorted(PREPROCESSING_FAMILIES))
def test_preprocessing_families_match_keras_applications(family):
    x = np.random.default_rng(2).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    expected = getattr(keras.applications, family).preprocess_input(x.copy())
    got = preprocess(tf.constant(x), family).numpy()
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("mode, expected", [
    ("none", lambda x: x), ("0..1", lambda x: x / 255), ("-1..1", lambda x: x / 127.5 - 1),
    ("tf", lambda x: x / 127.5 - 1),
    ("caffe", lambda x: x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)),
    ("torch", lambda x: (x / 255 - np.array([0.485, 0.456, 0.406], np.float32))
     / np.array([0.229, 0.224, 0.225], np.float32)),
])
def test_preprocessing_modes(mode, expected):
    x = np.random.default_rng(3).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(preprocess(tf.constant(x), mode).numpy(), expected(x),
                               rtol=1e-6, atol=1e-5)


def test_size_mismatch_error_and_resize(saved, cnn):
    model = load_model(saved)
    big = patches(size=2 * SIZE)
    with pytest.raises(ValueError, match=r"32 x 32 px .* 16 x 16 px"):
        model.check_patch_size(2 * SIZE)
    with pytest.raises(ValueError, match="resize"):
        model.predict(big)
    model.check_patch_size((SIZE, SIZE))
    resizing = load_model(saved, resize=True)
    resizing.check_patch_size((40, 24))
    expected = cnn(tf.image.resize(big.astype(np.float32), (SIZE, SIZE), antialias=True))
    np.testing.assert_allclose(resizing.predict(big), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert resizing.fingerprint == model.fingerprint  # resizing is a run option, not the model


def test_any_size_model_takes_card_input_size(tmp_path):
    path = save(small_cnn(size=None), tmp_path / "free.keras")
    assert load_model(path).input_size is None
    load_model(path).predict(patches(size=23))
    write_card(tmp_path / "free.json", input_size=20)
    assert load_model(path).input_size == (20, 20)
    with pytest.raises(ValueError, match="20 x 20"):
        load_model(path).predict(patches(size=23))


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith((".", ")"))


@pytest.mark.parametrize("name", ["bad.keras", "bad.h5"])
@pytest.mark.parametrize("content", ["text", "truncated", "other_zip"])
def test_corrupt_file_is_one_clear_error(tmp_path, cnn, name, content):
    path = tmp_path / name
    if content == "text":
        path.write_bytes(b"this is not a model\n" * 10)
    elif content == "truncated":
        good = save(cnn, tmp_path / ("good" + path.suffix)).read_bytes()
        path.write_bytes(good[: len(good) // 2])
    else:
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "not a model")
    with pytest.raises(ValueError) as info:
        load_model(path)
    assert str(path) in str(info.value) and "corrupt" in str(info.value)
    assert one_sentence(str(info.value))


def test_not_a_model_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a model napari-patchheat can load") as info:
        load_model(text)
    assert one_sentence(str(info.value))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="not a TensorFlow SavedModel"):
        load_model(tmp_path / "empty_dir")
    with pytest.raises(FileNotFoundError, match="does not exist.*built-in model"):
        load_model(tmp_path / "missing.keras")
    broken = tmp_path / "broken_sm"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="Cannot load the SavedModel"):
        load_model(broken)


def test_wrong_output_rank_is_refused(tmp_path):
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Conv2D(2, 3)(inputs)  # (n, 14, 14, 2): a map, not a vector
    for name in ("map.keras", "map_sm"):
        path = save(keras.Model(inputs, outputs), tmp_path / name)
        with pytest.raises(ValueError, match=r"one vector per patch, \(patches, classes\)"):
            load_model(path)


def test_wrong_channels_and_card_mismatches(tmp_path, cnn):
    grey = keras.Model(*(lambda i: (i, keras.layers.Dense(2)(keras.layers.Flatten()(i))))(
        keras.Input((SIZE, SIZE, 1))))
    with pytest.raises(ValueError, match="1-channel"):
        load_model(save(grey, tmp_path / "grey.keras"))
    path = save(cnn, tmp_path / "m.keras")
    write_card(tmp_path / "m.json", class_names=["a", "b"])
    with pytest.raises(ValueError, match="names 2 classes but the model returns 3"):
        load_model(path)
    write_card(tmp_path / "m.json", input_size=[32, 32])
    with pytest.raises(ValueError, match="input_size"):
        load_model(path)
    write_card(tmp_path / "m.json", class_name=["a", "b", "c"])
    with pytest.raises(ValueError, match="unknown entry 'class_name'"):
        load_model(path)
    write_card(tmp_path / "m.json", preprocessing="imagenet")
    with pytest.raises(ValueError, match="preprocessing='imagenet' is unknown"):
        load_model(path)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        load_model(path)


def test_card_parsing(tmp_path):
    def card(text: str):
        path = tmp_path / "card.json"
        path.write_text(text)
        return read_card(path)

    with pytest.raises(ValueError, match="class_names"):
        card('{"class_names": ["a", "a"]}')
    with pytest.raises(ValueError, match="mpp"):
        card('{"mpp": -1}')
    parsed = card('{"preprocessing": "resnet50", "input_size": [224, 200]}')
    assert parsed.preprocessing == "resnet50" and parsed.input_size == (224, 200)


def test_nan_outputs_are_reported(tmp_path):
    model = small_cnn(classes=2)
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, np.array([np.nan, 0.0], np.float32)])
    loaded = load_model(save(model, tmp_path / "nan.keras"))
    with pytest.raises(ValueError, match="NaN or infinite values for 4 of 4 patches"):
        loaded.predict(patches(4))


def test_validate_output_and_input_checks(saved):
    model = load_model(saved)
    with pytest.raises(ValueError, match=r"shape \(4, 3, 1\)"):
        model.validate_output(np.zeros((4, 3, 1)), 4)
    with pytest.raises(ValueError, match="2 values per patch but has 3 class names"):
        model.validate_output(np.zeros((4, 2)), 4)
    with pytest.raises(ValueError, match="not RGB patches"):
        model.predict(np.zeros((SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="not RGB patches"):
        model.predict(np.zeros((2, SIZE, SIZE, 4), np.uint8))
    assert model.predict(np.zeros((0, SIZE, SIZE, 3), np.uint8)).shape == (0, 3)


def test_fingerprint_stable_across_reloads_and_sensitive_to_weights(saved, tmp_path):
    first, second = load_model(saved), load_model(saved)
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 64 and int(first.fingerprint, 16) >= 0
    other = save(small_cnn(seed=7), tmp_path / ("other" + saved.suffix))
    assert load_model(other).fingerprint != first.fingerprint


def test_fingerprint_changes_with_preprocessing(tmp_path, cnn):
    path = save(cnn, tmp_path / "p.keras")
    plain = load_model(path).fingerprint
    write_card(tmp_path / "p.json", preprocessing="0..1")
    assert load_model(path).fingerprint != plain
    write_card(tmp_path / "p.json", class_names=["a", "b", "c"], mpp=0.5)
    assert load_model(path).fingerprint == plain  # names and resolution do not change values


def test_tf_predict_inside_a_tf_function(saved, cnn):
    model = load_model(saved)
    x = patches(6)

    @tf.function
    def run(images):
        return model.tf_predict(images) * 2.0

    np.testing.assert_allclose(run(tf.constant(x)).numpy(), 2 * model.predict(x), rtol=1e-6)


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "m_savedmodel"])
def test_mixed_precision_computes_in_float16_close_to_float32(tmp_path, cnn, name):
    saved = save(cnn, tmp_path / name)
    if saved.suffix == "":
        with pytest.raises(ValueError, match="SavedModel, which runs in the precision it was "
                                             "saved in: turn mixed precision off"):
            load_model(saved, mixed_precision=True)
        return
    write_card(saved.with_suffix(".json"), preprocessing="0..1")  # unsaturated softmax
    full, mixed = load_model(saved), load_model(saved, mixed_precision=True)
    assert (full.precision, mixed.precision) == ("float32", "mixed_float16")
    assert mixed.fingerprint != full.fingerprint  # other values: its own cache
    x = patches(8, seed=3)
    out, ref = mixed.predict(x), full.predict(x)
    assert out.dtype == np.float32 and out.shape == ref.shape
    diff = np.abs(out - ref).max()
    assert 0 < diff < 5e-3, diff  # float16 rounding: not identical, and close
    np.testing.assert_allclose(cnn(x / np.float32(255)).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_mixed_precision_reaches_nested_models_and_keeps_the_output_float32(tmp_path):
    keras.utils.set_random_seed(2)
    backbone = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3),
                                 keras.layers.BatchNormalization(),
                                 keras.layers.GlobalAveragePooling2D()], name="backbone")
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), backbone,
                              keras.layers.Dense(3, activation="softmax")])
    path = save(model, tmp_path / "nested.keras")
    write_card(tmp_path / "nested.json", preprocessing="0..1")
    mixed = load_model(path, mixed_precision=True)
    built = mixed.keepalive  # the rebuilt Keras model
    inner = built.layers[0]
    assert {layer.dtype_policy.name for layer in inner.layers} == {"mixed_float16"}
    assert built.layers[-1].dtype_policy.name == "float32"
    x = patches(6, seed=4)
    diff = np.abs(mixed.predict(x) - load_model(path).predict(x)).max()
    assert 0 < diff < 5e-3, diff


def test_builtins_refuse_mixed_precision():
    with pytest.raises(ValueError, match="built-in model 'dab' computes optical densities in "
                                         "float32 only: turn mixed precision off"):
        load_model("dab", mixed_precision=True)


# --- built-in stain models ----------------------------------------------------------------------
def test_builtin_matrix_is_skimages():
    np.testing.assert_array_equal(stain.hed_from_rgb(), color.hed_from_rgb)
    np.testing.assert_allclose(np.linalg.inv(stain.RGB_FROM_HED), color.hed_from_rgb, rtol=1e-12)


def colour_sample() -> np.ndarray:
    rng = np.random.default_rng(4)
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return np.concatenate([grey, rng.integers(0, 256, (200_000, 3), dtype=np.uint8)])[None]


@pytest.mark.parametrize("image", ["ihc", "colours"])
def test_per_pixel_hed_matches_skimage(image):
    rgb = data.immunohistochemistry() if image == "ihc" else colour_sample()
    expected = color.rgb2hed(rgb)
    np.testing.assert_allclose(stain.rgb_to_hed(rgb).numpy(), expected, rtol=0, atol=2e-6)
    as_float = stain.rgb_to_hed(rgb.astype(np.float32)).numpy()  # the log path, float input
    np.testing.assert_allclose(as_float, expected, rtol=0, atol=2e-6)


def reference_fraction(rgb: np.ndarray, name: str, inside: np.ndarray | None = None
                       ) -> np.ndarray:
    """The documented definition, from skimage's own rgb2hed, per patch of (n, h, w, 3); with
    ``inside`` (n, h, w) bool, over those samples only (NaN where a patch has none)."""
    if name == "tissue":
        od = np.log(np.maximum(rgb / 255.0, 1e-6)) / np.log(1e-6)
        positive = od.sum(-1) >= stain.TISSUE_OD_SUM
    else:
        hed = color.rgb2hed(rgb)[..., stain.STAIN_INDEX[name]]
        positive = hed > stain.POSITIVE_OD[name]
    if inside is None:
        return positive.mean(axis=(1, 2))[:, None]
    with np.errstate(invalid="ignore"):
        return ((positive & inside).sum(axis=(1, 2)) / inside.sum(axis=(1, 2)))[:, None]


def ihc_patches(size: int = 32) -> np.ndarray:
    ihc = data.immunohistochemistry()
    n = ihc.shape[0] // size
    return ihc.reshape(n, size, n, size, 3).swapaxes(1, 2).reshape(-1, size, size, 3)


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtins_follow_their_definitions(name):
    model = load_model(name)
    assert model.kind == "builtin" and model.input_size is None and model.mpp is None
    assert model.class_names == stain.BUILTIN_CLASSES[name]
    x = ihc_patches()
    out = model.predict(x)
    assert out.shape == (len(x), 1) and out.min() >= 0 and out.max() <= 1
    # float32 vs skimage's float64 may flip a pixel lying on the threshold
    np.testing.assert_allclose(out, reference_fraction(x, name), atol=2.5 / 32**2)
    he = np.random.default_rng(5).integers(0, 256, (3, 17, 41, 3), dtype=np.uint8)
    np.testing.assert_allclose(model.predict(he), reference_fraction(he, name), atol=2.5 / 697)


def test_builtins_on_extreme_patches():
    white = np.full((1, 8, 8, 3), 255, np.uint8)
    black = np.zeros((1, 8, 8, 3), np.uint8)
    for name in BUILTIN_MODELS:
        assert load_model(name).predict(white)[0, 0] == 0.0
    assert load_model("tissue").predict(black)[0, 0] == 1.0


def test_dab_is_higher_on_brown_than_blue_regions():
    """Regions picked by colour alone (brown: red well above blue; blue: blue above red)."""
    x = ihc_patches(32).astype(np.float32)
    red, blue = x[..., 0].mean(axis=(1, 2)), x[..., 2].mean(axis=(1, 2))
    brown, bluish = red - blue > 40, blue - red > 5
    assert brown.sum() >= 50 and bluish.sum() >= 10
    dab = load_model("dab").predict(ihc_patches(32))[:, 0]
    assert dab[brown].min() > 0.5 > 0.1 > dab[bluish].max()
    assert dab[brown].mean() > 0.8 and dab[bluish].mean() < 0.1
    # and by skimage's own DAB channel: the top quarter of patches vs the bottom quarter
    d = color.rgb2hed(ihc_patches(32))[..., 2].mean(axis=(1, 2))
    lo, hi = np.quantile(d, [0.25, 0.75])
    assert dab[d >= hi].mean() > 0.9 > 0.1 > dab[d <= lo].mean()


@pytest.mark.skipif(not IHC_PATH.exists(), reason="shared data ../shared/data/real/ihc.png absent")
def test_shared_ihc_png_is_skimages_sample():
    from skimage import io

    np.testing.assert_array_equal(io.imread(IHC_PATH)[..., :3], data.immunohistochemistry())


def test_builtin_fingerprints_and_compilation():
    prints = {name: load_model(name).fingerprint for name in BUILTIN_MODELS}
    assert len(set(prints.values())) == len(BUILTIN_MODELS)
    assert prints["dab"] == load_model("DAB").fingerprint
    x = ihc_patches(64)
    fast, plain = stain.load_builtin("dab"), stain.load_builtin("dab", jit_compile=False)
    assert fast.jit_compile and not plain.jit_compile
    np.testing.assert_array_equal(fast.predict(x), plain.predict(x))
    np.testing.assert_array_equal(fast.tf_predict(tf.constant(x)).numpy(), plain.predict(x))


def some_inside(n: int, h: int, w: int, seed: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Random per-patch row and column masks; patch 0 has no row inside, patch 1 every sample."""
    rng = np.random.default_rng(seed)
    rows, cols = rng.random((n, h)) < 0.6, rng.random((n, w)) < 0.6
    rows[0], rows[1], cols[1] = False, True, True
    return rows, cols


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtins_count_only_the_samples_inside(name):
    model = load_model(name)
    assert model.needs_inside_mask
    noise = np.random.default_rng(7).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    x = np.concatenate([ihc_patches(32)[::4], noise])  # IHC has no eosin; noise has some
    rows, cols = some_inside(len(x), 32, 32)
    inside = rows[:, :, None] & cols[:, None, :]
    expected = reference_fraction(x, name, inside)
    assert np.isnan(expected[0]).all() and np.nanstd(expected) > 0.05  # the reference varies
    out = model.predict(x, (rows, cols))
    assert np.isnan(out[0]).all() and np.isfinite(out[1:]).all()
    atol = 2.5 / np.maximum(inside.sum(axis=(1, 2)), 1)[:, None]  # float32 flips a pixel or two
    np.testing.assert_array_less(np.abs(out - expected)[1:], atol[1:])
    assert out[1] == model.predict(x[1:2])[0]  # every sample inside: the plain fraction
    tf_out = model.validate_output(model.tf_predict(tf.constant(x), (rows, cols)).numpy(),
                                   len(x), (rows, cols))
    np.testing.assert_array_equal(tf_out, out)


def test_inside_masks_are_checked_and_refused_by_models_that_take_padding(tmp_path, cnn):
    x = patches(3)
    rows, cols = some_inside(3, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"inside mask of shapes \(3, 16\) and \(2, 16\)"):
        load_model("dab").predict(x, (rows, cols[:2]))
    user = load_model(save(cnn, tmp_path / "m.keras"))
    assert not user.needs_inside_mask
    with pytest.raises(ValueError, match="sees every sample of a patch, SAME's zero padding "
                                         "included: pass no inside mask"):
        user.predict(x, (rows, cols))
    nan = np.array([[np.nan], [0.5], [np.nan]], np.float32)
    with pytest.raises(ValueError, match="NaN or infinite values for 1 of 3 patches"):
        load_model("dab").validate_output(nan, 3, (rows, cols))  # patch 2 has samples inside
    rows[2] = False
    np.testing.assert_array_equal(load_model("dab").validate_output(nan, 3, (rows, cols)), nan)


def test_the_builtin_version_is_in_the_fingerprint(monkeypatch):
    assert stain.STAIN_MODEL_VERSION >= 2  # version 1 counted SAME's zero padding as stain
    before = stain.builtin_fingerprint("dab")
    monkeypatch.setattr(stain, "STAIN_MODEL_VERSION", stain.STAIN_MODEL_VERSION + 1)
    assert stain.builtin_fingerprint("dab") != before


def test_a_deeply_nested_card_is_one_sentence(tmp_path):
    card = tmp_path / "m.card.json"
    card.write_text("[" * 200_000)
    with pytest.raises(ValueError, match=r"^Model card .*m.card.json is not readable JSON "
                                         r"\(nested too deeply to read\)\.$"):
        read_card(card)
