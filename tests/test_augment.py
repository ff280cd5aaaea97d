"""Test-time augmentation, Monte-Carlo dropout and sd channels (models/augment.py, test_time.py).

References are Keras and numpy themselves: a network's ``predict`` over numpy's turns and
mirrors of ``tf.image.extract_patches`` patches, and ``model(x, training=True)`` sampled
independently. Statistical comparisons allow 4 standard errors (computed from the samples).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from napari_patchheat import compute_heatmap  # noqa: E402
from napari_patchheat.cli import main  # noqa: E402
from napari_patchheat.export import (  # noqa: E402
    export_heatmap,
    read_csv,
    read_geojson,
    read_ome_tiff,
)
from napari_patchheat.heatmap import Heatmap  # noqa: E402
from napari_patchheat.inference import HeatmapRun  # noqa: E402
from napari_patchheat.models import load_model, read_card  # noqa: E402
from napari_patchheat.models.augment import AugmentedModel, augment_model  # noqa: E402
from napari_patchheat.options import RunOptions  # noqa: E402
from napari_patchheat.test_time import TestTime, n_predicted  # noqa: E402

SIZE = 16
SIGMAS = 4.0  # statistical tolerance: this many standard errors


def save_net(net: keras.Model, path: Path, **card) -> Path:
    net.save(path)
    if card:
        path.with_suffix(".json").write_text(json.dumps(card))
    return path


def asymmetric_cnn(seed: int = 0) -> keras.Model:
    """A CNN whose output depends on where things are in the patch (Flatten, no pooling)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def dropout_mlp(seed: int = 0, batch_norm: bool = False) -> keras.Model:
    """Dropout between non-linear layers (and optionally a BatchNormalization before it)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    if batch_norm:
        bn = keras.layers.BatchNormalization()
        x = bn(x)
    x = keras.layers.Dropout(0.3)(x)
    if not batch_norm:
        x = keras.layers.Dense(8, activation="relu")(x)
        x = keras.layers.Dropout(0.3)(x)
    net = keras.Model(inputs, keras.layers.Dense(2)(x))
    if batch_norm:  # moving statistics far from any batch's: training=True would show
        mean, var = (w.numpy() for w in bn.non_trainable_weights)
        bn.non_trainable_weights[0].assign(mean + 3.0)
        bn.non_trainable_weights[1].assign(var * 4.0)
    return net


def ihc() -> np.ndarray:
    import skimage.data

    return skimage.data.immunohistochemistry()


def extracted_patches(image: np.ndarray, n: int = 24) -> np.ndarray:
    """The first ``n`` VALID patches of SIZE with stride SIZE, by tf.image.extract_patches."""
    k = [1, SIZE, SIZE, 1]
    cut = tf.image.extract_patches(image[None], k, k, [1, 1, 1, 1], "VALID").numpy()
    return cut.reshape(-1, SIZE, SIZE, 3)[:n]


def numpy_transforms(x: np.ndarray, tta: str) -> list[np.ndarray]:
    """The patches (n, h, w, c) under each transform, by numpy."""
    if tta == "flips":
        return [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
    return [np.rot90(m, k, axes=(1, 2)) for m in (x, x[:, :, ::-1]) for k in range(4)]


def reference(net: keras.Model, x: np.ndarray, tta: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population sd of ``net.predict`` over the transforms."""
    outs = np.stack([net.predict(t.astype(np.float32), verbose=0)
                     for t in numpy_transforms(x, tta)])
    return outs.mean(axis=0), outs.std(axis=0)


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory) -> Path:
    return save_net(asymmetric_cnn(), tmp_path_factory.mktemp("augment") / "cnn.keras")


@pytest.fixture(scope="module")
def ihc_slide(tmp_path_factory) -> Path:
    import tifffile

    path = tmp_path_factory.mktemp("slide") / "ihc.tif"
    tifffile.imwrite(path, ihc()[:192, :192], photometric="rgb")
    return path


# --- test-time augmentation -----------------------------------------------------------------
@pytest.mark.parametrize("tta", ["flips", "dihedral"])
def test_tta_mean_and_sd_equal_predict_over_the_transforms(cnn_path, tta):
    net = keras.models.load_model(cnn_path)
    x = extracted_patches(ihc())
    mean, sd = reference(net, x, tta)
    plain = net.predict(x.astype(np.float32), verbose=0)
    assert np.ptp(plain, axis=0).min() > 0.05  # outputs vary from patch to patch
    assert np.abs(mean - plain).max() > 0.05 and sd.min() > 0  # and with the transform
    model = augment_model(load_model(cnn_path), tta=tta, uncertainty=True)
    out = model.predict(x)
    assert model.class_names == ("class_0", "class_1", "class_2", "class_0 sd", "class_1 sd",
                                 "class_2 sd")
    np.testing.assert_allclose(out[:, :3], mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[:, 3:], sd, rtol=1e-4, atol=1e-5)
    without_sd = augment_model(load_model(cnn_path), tta=tta)
    np.testing.assert_allclose(without_sd.predict(x), mean, rtol=1e-5, atol=1e-5)


def test_heatmap_channels_follow_the_reference_per_patch(cnn_path, ihc_slide):
    h = compute_heatmap(ihc_slide, cnn_path, size=SIZE, tta="dihedral", uncertainty=True,
                        use_cache=False)
    assert h.class_names[3:] == ("class_0 sd", "class_1 sd", "class_2 sd")
    assert h.extra["test_time"] == {"tta": "dihedral", "mc_samples": 1, "uncertainty": True,
                                    "transforms": 8, "passes": 8, "mc_seed": None,
                                    "dropout_layers": 0}
    image = ihc()[:192, :192]
    x = extracted_patches(image, n=12 * 12)
    mean, sd = reference(keras.models.load_model(cnn_path), x, "dihedral")
    got = h.values.reshape(-1, 6)
    np.testing.assert_allclose(got[:, :3], mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, 3:], sd, rtol=1e-4, atol=1e-5)


def test_patches_on_tensorflows_device_give_the_same_heatmap(cnn_path, ihc_slide):
    fields = dict(size=SIZE, tta="dihedral", uncertainty=True, use_cache=False)
    host = compute_heatmap(ihc_slide, cnn_path, backend="numpy", **fields)
    device = compute_heatmap(ihc_slide, cnn_path, backend="tf", **fields)
    assert np.nanstd(host.values[..., 3:]) > 0
    np.testing.assert_allclose(device.values, host.values, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tta", ["flips", "dihedral"])
def test_a_dihedral_invariant_builtin_is_unchanged(ihc_slide, tta):
    # SAME padding and a stride that leaves edge patches partly outside: their inside masks
    # turn with the patches
    fields = dict(size=24, stride=20, padding="SAME", use_cache=False)
    plain = compute_heatmap(ihc_slide, "dab", **fields)
    assert np.nanstd(plain.values) > 0.05 and np.isnan(plain.values).sum() == 0
    h = compute_heatmap(ihc_slide, "dab", tta=tta, uncertainty=True, **fields)
    assert h.class_names == ("dab_positive", "dab_positive sd")
    np.testing.assert_array_equal(h.values[..., 0], plain.values[..., 0])
    np.testing.assert_array_equal(h.values[..., 1], 0)


def test_dihedral_needs_square_patches(cnn_path, ihc_slide):
    with pytest.raises(ValueError, match=r"^tta='dihedral' turns patches by 90°, which needs "
                                         r"square patches, not 24 x 16 px: use tta='flips'"):
        compute_heatmap(ihc_slide, "dab", size=(24, 16), tta="dihedral")
    h = compute_heatmap(ihc_slide, "dab", size=(24, 16), tta="flips", use_cache=False)
    assert h.n_computed == 8 * 12


# --- Monte-Carlo dropout --------------------------------------------------------------------
def test_mc_without_dropout_gives_the_plain_values_and_sd_zero(cnn_path):
    x = extracted_patches(ihc())
    plain = load_model(cnn_path).predict(x)
    assert np.ptp(plain, axis=0).min() > 0.05
    model = augment_model(load_model(cnn_path), mc_samples=8, uncertainty=True)
    out = model.predict(x)
    np.testing.assert_array_equal(out[:, :3], plain)
    np.testing.assert_array_equal(out[:, 3:], 0)
    assert model.heatmap_extra["test_time"]["dropout_layers"] == 0


def independent_samples(net: keras.Model, x: np.ndarray, n: int) -> np.ndarray:
    """(n, patches, classes): ``net(x, training=True)``, sampled n times."""
    xf = tf.constant(x.astype(np.float32))
    return np.stack([net(xf, training=True).numpy() for _ in range(n)])


def test_mc_mean_and_sd_match_dropout_sampled_independently(tmp_path):
    n = 300
    net = dropout_mlp()
    path = save_net(net, tmp_path / "mc.keras")
    x = extracted_patches(ihc(), n=6)
    ref = independent_samples(net, x, n)
    mean_r, sd_r = ref.mean(axis=0), ref.std(axis=0)
    assert sd_r.min() > 0.01 and np.ptp(mean_r, axis=0).min() > 0.01  # random, and per patch
    model = augment_model(load_model(path), mc_samples=n, uncertainty=True)
    assert model.heatmap_extra["test_time"]["dropout_layers"] == 2
    out = model.predict(x)
    mean_a, sd_a = out[:, :2], out[:, 2:]
    # the difference of two independent means of n samples; the sd's standard error from the
    # reference's fourth moment: sqrt((m4 - sd^4) / (4 sd^2 n)), for each estimate
    assert (np.abs(mean_a - mean_r) < SIGMAS * np.sqrt((sd_a**2 + sd_r**2) / n)).all()
    m4 = ((ref - mean_r) ** 4).mean(axis=0)
    se_sd = np.sqrt((m4 - sd_r**4) / (4 * sd_r**2 * n))
    assert (np.abs(sd_a - sd_r) < SIGMAS * np.sqrt(2) * se_sd).all()
    # reproducible: the seed comes from the model, and is recorded
    again = augment_model(load_model(path), mc_samples=n, uncertainty=True)
    np.testing.assert_array_equal(again.predict(x), out)
    assert again.heatmap_extra["test_time"]["mc_seed"] == model.mc_seed is not None


def test_mc_keeps_batch_normalisation_in_inference_mode(tmp_path):
    # Dropout then a linear layer: the mean over dropout samples tends to the plain output
    # when BatchNormalization uses its moving statistics, not when it uses the batch's
    n = 300
    net = dropout_mlp(batch_norm=True)
    path = save_net(net, tmp_path / "bn.keras")
    x = extracted_patches(ihc(), n=8)
    plain = load_model(path).predict(x)
    out = augment_model(load_model(path), mc_samples=n, uncertainty=True).predict(x)
    mean, sd = out[:, :2], out[:, 2:]
    assert sd.min() > 0.01
    assert (np.abs(mean - plain) < SIGMAS * sd / np.sqrt(n)).all()
    batch_stats = independent_samples(net, x, 20).mean(axis=0)
    assert np.abs(batch_stats - plain).max() > 10 * (SIGMAS * sd / np.sqrt(n)).max()


def test_mc_finds_dropout_in_nested_models_and_its_variants(tmp_path):
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.SpatialDropout2D(0.5)(keras.layers.Conv2D(4, 3)(inner_in))
    inner = keras.Model(inner_in, keras.layers.Flatten()(h), name="inner")
    outer_in = keras.Input((SIZE, SIZE, 3))
    y = keras.layers.GaussianDropout(0.3)(inner(outer_in))
    path = save_net(keras.Model(outer_in, keras.layers.Dense(2)(y)), tmp_path / "nested.keras")
    x = extracted_patches(ihc(), n=4)
    for mixed in (False, True):
        model = augment_model(load_model(path, mixed_precision=mixed), mc_samples=8,
                              uncertainty=True)
        assert model.dropout_layers == 2 and model.predict(x)[:, 2:].min() > 0


def test_mc_on_a_builtin_is_one_sentence(ihc_slide):
    with pytest.raises(ValueError, match=r"^Model 'dab' \(builtin\) has no dropout layers "
                                         r"napari-patchheat can turn on: set mc_samples to 1"):
        compute_heatmap(ihc_slide, "dab", size=SIZE, mc_samples=4)


# --- settings: options, card, cache key -----------------------------------------------------
@pytest.mark.parametrize("fields, message", [
    (dict(tta="rot"), r"^tta='rot' is unknown: use 'none', 'flips' \(4 transforms\) or "),
    (dict(mc_samples=0), r"^mc_samples=0 must be a whole number of at least 1"),
    (dict(uncertainty="yes"), r"^uncertainty='yes' must be True, False or None"),
    (dict(uncertainty=True, tta="none", mc_samples=1),
     r"^uncertainty needs more than one pass per patch: add test-time augmentation"),
])
def test_bad_options_are_one_sentence(fields, message):
    with pytest.raises(ValueError, match=message):
        RunOptions(**fields)


def test_uncertainty_of_one_pass_is_refused_when_the_run_starts(ihc_slide):
    RunOptions(uncertainty=True)  # a card may add the passes
    with pytest.raises(ValueError, match=r"^uncertainty needs more than one pass"):
        compute_heatmap(ihc_slide, "dab", size=SIZE, uncertainty=True)


def test_card_asks_and_options_override(tmp_path, ihc_slide):
    path = save_net(asymmetric_cnn(), tmp_path / "carded.keras", tta="flips", uncertainty=True,
                    class_names=["a", "b", "c"])
    assert read_card(path.with_suffix(".json")).test_time == TestTime("flips", 1, True)
    model = load_model(path)
    carded = compute_heatmap(ihc_slide, model, size=SIZE, use_cache=False)
    assert carded.class_names == ("a", "b", "c", "a sd", "b sd", "c sd")
    assert carded.extra["test_time"]["tta"] == "flips"
    plain = compute_heatmap(ihc_slide, model, size=SIZE, use_cache=False, tta="none",
                            uncertainty=False)
    assert plain.class_names == ("a", "b", "c") and "test_time" not in plain.extra
    assert np.abs(plain.values - carded.values[..., :3]).max() > 0.05
    with pytest.raises(ValueError, match=r"^uncertainty needs more than one pass"):
        compute_heatmap(ihc_slide, model, size=SIZE, tta="none")  # the card's uncertainty stays


@pytest.mark.parametrize("entry, message", [
    ({"tta": "mirror"}, r"tta='mirror' is unknown"),
    ({"mc_samples": 2.5}, r"mc_samples=2\.5 must be a whole number"),
    ({"uncertainty": "on"}, r"uncertainty='on' must be true or false"),
    ({"uncertainty": True}, r"uncertainty needs more than one pass"),
])
def test_bad_card_entries_name_the_card(tmp_path, entry, message):
    card = tmp_path / "m.json"
    card.write_text(json.dumps(entry))
    with pytest.raises(ValueError, match=rf"^Model card {card}: {message}"):
        read_card(card)


def test_cache_key_changes_only_with_tta_or_mc(cnn_path, ihc_slide):
    def key(**fields):
        return HeatmapRun(ihc_slide, load_model(cnn_path), RunOptions(size=SIZE, **fields)).key

    plain = key()
    assert key(tta="none", mc_samples=1, uncertainty=False) == plain
    keys = {plain, key(tta="flips"), key(tta="dihedral"), key(tta="flips", uncertainty=True),
            key(mc_samples=2)}
    assert len(keys) == 5
    model = load_model(cnn_path)
    assert augment_model(model) is model and augment_model(model, "none", 1, False) is model
    assert isinstance(augment_model(model, "flips"), AugmentedModel)


def test_resumed_run_reuses_cached_values(tmp_path, ihc_slide):
    import threading

    path = save_net(dropout_mlp(), tmp_path / "mc.keras")
    options = RunOptions(size=SIZE, mc_samples=4, tta="flips", uncertainty=True, batch_size=16,
                         cache_dir=tmp_path / "cache")
    cancel = threading.Event()
    run = HeatmapRun(ihc_slide, load_model(path), options)
    for progress in run.run(cancel):
        first = progress.values
        cancel.set()
    assert run.heatmap.n_computed == 16
    resumed = HeatmapRun(ihc_slide, load_model(path), options)
    assert resumed.heatmap.n_computed == 16
    rows, cols = progress.indices.T
    np.testing.assert_array_equal(resumed.heatmap.values[rows, cols], first)
    list(resumed.run())
    h = resumed.result()
    assert h.n_computed == 144 and h.extra["test_time"]["mc_seed"] == run.model.mc_seed
    assert np.nanmin(h.values[..., 2:]) > 0  # dropout spreads every patch's outputs


# --- exports and the command line -----------------------------------------------------------
def test_exports_carry_the_sd_channels(tmp_path, ihc_slide):
    h = compute_heatmap(ihc_slide, "dab", size=24, tta="flips", uncertainty=True,
                        use_cache=False)
    h.values[..., 1] = 2 - h.values[..., 0]  # above any threshold where the class is not
    assert n_predicted(h.class_names) == 1
    threshold = float(np.quantile(h.values[..., 0], 0.5, method="higher"))
    files = export_heatmap(h, tmp_path, "ihc", ("ometiff", "csv", "csv_wsinfer", "geojson"),
                           positive_threshold=threshold)
    for back in (Heatmap.load_npz(h.save_npz(tmp_path / "ihc.npz")),
                 read_ome_tiff(files["ometiff"])):
        assert back.class_names == h.class_names
        np.testing.assert_array_equal(back.values, h.values)
    table = read_csv(files["csv"])
    assert table.class_names == h.class_names
    np.testing.assert_array_equal(table.values[:, 1], h.values[..., 1].ravel())
    header = files["csv_wsinfer"].read_text().splitlines()[0]
    assert header == "minx,miny,width,height,prob_dab_positive,dab_positive sd"
    doc = json.loads(files["geojson"].read_text())
    classified = np.zeros(h.grid.shape, bool)
    for f in doc["features"]:
        if "classification" in f["properties"]:
            assert f["properties"]["classification"]["name"] == "dab_positive"
            where = f["properties"]["patchheat"]
            classified[where["row"], where["col"]] = True
    expected = h.values[..., 0] >= threshold  # by the class, never by its sd
    assert 0 < expected.sum() < expected.size and (h.values[..., 1] >= threshold)[~expected].any()
    np.testing.assert_array_equal(classified, expected)
    assert read_geojson(files["geojson"]).class_names == h.class_names


def test_cli_flags_reach_the_run(tmp_path, ihc_slide):
    path = save_net(dropout_mlp(), tmp_path / "mc.keras")
    code = main(["run", str(ihc_slide), "--model", str(path), "--size", str(SIZE), "--tta",
                 "dihedral", "--mc-samples", "8", "--uncertainty", "--no-cache", "--out",
                 str(tmp_path / "out"), "--format", "npz,csv"])
    assert code == 0
    h = Heatmap.load_npz(tmp_path / "out" / "ihc.mc.npz")
    assert h.class_names == ("class_0", "class_1", "class_0 sd", "class_1 sd")
    assert h.extra["test_time"]["passes"] == 64 and np.nanmin(h.values[..., 2:]) > 0
    assert read_csv(tmp_path / "out" / "ihc.mc.csv").class_names == h.class_names
