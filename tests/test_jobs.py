"""The job layer's own pieces; ``run_job`` end to end is tested through the CLI (test_cli.py)
and the batch (test_batch.py), which both run it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchheat.export import ClassRule
from napari_patchheat.jobs import JobOutputs, run_job
from napari_patchheat.models import load_model


def test_job_outputs_are_one_frozen_record_with_formats_as_a_tuple():
    outputs = JobOutputs(["npz", "png"], mpp=2.0)
    assert outputs.formats == ("npz", "png") and outputs == JobOutputs(("npz", "png"), 2.0)
    with pytest.raises(AttributeError):
        outputs.mpp = 1.0  # type: ignore[misc]


def test_the_class_rule_fits_the_model():
    dab = load_model("dab")  # one output, no threshold of its own
    assert JobOutputs().class_rule(dab) == ClassRule(("dab_positive",))
    assert JobOutputs(positive_threshold=0.7).class_rule(dab).positive_threshold == 0.7
    with pytest.raises(ValueError, match="only to a model with several classes"):
        JobOutputs(min_probability=0.5).class_rule(dab)


def test_a_run_on_an_s3_url_equals_the_run_on_the_local_file(s3_env, svs_path, tmp_path):
    """The 'dab' heatmap of the CMU SVS read from moto's S3 (keys and endpoint from the
    environment): the same grid and values as from the file, the URL recorded as it is."""
    from napari_patchheat.heatmap import Heatmap
    from napari_patchheat.options import RunOptions

    options = RunOptions(size=64, stride=48, padding="SAME", tissue_threshold=0.1,
                         use_cache=False)
    url = s3_env.url(svs_path.name)
    local = run_job(svs_path, "dab", tmp_path / "local", options=options, quiet=True)
    remote = run_job(url, "dab", tmp_path / "remote", options=options, quiet=True)
    assert remote["npz"].name == local["npz"].name == "CMU-1-Small-Region.dab.npz"
    want, got = Heatmap.load_npz(local["npz"]), Heatmap.load_npz(remote["npz"])
    assert np.nanstd(want.values) > 0 and 0 < want.n_computed < want.grid.n_patches
    assert got.grid == want.grid and got.level == want.level
    np.testing.assert_array_equal(got.values, want.values)
    assert got.slide_path == url and want.slide_path == str(svs_path)


RUN = ["--model", "dab", "--size", "224", "--stride", "160", "--padding", "SAME",
       "--tissue-threshold", "0.1", "--no-cache"]


def test_several_slides_in_one_run_write_what_their_single_runs_write(svs_path, ndpi_path,
                                                                       tmp_path, capsys):
    """``patchheat run A B``: each slide's files under the names, and with the values, of its
    own run, bit for bit."""
    from napari_patchheat.cli import main
    from napari_patchheat.heatmap import Heatmap

    both, alone = tmp_path / "both", tmp_path / "alone"
    assert main(["run", str(svs_path), str(ndpi_path), *RUN, "--out", str(both)]) == 0
    printed = capsys.readouterr().out
    for slide in (svs_path, ndpi_path):
        assert main(["run", str(slide), *RUN, "--out", str(alone)]) == 0
    names = ["CMU-1-Small-Region.dab.npz", "test3-DAPI-2-387.dab.npz"]
    assert sorted(p.name for p in both.iterdir()) == names
    assert printed.splitlines() == [f"npz: {both / name}" for name in names]
    values = []
    for name in names:
        want, got = Heatmap.load_npz(alone / name), Heatmap.load_npz(both / name)
        assert got.grid == want.grid and got.slide_path == want.slide_path
        assert np.array_equal(got.values, want.values, equal_nan=True)
        values.append(want.values)
    assert np.nanstd(values[0]) > 0.01  # the reference varies
    assert values[0].shape != values[1].shape  # and each slide's is its own


def test_a_missing_slide_among_several_is_one_line_and_the_others_run(svs_path, tmp_path,
                                                                       capsys):
    from napari_patchheat.cli import main

    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "missing.svs"), str(svs_path), *RUN, "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"patchheat: error: {tmp_path / 'missing.svs'} does not exist" in err
    assert "patchheat: 1 of 2 slides done; failed: missing.svs" in err
    assert "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["CMU-1-Small-Region.dab.npz"]


def test_slides_whose_files_would_collide_are_refused_before_anything_runs(
        svs_path, ndpi_path, tmp_path, capsys):
    """Two slides of one stem (a/x.svs, b/x.ndpi) would write the same x.dab.npz: one line,
    exit 2, no folder made; the same file given twice runs once."""
    from napari_patchheat.cli import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.svs").symlink_to(svs_path)
    (tmp_path / "b" / "x.ndpi").symlink_to(ndpi_path)
    out = tmp_path / "out"
    code = main(["run", str(tmp_path / "a" / "x.svs"), str(tmp_path / "b" / "x.ndpi"), *RUN,
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists()
    assert "would write the same files (x.*): run them with different --out" in err
    assert main(["run", str(svs_path), str(svs_path), *RUN, "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"npz: {out / 'CMU-1-Small-Region.dab.npz'}"]


def test_a_bad_model_stops_several_slides_at_once(svs_path, ndpi_path, tmp_path, capsys):
    from napari_patchheat.cli import main

    out = tmp_path / "out"
    code = main(["run", str(svs_path), str(ndpi_path), "--model", str(tmp_path / "no.keras"),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no.keras" in err
    assert not out.exists()
