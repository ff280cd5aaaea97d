"""A run with color="srgb": the model sees the slide converted from its ICC profile to sRGB (the
same heatmap as on the image converted by ImageCms on its own), cached apart from the run on the
pixels as stored, recorded in the heatmap; `patchheat run --color srgb` does the same."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from napari_patchheat import compute_heatmap, open_slide
from napari_patchheat.cache import run_key
from napari_patchheat.cli import main
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.inference import HeatmapRun
from napari_patchheat.options import RunOptions
from napari_patchheat.slide import SlideError

pytest.importorskip("tensorflow")

OPTIONS = dict(size=64, stride=48, batch_size=16, use_cache=False)


def converted_copy(path, profile: bytes, out) -> np.ndarray:
    """Level 0 of ``path`` converted by ImageCms on its own, written to ``out`` (a TIFF with no
    profile); returns the converted pixels."""
    with open_slide(path) as slide:
        stored = slide.levels[0].compute()
    converted = np.asarray(ImageCms.profileToProfile(
        Image.fromarray(stored), io.BytesIO(profile), ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC))
    assert (converted != stored).any(axis=2).mean() > 0.3
    tifffile.imwrite(out, converted, photometric="rgb", tile=(256, 256))
    return converted


@pytest.mark.parametrize("backend", ["numpy", "tf"])  # "tf": patches cut on TF's device
def test_srgb_run_equals_the_model_on_the_image_converted_by_imagecms(icc_slide, wide_rgb_profile,
                                                                      tmp_path, backend):
    converted_copy(icc_slide, wide_rgb_profile, tmp_path / "converted.tif")
    srgb = compute_heatmap(icc_slide, "dab", color="srgb", backend=backend, **OPTIONS)
    reference = compute_heatmap(tmp_path / "converted.tif", "dab", backend=backend, **OPTIONS)
    stored = compute_heatmap(icc_slide, "dab", backend=backend, **OPTIONS)
    assert srgb.grid.n_patches == 30 * 24 and not np.isnan(srgb.values).any()
    assert np.ptp(reference.values) > 0.1  # the reference varies over the slide
    np.testing.assert_allclose(srgb.values, reference.values, rtol=1e-6, atol=1e-7)
    assert np.abs(srgb.values - stored.values).max() > 0.01  # the conversion matters
    assert srgb.extra["color"] == "srgb" and stored.extra["color"] == "as stored"


def test_srgb_and_as_stored_runs_are_cached_apart(icc_slide, tmp_path):
    options = RunOptions(**{**OPTIONS, "use_cache": True}, cache_dir=tmp_path / "cache")
    as_stored = HeatmapRun(icc_slide, "dab", options)
    srgb = HeatmapRun(icc_slide, "dab", RunOptions(**{**OPTIONS, "use_cache": True},
                                                   cache_dir=tmp_path / "cache", color="srgb"))
    assert as_stored.key != srgb.key
    # the key of a run on the pixels as stored is the one it had before colours were an option
    assert as_stored.key == run_key(as_stored.slide.identity, 0, as_stored.grid,
                                    as_stored.model.fingerprint)
    for _ in as_stored.run():
        pass
    assert as_stored.heatmap.computed.all()
    again = HeatmapRun(icc_slide, "dab", srgb.options)
    assert again.todo.all()  # nothing of the run as stored is taken for the sRGB run
    assert HeatmapRun(icc_slide, "dab", options).todo.sum() == 0


def test_srgb_on_a_slide_without_a_profile_is_one_sentence(svs_path):
    with pytest.raises(SlideError, match=f"^Cannot convert {svs_path} to sRGB: the file carries "
                                         "no ICC colour profile; use its colours as stored.$"):
        HeatmapRun(svs_path, "dab", RunOptions(size=64, color="srgb"))


def test_cli_color_flag(icc_slide, wide_rgb_profile, svs_path, tmp_path, capsys):
    converted_copy(icc_slide, wide_rgb_profile, tmp_path / "converted.tif")
    flags = ["--size", "64", "--stride", "48", "--tissue-threshold", "0", "--no-cache"]
    assert main(["run", str(icc_slide), "--out", str(tmp_path / "a"), "--color", "sRGB",
                 *flags]) == 0
    assert main(["run", str(tmp_path / "converted.tif"), "--out", str(tmp_path / "b"),
                 *flags]) == 0
    (a,), (b,) = (list((tmp_path / d).glob("*.npz")) for d in "ab")
    srgb, reference = Heatmap.load_npz(a), Heatmap.load_npz(b)
    assert srgb.extra["color"] == "srgb" and reference.extra["color"] == "as stored"
    np.testing.assert_allclose(srgb.values, reference.values, rtol=1e-6, atol=1e-7)
    capsys.readouterr()
    assert main(["run", str(svs_path), "--out", str(tmp_path / "c"), "--color", "srgb",
                 *flags]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "the file carries no ICC colour profile; use its colours as stored.")


def test_the_worker_process_runs_in_srgb(icc_slide, svs_path):
    """The dock's path: RunOptions crosses to the spawned worker, which converts as the API."""
    from napari_patchheat.inference import Progress
    from napari_patchheat.runner import Failed, RunSpec, Started, start_run

    options = RunOptions(**OPTIONS, color="srgb")
    msgs = list(start_run(RunSpec(str(icc_slide), "dab", options)).messages())
    assert isinstance(msgs[0], Started) and msgs[0].metadata["extra"]["color"] == "srgb"
    values = np.full((30, 24, 1), np.nan, np.float32)
    for m in msgs:
        if isinstance(m, Progress):
            values[m.indices[:, 0], m.indices[:, 1]] = m.values
    np.testing.assert_allclose(values, compute_heatmap(icc_slide, "dab", options=options).values,
                               rtol=1e-6, atol=1e-7)
    (failed,) = start_run(RunSpec(str(svs_path), "dab", options)).messages()
    assert isinstance(failed, Failed) and failed.message == (
        f"Cannot convert {svs_path} to sRGB: the file carries no ICC colour profile; use its "
        "colours as stored.")
