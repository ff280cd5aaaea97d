"""The job layer's own pieces; ``run_job`` end to end is tested through the CLI (test_cli.py)
and the batch (test_batch.py), which both run it."""

from __future__ import annotations

import pytest

from napari_patchheat.export import ClassRule
from napari_patchheat.jobs import JobOutputs
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
