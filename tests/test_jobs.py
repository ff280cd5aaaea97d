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
