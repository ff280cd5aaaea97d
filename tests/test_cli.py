"""The ``patchheat`` command: run writes what compute_heatmap computes; bad input is one line,
exit 2."""

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_patchheat import compute_heatmap, open_slide
from napari_patchheat.cli import build_parser, main, run_options
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.options import INTERACTIVE_TISSUE_THRESHOLD, RunOptions

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SVS = REAL / "CMU-1-Small-Region.svs"


def patchheat(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "napari_patchheat.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not SVS.exists(), reason=f"real slide {SVS} is absent")
def test_run_on_the_real_svs_writes_compute_heatmaps_values(tmp_path):
    out = patchheat("run", SVS, "--model", "tissue", "--size", "128", "--stride", "96",
                    "--padding", "same", "--tissue-threshold", "0.2", "--no-cache",
                    "--out", tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "patches" in out.stderr and "p/s" in out.stderr  # the progress line
    written = tmp_path / "CMU-1-Small-Region.tissue.npz"
    assert f"npz: {written}" in out.stdout
    h = Heatmap.load_npz(written)
    ref = compute_heatmap(SVS, "tissue", size=128, stride=96, padding="SAME",
                          tissue_threshold=0.2, use_cache=False)
    assert h.grid == ref.grid and h.slide_path == str(SVS)
    np.testing.assert_allclose(h.values, ref.values, rtol=1e-6)
    assert 0 < h.n_computed < h.grid.n_patches


def test_run_takes_a_dicom_folder(dicom_path, tmp_path):
    """A DICOM WSI folder (the SVS converted) runs as a slide named for the folder, read by
    wsidicom (every level: no warning), to the heatmap of the SVS itself."""
    out = patchheat("run", dicom_path, "--model", "dab", "--size", "224", "--stride", "160",
                    "--tissue-threshold", "0.5", "--no-cache", "--out", tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "warning" not in out.stderr
    written = tmp_path / "CMU-1-Small-Region-dicom.dab.npz"
    assert f"npz: {written}" in out.stdout
    h = Heatmap.load_npz(written)
    assert h.slide_path == str(dicom_path) and h.slide_shape == (2967, 2220)
    assert np.nanstd(h.values) > 0.01
    ref = compute_heatmap(SVS, "dab", size=224, stride=160, tissue_threshold=0.5,
                          use_cache=False)
    assert h.grid == ref.grid and np.array_equal(h.values, ref.values, equal_nan=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.svs", "--out", "x"], "missing.svs does not exist"),
        (["run", "{svs}", "--stride", "0", "--out", "{out}"], "stride=0"),
        (["run", "{svs}", "--size", "a,b", "--out", "{out}"], "not a whole number"),
        (["run", "{svs}", "--size", "1,2,3", "--out", "{out}"], "size=[1, 2, 3] must be"),
        (["run", "{svs}", "--batch-size", "0", "--out", "{out}"], "batch_size=0"),
        (["run", "{svs}", "--decode-threads", "-2", "--out", "{out}"],
         "decode_threads=-2 must be a whole number of at least 1, or None to choose it from the "
         "measured costs."),
        (["run", "{svs}", "--size", "5000", "--out", "{out}"], "No patch fits"),
        (["run", "{svs}", "--model", "{out}/nothing.keras", "--out", "{out}"], "nothing.keras"),
        (["run", "{svs}", "--out", "{out}", "--format", "npz,tiff"], "unknown format tiff"),
        (["run", "{svs}", "--mixed-precision", "--out", "{out}"], "float32 only"),
        (["run", "{svs}", "--min-probability", "0.5", "--out", "{out}"],
         "minimum probability applies only to a model with several classes"),
        (["run", "{svs}", "--positive-threshold", "high", "--out", "{out}"],
         "invalid float value: 'high'"),
        (["run", "{svs}", "--storage-options", "{{bad", "--out", "{out}"],
         "--storage-options is not valid JSON (Expecting property name"),
        (["batch", "{svs}", "--storage-options", "[1]", "--out", "{out}"],
         "--storage-options is a JSON list, not an object"),
        (["run", "ftp://host/a.svs", "--out", "{out}"], "ftp:// URLs are not read"),
        (["run", "s3://bucket/a.mrxs", "--out", "{out}"], "read from local files only"),
        # a URL is not a missing file: the heatmap is what is checked before napari starts
        (["open", "s3://bucket/a.svs", "--heatmap", "{out}/none.npz"],
         "none.npz does not exist or is not a file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    if not SVS.exists() and any("{svs}" in a for a in args):
        pytest.skip(f"real slide {SVS} is absent")
    args = [a.format(svs=SVS, out=tmp_path) for a in args]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_help_lists_every_option():
    out = patchheat("run", "--help", timeout=60)
    assert out.returncode == 0
    for option in ("--model", "--level", "--mpp", "--size", "--stride", "--rate", "--padding",
                   "--batch-size", "--decode-threads", "--tissue-threshold", "--resize",
                   "--mixed-precision", "--backend", "--cache-dir", "--no-cache", "--out",
                   "--format", "--positive-threshold", "--min-probability", "csv_wsinfer"):
        assert option in out.stdout
    for command in ("demo", "open"):
        assert patchheat(command, "--help", timeout=60).returncode == 0


SAMPLE_TEXT = {"int": "3", "float": "0.25", "pair": "5,6", "path": "somewhere"}  # no default


def parse_run(*flags):
    return build_parser().parse_args(["run", "s.svs", "--out", "o", *flags])


@pytest.mark.parametrize("f", dataclasses.fields(RunOptions), ids=lambda f: f.name)
def test_every_run_option_has_a_flag(f):
    flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    kind = f.metadata["kind"]
    value = f.metadata["choices"][-1] if kind == "choice" else SAMPLE_TEXT.get(kind)
    args = parse_run(flag) if kind == "switch" else parse_run(flag, value)
    assert getattr(run_options(args), f.name) != getattr(RunOptions(), f.name)


def test_flags_build_run_options():
    # the CLI (like the dock) skips glass by default; the API computes every patch
    assert run_options(parse_run()) == RunOptions(tissue_threshold=INTERACTIVE_TISSUE_THRESHOLD)
    assert RunOptions().tissue_threshold == 0 < INTERACTIVE_TISSUE_THRESHOLD
    args = parse_run("--level", "2", "--size", "224,299", "--stride", "100", "--rate", "2",
                     "--padding", "same", "--batch-size", "8", "--tissue-threshold", "0.5",
                     "--resize", "--mixed-precision", "--backend", "NumPy", "--cache-dir", "c",
                     "--no-cache")
    assert run_options(args) == RunOptions(
        level=2, size=(224, 299), stride=100, rate=2, padding="SAME", batch_size=8,
        tissue_threshold=0.5, resize=True, mixed_precision=True, backend="numpy",
        cache_dir=Path("c"), use_cache=False)


def test_level_and_mpp_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "s.svs", "--out", "o", "--level", "1", "--mpp", "2"])
    assert info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_run_writes_every_export_format_like_export_heatmap(tmp_path):
    import skimage.data
    import tifffile

    from napari_patchheat.export import export_heatmap, read_csv, read_ome_tiff, read_ome_zarr

    slide = tmp_path / "ihc.tif"
    tifffile.imwrite(slide, skimage.data.immunohistochemistry(), photometric="rgb")
    out = patchheat("run", slide, "--model", "dab", "--size", "64", "--stride", "32",
                    "--no-cache", "--out", tmp_path / "cli",
                    "--format", "npz,ometiff,omezarr,slide_raster,png,csv,csv_wsinfer,geojson")
    assert out.returncode == 0, out.stderr[-3000:]
    h = Heatmap.load_npz(tmp_path / "cli" / "ihc.dab.npz")
    with open_slide(slide) as s:  # the thumbnail the CLI passes
        api = export_heatmap(h, tmp_path / "api", "ihc.dab", thumbnail=s.thumbnail(2000))
    cli_files = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert cli_files == sorted([p.name for p in api.values()] + ["ihc.dab.npz"])
    np.testing.assert_array_equal(read_ome_tiff(tmp_path / "cli" / "ihc.dab.ome.tif").values,
                                  h.values)
    np.testing.assert_array_equal(read_ome_zarr(tmp_path / "cli" / "ihc.dab.ome.zarr").values,
                                  h.values)
    for name in ("ihc.dab.csv", "ihc.dab.wsinfer.csv", "ihc.dab.geojson", "ihc.dab.png",
                 "ihc.dab.raster.tif"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes()
    assert len(read_csv(tmp_path / "cli" / "ihc.dab.csv").rows) == h.n_computed == 15 * 15



# --- how GeoJSON tiles are classified ------------------------------------------------------------
def ihc_slide(tmp_path: Path) -> Path:
    import skimage.data
    import tifffile

    slide = tmp_path / "ihc.tif"
    tifffile.imwrite(slide, skimage.data.immunohistochemistry(), photometric="rgb")
    return slide


def classified(geojson: Path, heatmap: Heatmap) -> tuple[np.ndarray, dict]:
    """(rows, cols) bool of the tiles with a classification, and the rule the file states."""
    import json

    doc = json.loads(geojson.read_text())
    out = np.zeros(heatmap.grid.shape, bool)
    for feat in doc["features"]:
        props = feat["properties"]
        if "classification" in props:
            assert props["classification"]["name"] == heatmap.class_names[0]
            out[props["patchheat"]["row"], props["patchheat"]["col"]] = True
    return out, doc["patchheat"]["classification"]


def test_positive_threshold_flag_reaches_the_geojson_and_the_heatmap(tmp_path):
    from napari_patchheat.export import export_heatmap

    slide = ihc_slide(tmp_path)
    code = main(["run", str(slide), "--model", "dab", "--size", "64", "--stride", "32",
                 "--no-cache", "--positive-threshold", "0.5", "--out", str(tmp_path / "cli"),
                 "--format", "npz,geojson"])
    assert code == 0
    h = Heatmap.load_npz(tmp_path / "cli" / "ihc.dab.npz")
    values = h.values[..., 0]
    assert 0 < (values >= 0.5).sum() < h.n_computed == values.size  # values vary around it
    got, rule = classified(tmp_path / "cli" / "ihc.dab.geojson", h)
    assert np.array_equal(got, values >= 0.5) and rule["positive_threshold"] == 0.5
    assert h.extra["positive_threshold"] == 0.5  # the heatmap's files record it
    api = export_heatmap(h, tmp_path / "api", "ihc.dab", "geojson",
                         positive_threshold=h.extra["positive_threshold"])
    assert api["geojson"].read_bytes() == (tmp_path / "cli" / "ihc.dab.geojson").read_bytes()


def save_small_cnn(path: Path, outputs: int, activation: str) -> Path:
    """A small Keras CNN (fixed random weights) on 32 x 32 patches, saved to ``path``."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(outputs, activation=activation)(x)).save(path)
    return path


def test_the_model_cards_positive_threshold_classifies_and_the_flag_overrides_it(tmp_path):
    import json

    slide = ihc_slide(tmp_path)
    model = save_small_cnn(tmp_path / "tumour.keras", 1, "sigmoid")
    ref = compute_heatmap(slide, model, size=32, stride=32, use_cache=False).values[..., 0]
    assert np.unique(ref).size > 100  # values vary
    card_t, flag_t = (float(np.quantile(ref, q, method="lower")) for q in (0.3, 0.8))
    (tmp_path / "tumour.json").write_text(json.dumps(
        {"class_names": ["tumour"], "positive_threshold": card_t}))
    for out, flags, threshold in (("card", [], card_t),
                                  ("flag", ["--positive-threshold", repr(flag_t)], flag_t)):
        code = main(["run", str(slide), "--model", str(model), "--size", "32", "--no-cache",
                     "--out", str(tmp_path / out), "--format", "npz,geojson", *flags])
        assert code == 0
        h = Heatmap.load_npz(tmp_path / out / "ihc.tumour.npz")
        values = h.values[..., 0]
        assert 0 < (values >= threshold).sum() < values.size
        got, rule = classified(tmp_path / out / "ihc.tumour.geojson", h)
        assert np.array_equal(got, values >= threshold)
        assert rule["positive_threshold"] == threshold == h.extra["positive_threshold"]


def test_a_threshold_that_does_not_fit_the_model_stops_before_the_run(tmp_path, capsys):
    model = save_small_cnn(tmp_path / "three.keras", 3, "softmax")
    code = main(["run", str(ihc_slide(tmp_path)), "--model", str(model), "--size", "32",
                 "--no-cache", "--positive-threshold", "0.5", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "positive threshold applies only to a model with one output" in err
    assert "patches" not in err and not (tmp_path / "out").exists()  # nothing ran
    (tmp_path / "three.json").write_text('{"positive_threshold": 0.5, "class_names": ["a", "b"]}')
    assert main(["run", str(ihc_slide(tmp_path)), "--model", str(model), "--out",
                 str(tmp_path / "out")]) == 2
    assert "positive_threshold is for models with one output" in capsys.readouterr().err


class FailsOnSecondBatch:
    """The built-in dab model, failing on its second batch as a broken user model can."""

    def __init__(self):
        from napari_patchheat import load_model

        self.inner = load_model("dab")
        self.name, self.class_names, self.input_size = "dab", self.inner.class_names, None
        self.fingerprint, self.calls = "fails-on-second-batch", 0

    def check_patch_size(self, size):
        return None

    def predict(self, batch):
        self.calls += 1
        if self.calls == 2:
            raise ValueError("the model broke")
        return self.inner.predict(batch)


def test_a_failed_run_exits_1_and_keeps_its_patches(tmp_path, monkeypatch, capsys):
    import skimage.data
    import tifffile

    import napari_patchheat.models as models

    slide = tmp_path / "ihc.tif"
    tifffile.imwrite(slide, skimage.data.immunohistochemistry(), photometric="rgb")
    broken = FailsOnSecondBatch()
    monkeypatch.setattr(models, "load_model", lambda spec, **options: broken)
    code = main(["run", str(slide), "--model", "broken", "--size", "32", "--batch-size", "10",
                 "--no-cache", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "the model broke" in err
    partial = Heatmap.load_npz(tmp_path / "out" / "ihc.dab.partial.npz")
    assert partial.n_computed == 10
    assert "kept 10 computed patches" in err


def test_a_builtin_model_on_a_fluorescence_slide_warns(tmp_path, ndpi_path, svs_path, capsys):
    """The DAPI NDPI (dark background) through 'hematoxylin' warns; the brightfield SVS does
    not; both still run."""
    from napari_patchheat.tissue import FLUORESCENCE_MODEL_WARNING

    warning = FLUORESCENCE_MODEL_WARNING.format(model="hematoxylin")
    for slide, warns in ((ndpi_path, True), (svs_path, False)):
        # the coarsest level (within 2x of every slide's coarsest: --mpp refuses farther ones)
        code = main(["run", str(slide), "--model", "hematoxylin", "--mpp", "1.8", "--size", "64",
                     "--no-cache", "--out", str(tmp_path / slide.stem)])
        err = capsys.readouterr().err
        assert code == 0 and (warning in err) == warns, err


# --- reliability: outputs checked first, names sanitised, signals, bad files, the cache ------


def test_out_that_is_a_file_fails_before_the_run(tmp_path, capsys):
    a_file = tmp_path / "some_file"
    a_file.write_text("")
    code = main(["run", str(ihc_slide(tmp_path)), "--out", str(a_file)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"cannot write the output folder {a_file}" in err and "is a file, not a folder" in err
    assert "patches" not in err  # nothing ran (the subprocess check below times it)


@pytest.mark.parametrize("out, why", [
    ("long", "File name too long"), ("/proc/patchheat-out", "No such file or directory")])
def test_out_that_fails_only_when_made_fails_before_the_run(tmp_path, capsys, out, why):
    # os.access on the nearest folder sees nothing wrong with these: only making them does
    out = tmp_path / ("x" * 300) if out == "long" else Path(out)
    code = main(["run", str(ihc_slide(tmp_path)), "--out", str(out), "--no-cache"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and why in err
    assert err.startswith(f"patchheat: error: cannot write the output folder {out}: ")
    assert "patches" not in err  # nothing ran


def test_out_that_is_a_file_fails_in_under_a_second_as_a_command(tmp_path):
    a_file = tmp_path / "some_file"
    a_file.write_text("")
    started = time.monotonic()
    out = patchheat("run", ihc_slide(tmp_path), "--out", a_file, timeout=60)
    took = time.monotonic() - started
    assert out.returncode == 2 and "is a file, not a folder" in out.stderr
    print(f"--out a file: exit 2 after {took:.2f} s")  # measured, never asserted (STYLE)


@pytest.mark.parametrize("card_name", ["H&E / IHC tumour model", "x/../../../escaped"])
def test_a_model_card_name_is_a_safe_file_name_inside_out(tmp_path, card_name):
    import json

    model = save_small_cnn(tmp_path / "m.keras", 1, "sigmoid")
    (tmp_path / "m.json").write_text(json.dumps({"class_names": ["t"], "name": card_name}))
    out = tmp_path / "deep" / "er" / "out"
    assert main(["run", str(ihc_slide(tmp_path)), "--model", str(model), "--size", "32",
                 "--no-cache", "--out", str(out)]) == 0
    written = list(out.iterdir())
    assert len(written) == 1 and written[0].name.startswith("ihc.") and "/" not in written[0].name
    assert Heatmap.load_npz(written[0]).model_name == card_name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "ihc.tif", "m.json", "m.keras"]


def test_a_successful_rerun_removes_the_stale_partial(tmp_path):
    slide, out = ihc_slide(tmp_path), tmp_path / "out"
    out.mkdir()
    stale = out / "ihc.dab.partial.npz"
    stale.write_bytes(b"an interrupted run's")
    assert main(["run", str(slide), "--size", "64", "--no-cache", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ihc.dab.npz"]


def test_sigterm_keeps_the_partial_heatmap_and_exits_143(tmp_path):
    slide = ihc_slide(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "napari_patchheat.cli", "run", str(slide),
                             "--size", "8", "--stride", "1", "--batch-size", "64", "--no-cache",
                             "--tissue-threshold", "0", "--out", str(tmp_path / "out")],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = ""
    while " p/s " not in seen:  # the progress line: a batch is computed
        seen += proc.stderr.read(50)
        assert proc.poll() is None
    proc.terminate()
    err = proc.stderr.read()
    assert proc.wait(60) == 143 and "kept" in err and "Traceback" not in err
    assert "\npatchheat: interrupted" in err  # on a line of its own, not glued to the bar
    partial = Heatmap.load_npz(tmp_path / "out" / "ihc.dab.partial.npz")
    assert 0 < partial.n_computed < partial.grid.n_patches


def test_tensorflows_start_up_lines_stay_off_the_terminal(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    out = patchheat("run", ihc_slide(tmp_path), "--model", bad, "--out", tmp_path / "o",
                    timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]  # one line, the error
    assert out.stderr.startswith("patchheat: error: ") and "bad.keras" in out.stderr


def test_cache_warnings_are_one_line_and_the_run_goes_on(tmp_path, capsys):
    a_file = tmp_path / "cache-is-a-file"
    a_file.write_text("")
    assert main(["run", str(ihc_slide(tmp_path)), "--size", "64", "--cache-dir", str(a_file),
                 "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err.splitlines()
    warns = [line for line in err if line.startswith("patchheat: warning: ")]
    assert len(warns) == 1 and "results will not be cached" in warns[0]
    assert (tmp_path / "out" / "ihc.dab.npz").is_file()


def test_cache_info_and_clear(tmp_path, capsys):
    slide, cache_dir = ihc_slide(tmp_path), tmp_path / "runs"
    assert main(["run", str(slide), "--size", "64", "--cache-dir", str(cache_dir),
                 "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert main(["cache", "info", "--cache-dir", str(cache_dir)]) == 0
    assert f"{cache_dir}: 1 cached run(s), 0 set aside" in capsys.readouterr().out
    assert main(["cache", "clear", "--cache-dir", str(cache_dir)]) == 0
    assert "cleared" in capsys.readouterr().out and not cache_dir.exists()


def test_cache_info_and_clear_count_the_built_zoomed_out_levels(tmp_path, capsys, monkeypatch):
    """Without --cache-dir, `cache` also covers coarse/ (built levels of huge images)."""
    from napari_patchheat.cache import coarse_dir, runs_dir

    monkeypatch.setenv("PATCHHEAT_CACHE_DIR", str(tmp_path / "cache"))
    coarse_dir().mkdir(parents=True)
    (coarse_dir() / "a-1.tif").write_bytes(b"x" * 3_000_000)
    assert main(["run", str(ihc_slide(tmp_path)), "--size", "64", "--out",
                 str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"{runs_dir()}: 1 cached run(s)" in out
    assert f"{coarse_dir()}: 1 file(s) of zoomed-out levels built for huge images, 3.0 MB" in out
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert f"cleared {coarse_dir()}: 3.0 MB freed" in out and f"cleared {runs_dir()}" in out
    assert not coarse_dir().exists() and not runs_dir().exists()
    assert (tmp_path / "cache").is_dir()  # the rest of the cache folder (the sample slides) stays


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip", b"just text"])
def test_open_with_a_bad_heatmap_is_one_line_before_napari_starts(tmp_path, content):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    out = patchheat("open", "--heatmap", bad, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("patchheat: error: ") and len(out.stderr.splitlines()) == 1
    assert f"{bad} cannot be read as a heatmap written by napari-patchheat" in out.stderr
    missing = patchheat("open", "--heatmap", tmp_path / "missing.npz", timeout=120)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_open_with_a_zarr_folder_that_is_no_heatmap_is_one_line(tmp_path):
    import zarr

    zarr.open_group(tmp_path / "image.ome.zarr", mode="w", zarr_format=3).attrs["ome"] = {}
    out = patchheat("open", "--heatmap", tmp_path / "image.ome.zarr", timeout=120)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1, out.stderr
    assert "image.ome.zarr cannot be read as a heatmap written by napari-patchheat (its group " \
           "has no 'patchheat' attribute)" in out.stderr


def test_bad_numbers_and_empty_format_lists_are_refused(tmp_path, capsys):
    for args, message in ((["--mpp", "inf"], "inf must be a number above 0"),
                          (["--mpp", "-1"], "must be a number above 0"),
                          (["--format", ","], "unknown format ','")):
        with pytest.raises(SystemExit) as exit_:
            main(["run", "slide.svs", "--out", str(tmp_path), *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_values(tmp_path):
    """Killed without a chance to flush: the cache keeps only whole committed batches."""
    import signal

    slide = ihc_slide(tmp_path)
    args = ["run", str(slide), "--size", "8", "--stride", "1", "--batch-size", "64",
            "--tissue-threshold", "0", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out")]
    proc = subprocess.Popen([sys.executable, "-m", "napari_patchheat.cli", *args],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = ""
    while "/" not in seen.rpartition("]")[2] or " 0/" in seen[-40:]:  # some batches done
        seen += proc.stderr.read(100)
        assert proc.poll() is None
    time.sleep(0.7)  # past CACHE_FLUSH_S: some batches are committed
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL
    again = patchheat(*args)
    assert again.returncode == 0, again.stderr
    resumed = again.stderr.split(" to compute")[0].rpartition(", ")[2]
    total = 505 * 505
    assert 0 < int(resumed.replace(",", "")) < total  # it resumed, not restarted
    ref = compute_heatmap(slide, "dab", size=8, stride=1, use_cache=False)
    np.testing.assert_array_equal(Heatmap.load_npz(tmp_path / "out" / "ihc.dab.npz").values,
                                  ref.values)


def test_run_builds_a_huge_single_level_tiffs_zoomed_out_views_once(tmp_path, capsys,
                                                                   monkeypatch):
    """As napari does on opening one: the first run builds the views into coarse/ (its tissue
    mask reads them), later runs reuse them, and the heatmap is the lazily computed levels'."""
    import skimage.data
    import tifffile

    from napari_patchheat.cache import coarse_dir
    from napari_patchheat.slide import coarse

    monkeypatch.setenv("PATCHHEAT_CACHE_DIR", str(tmp_path / "cache"))
    slide = tmp_path / "big.tif"
    tifffile.imwrite(slide, np.tile(skimage.data.immunohistochemistry(), (8, 6, 1)),
                     tile=(256, 256), photometric="rgb", compression="zlib")  # 4096 x 3072
    args = [str(slide), "--model", "dab", "--size", "64", "--tissue-threshold", "0.5",
            "--no-cache"]

    def run(out: str) -> str:
        assert main(["run", *args, "--out", str(tmp_path / out)]) == 0
        return capsys.readouterr().err

    assert "building" not in run("lazy")  # not huge at the default threshold: lazy levels
    assert not coarse_dir().exists()
    monkeypatch.setattr(coarse, "COARSE_BUILD_MIN_PX", 2**20)
    for bad in (["--model", str(tmp_path / "missing.keras")], ["--level", "9"]):  # at once
        assert main(["run", *args, *bad, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert "building" not in err and ("missing.keras" in err or "level=9" in err), err
    assert not coarse_dir().exists()
    monkeypatch.setenv("PATCHHEAT_CACHE_DIR", str(slide))  # a file: nothing can be built there
    assert "patchheat: warning: the zoomed-out views of big.tif could not be built" \
        in run("unbuilt")  # and the run goes on, on the lazy levels
    monkeypatch.setenv("PATCHHEAT_CACHE_DIR", str(tmp_path / "cache"))
    assert not coarse_dir().exists()
    assert "building the zoomed-out views of big.tif once: 100%" in run("built")
    built = list(coarse_dir().iterdir())
    assert len(built) == 1
    assert "building" not in run("again") and list(coarse_dir().iterdir()) == built
    lazy = Heatmap.load_npz(tmp_path / "lazy" / "big.dab.npz")
    assert 0 < lazy.n_computed < lazy.values.shape[0] * lazy.values.shape[1]  # the mask skips
    assert np.nanstd(lazy.values) > 0.01
    for out in ("unbuilt", "built", "again"):
        np.testing.assert_array_equal(Heatmap.load_npz(tmp_path / out / "big.dab.npz").values,
                                      lazy.values)


def test_the_console_script_is_the_quiet_starter():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "patchheat"]
    assert script.value == "napari_patchheat._script:main"


def test_ctrl_c_while_the_command_is_still_importing_is_one_line():
    # the console script's module installs its handler before it imports the command: a SIGINT
    # in that import (here: sent once the handler is there) is one line and exit code 130
    program = ("import os, signal, time\n"
               "import napari_patchheat._script as script\n"
               "assert signal.getsignal(signal.SIGINT) is script._interrupted_while_starting\n"
               "os.kill(os.getpid(), signal.SIGINT)\n"
               "time.sleep(10)\n")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stderr) == (130, "patchheat: interrupted\n")


def test_a_command_started_with_ctrl_c_ignored_keeps_ignoring_it():
    # `patchheat batch ... &` in a script starts with SIGINT ignored: it must stay so
    import signal

    program = ("import signal, sys\n"
               "import napari_patchheat._script as script\n"
               "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
               "sys.argv = ['patchheat', 'cache', 'info']\n"
               "script.main()\n"
               "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
               "print('ignored')\n")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True,
                         text=True, timeout=60,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert out.returncode == 0 and out.stdout.strip().endswith("ignored"), out.stderr


def test_run_on_an_s3_url_with_storage_options_equals_the_local_run(s3, svs_path, tmp_path,
                                                                    capsys, monkeypatch):
    """``patchheat run s3://... --storage-options JSON`` (no keys in the environment) writes
    the local file's heatmap, named for the object."""
    import json

    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    flags = ["--model", "dab", "--size", "64", "--stride", "64", "--no-cache"]
    assert main(["run", str(svs_path), *flags, "--out", str(tmp_path / "local")]) == 0
    assert main(["run", s3.url(svs_path.name), *flags, "--out", str(tmp_path / "s3"),
                 "--storage-options", json.dumps(s3.storage_options)]) == 0
    assert "CMU-1-Small-Region.svs: level 0" in capsys.readouterr().err
    want = Heatmap.load_npz(tmp_path / "local" / "CMU-1-Small-Region.dab.npz")
    got = Heatmap.load_npz(tmp_path / "s3" / "CMU-1-Small-Region.dab.npz")
    assert np.nanstd(want.values) > 0 and got.grid == want.grid
    np.testing.assert_array_equal(got.values, want.values)
    assert got.slide_path == s3.url(svs_path.name)
