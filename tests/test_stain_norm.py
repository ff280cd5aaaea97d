"""Stain normalisation: fits and pixels against torchstain, identities, the run's record and
cache, the CLI and the model card.

torchstain's numpy backend is the independent reference (TIAToolbox is not installed). Its
conventions, ours where they differ: Reinhard in CIE L*a*b* (D65) as ours, but over every pixel
it is given (we give it the tissue pixels) and truncated to uint8; Macenko with Io=240,
alpha=1, beta=0.15 as ours, but it refits the source on each image, drops each pixel's residual
(the OD no stain explains: ours keeps it) and writes Io * exp(-OD) truncated (ours inverts
OD = -log((I + 1) / Io) exactly: minus 1).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
torchstain = pytest.importorskip("torchstain")

from napari_patchheat.cache import run_key  # noqa: E402
from napari_patchheat.cli import main  # noqa: E402
from napari_patchheat.heatmap import Heatmap  # noqa: E402
from napari_patchheat.inference import HeatmapRun  # noqa: E402
from napari_patchheat.models import load_model, normalised, read_card  # noqa: E402
from napari_patchheat.models.normalised import tissue_stats  # noqa: E402
from napari_patchheat.models.stain_norm import (  # noqa: E402
    FITS,
    IO,
    StainFit,
    fit_macenko,
    fit_reinhard,
    fit_stain,
    fit_vahadane,
    normalise_float,
    normalise_numpy,
    tf_normalise,
)
from napari_patchheat.options import STAIN_METHODS, RunOptions  # noqa: E402
from napari_patchheat.slide import open_slide  # noqa: E402

PATCH_PX = 256


@pytest.fixture(scope="module")
def he_patch(svs_path) -> np.ndarray:
    """A real H&E patch of the CMU slide (level 0), tissue and some glass."""
    return np.asarray(open_slide(svs_path).levels[0][500:500 + PATCH_PX, 800:800 + PATCH_PX])


@pytest.fixture(scope="module")
def ihc_patch(ihc_png_path) -> np.ndarray:
    """A real IHC (hematoxylin + DAB) patch."""
    return np.asarray(open_slide(ihc_png_path).levels[0])[:PATCH_PX, :PATCH_PX]


def normalise(fit: StainFit, image: np.ndarray) -> np.ndarray:
    return tf_normalise(fit)(image[None])[0].numpy().astype(np.float64)


def test_patches_differ_in_stain(he_patch, ihc_patch):
    assert abs(he_patch.mean() - ihc_patch.mean()) > 50  # the references below vary


@pytest.mark.parametrize("which", ["he_patch", "ihc_patch"])
def test_fits_equal_torchstains(which, request):
    image = request.getfixturevalue(which)
    mine = fit_reinhard(image)
    ref = torchstain.normalizers.ReinhardNormalizer(backend="numpy")
    ref.fit(image)  # float32 L*a*b*, so agreement to ~1e-5
    np.testing.assert_allclose(mine["means"], ref.target_means, atol=1e-4)
    np.testing.assert_allclose(mine["stds"], ref.target_stds, atol=1e-4)
    mine = fit_macenko(image)
    ref = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    ref.fit(image)
    np.testing.assert_allclose(mine["stain_matrix"], ref.HERef, atol=1e-8)
    np.testing.assert_allclose(mine["max_concentrations"], ref.maxCRef, rtol=1e-8)


def test_reinhard_pixels_equal_torchstains(he_patch, ihc_patch):
    fit = StainFit("reinhard", fit_reinhard(he_patch), fit_reinhard(ihc_patch))
    ref = torchstain.normalizers.ReinhardNormalizer(backend="numpy")
    ref.fit(ihc_patch)
    mine = normalise(fit, he_patch)
    want = ref.normalize(he_patch).astype(np.float64)  # truncated to uint8
    assert np.abs(want - he_patch).mean() > 10  # it does change the patch
    assert np.all((mine - want >= -1e-3) & (mine - want < 1 + 1e-3))


def test_macenko_pixels_equal_torchstains_on_its_stain_plane(he_patch, ihc_patch):
    ref = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    ref.fit(ihc_patch)
    want = ref.normalize(he_patch, stains=False)[0].astype(np.float64)
    # the patch without its residual, by torchstain's own source matrix: its plane
    source = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    source.fit(he_patch)
    od = -np.log((he_patch.reshape(-1, 3) + 1.0) / IO)
    he = source.HERef
    planar = IO * np.exp(-(od @ np.linalg.pinv(he).T) @ he.T) - 1.0
    fit = StainFit("macenko", fit_macenko(he_patch), fit_macenko(ihc_patch))
    mine = normalise(fit, planar.reshape(he_patch.shape).astype(np.float32))
    assert np.abs(want - he_patch).mean() > 5
    got = np.minimum(mine + 1.0, 255.0)  # torchstain writes Io * exp(-OD), not minus 1
    assert np.all((got - want >= -0.02) & (got - want < 1.02))
    # on the patch itself, ours keeps the residual: a few grey levels on most pixels
    assert np.median(np.abs(normalise(fit, he_patch) - want)) < 2


@pytest.mark.parametrize("method", ["reinhard", "macenko", "vahadane"])
@pytest.mark.parametrize("which", ["he_patch", "ihc_patch"])
def test_normalising_to_itself_changes_nothing(method, which, request):
    image = request.getfixturevalue(which)
    stats = fit_stain(method, image)
    assert np.abs(normalise(StainFit(method, stats, stats), image) - image).max() < 1.0


def test_vahadane_moves_the_stain_matrix_to_the_targets(he_patch, ihc_patch):
    source, target = fit_vahadane(he_patch), fit_vahadane(ihc_patch)
    distance = np.abs(np.subtract(source["stain_matrix"], target["stain_matrix"])).max()
    assert distance > 0.2
    moved = np.round(normalise(StainFit("vahadane", source, target), he_patch)).astype(np.uint8)
    refit = fit_vahadane(moved)
    assert np.abs(np.subtract(refit["stain_matrix"], target["stain_matrix"])).max() < 0.1 * distance
    np.testing.assert_allclose(refit["max_concentrations"], target["max_concentrations"], rtol=0.1)


@pytest.mark.parametrize("method", ["reinhard", "macenko", "vahadane"])
def test_the_numpy_twin_equals_the_tensorflow_transform(method, he_patch, ihc_patch):
    """The inspector's NumPy transform against the model's TF one, both ways (H&E -> IHC and
    back): before casting (TF feeds the model float32) and as the uint8 shown. Measured on
    these patches: float max diff 7e-4 (TF's float32); uint8 max diff 0.5005 grey level (the
    rounding), equal to TF's value rounded on all but 0.006 % of the values."""
    for source, target in ((he_patch, ihc_patch), (ihc_patch, he_patch)):
        fit = StainFit(method, fit_stain(method, source), fit_stain(method, target))
        want = normalise(fit, source)
        assert np.abs(want - source).mean() > 5  # the reference varies: it moves the stain
        np.testing.assert_allclose(normalise_float(fit, source), want, atol=0.002)
        shown = normalise_numpy(fit, source)
        assert shown.dtype == np.uint8 and shown.shape == source.shape
        assert np.abs(shown - want).max() <= 0.5 + 0.01  # rounding, and TF's float32 error
        assert (shown != np.round(want)).mean() < 0.001  # a value at .5 rounds either way


def test_a_fit_goes_to_json_and_back_bit_for_bit(he_patch, ihc_patch):
    fit = StainFit("macenko", fit_macenko(he_patch), fit_macenko(ihc_patch))
    back = StainFit.from_json(json.loads(json.dumps(fit.to_json())))
    assert back == fit and back.key() == fit.key()


def options(tmp_path, **more) -> RunOptions:
    return RunOptions(level=1, size=64, cache_dir=tmp_path / "cache", **more)


def test_the_run_records_the_fit_keys_on_it_and_resumes_from_it(svs_path, ihc_png_path, tmp_path):
    plain = HeatmapRun(svs_path, "hematoxylin", options(tmp_path))
    base = load_model("hematoxylin").fingerprint
    assert plain.key == run_key(plain.slide.identity, 1, plain.grid, base)  # as it was
    assert "stain_norm" not in plain.heatmap.extra
    norm = options(tmp_path, stain_norm="macenko", stain_target=ihc_png_path)
    run = HeatmapRun(svs_path, "hematoxylin", norm)
    assert run.key != plain.key and run.model.fingerprint != base
    for _ in run.run():
        pass
    first = run.result()
    recorded = first.extra["stain_norm"]
    assert recorded == {"method": "macenko",
                        "source": tissue_stats("macenko", open_slide(svs_path)),
                        "target": tissue_stats("macenko", open_slide(ihc_png_path))}
    for _ in plain.run():
        pass
    assert np.nanmax(np.abs(first.values - plain.result().values)) > 0.01  # it changes values
    normalised._FITTED.clear()  # fitted afresh, as a resumed run in a new process does
    again = HeatmapRun(svs_path, "hematoxylin", norm)
    assert again.key == run.key and not again.todo.any()  # everything from the cache
    assert json.dumps(again.heatmap.extra["stain_norm"]) == json.dumps(recorded)
    np.testing.assert_array_equal(again.heatmap.values, first.values)


def test_the_cli_normalises_and_writes_the_fit(svs_path, ihc_png_path, tmp_path):
    code = main(["run", str(svs_path), "--model", "hematoxylin", "--level", "1", "--size", "64",
                 "--no-cache", "--tissue-threshold", "0", "--stain-norm", "macenko",
                 "--stain-target", str(ihc_png_path), "--out", str(tmp_path)])
    assert code == 0
    h = Heatmap.load_npz(tmp_path / "CMU-1-Small-Region.hematoxylin.npz")
    assert h.extra["stain_norm"]["target"] == tissue_stats("macenko", open_slide(ihc_png_path))


def test_without_a_target_the_cli_says_what_to_give(svs_path, tmp_path, capsys):
    run = ["run", str(svs_path), "--model", "dab", "--level", "1", "--size", "64", "--no-cache",
           "--stain-norm", "reinhard", "--out", str(tmp_path)]
    code = main(run)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "give --stain-target" in err and "stain_target" in err
    code = main([*run, "--stain-target", str(tmp_path / "missing.png")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "missing.png" in err


def test_a_model_card_carries_its_target(svs_path, ihc_png_path, tmp_path):
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "cnn.keras"
    keras.Model(inputs, outputs).save(path)
    target = tissue_stats("reinhard", open_slide(ihc_png_path))
    card = {"class_names": ["a", "b"], "preprocessing": "0..1",
            "stain_target": {"method": "reinhard", **target}}
    (tmp_path / "cnn.json").write_text(json.dumps(card))
    assert read_card(tmp_path / "cnn.json").stain_target == card["stain_target"]
    run = HeatmapRun(svs_path, path, options(tmp_path, stain_norm="reinhard", use_cache=False))
    assert run.heatmap.extra["stain_norm"]["target"] == target
    with pytest.raises(ValueError, match="its card's target is reinhard"):
        HeatmapRun(svs_path, path, options(tmp_path, stain_norm="macenko"))
    (tmp_path / "cnn.json").write_text(json.dumps(
        {**card, "stain_target": {"method": "reinhard", "means": [1, 2], "stds": [1, 1, 1]}}))
    with pytest.raises(ValueError, match="reinhard means must be 3 numbers"):
        read_card(tmp_path / "cnn.json")


def test_an_unknown_method_is_one_sentence():
    assert STAIN_METHODS == ("none", *FITS)  # the options' choices are the fits
    with pytest.raises(ValueError, match="stain_norm='ruifrok' is unknown: use one of none"):
        RunOptions(stain_norm="ruifrok")
