"""The ``patchheat`` command: run writes what compute_heatmap computes; bad input is one line,
exit 2."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_patchheat import compute_heatmap, open_slide
from napari_patchheat.cli import build_parser, main, run_options
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.options import RunOptions

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


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.svs", "--out", "x"], "missing.svs does not exist"),
        (["run", "{svs}", "--stride", "0", "--out", "{out}"], "stride=0"),
        (["run", "{svs}", "--size", "a,b", "--out", "{out}"], "not a whole number"),
        (["run", "{svs}", "--size", "1,2,3", "--out", "{out}"], "size=[1, 2, 3] must be"),
        (["run", "{svs}", "--batch-size", "0", "--out", "{out}"], "batch_size=0"),
        (["run", "{svs}", "--size", "5000", "--out", "{out}"], "No patch fits"),
        (["run", "{svs}", "--model", "{out}/nothing.keras", "--out", "{out}"], "nothing.keras"),
        (["run", "{svs}", "--out", "{out}", "--format", "npz,tiff"], "unknown format tiff"),
        (["run", "{svs}", "--mixed-precision", "--out", "{out}"], "float32 only"),
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
                   "--batch-size", "--tissue-threshold", "--resize", "--mixed-precision",
                   "--backend", "--cache-dir", "--no-cache", "--out", "--format"):
        assert option in out.stdout
    for command in ("demo", "open"):
        assert patchheat(command, "--help", timeout=60).returncode == 0


SAMPLE_TEXT = {"int": "3", "float": "0.5", "pair": "5,6", "path": "somewhere"}


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
    assert run_options(parse_run()) == RunOptions()
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

    from napari_patchheat.export import export_heatmap, read_csv, read_ome_tiff

    slide = tmp_path / "ihc.tif"
    tifffile.imwrite(slide, skimage.data.immunohistochemistry(), photometric="rgb")
    out = patchheat("run", slide, "--model", "dab", "--size", "64", "--stride", "32",
                    "--no-cache", "--out", tmp_path / "cli",
                    "--format", "npz,ometiff,slide_raster,png,csv,geojson")
    assert out.returncode == 0, out.stderr[-3000:]
    h = Heatmap.load_npz(tmp_path / "cli" / "ihc.dab.npz")
    with open_slide(slide) as s:  # the thumbnail the CLI passes
        api = export_heatmap(h, tmp_path / "api", "ihc.dab", thumbnail=s.thumbnail(2000))
    cli_files = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert cli_files == sorted([p.name for p in api.values()] + ["ihc.dab.npz"])
    np.testing.assert_array_equal(read_ome_tiff(tmp_path / "cli" / "ihc.dab.ome.tif").values,
                                  h.values)
    for name in ("ihc.dab.csv", "ihc.dab.geojson", "ihc.dab.png", "ihc.dab.raster.tif"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes()
    assert len(read_csv(tmp_path / "cli" / "ihc.dab.csv").rows) == h.n_computed == 15 * 15



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
