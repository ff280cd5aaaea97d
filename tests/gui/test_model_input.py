"""The dock's "Model input" section: a control per RunOptions field of the section, and a real
run normalised from the dock (TensorFlow in the runner's process only, never in this one)."""

from __future__ import annotations

import dataclasses

from gui_helpers import RUN_TIMEOUT_MS

from napari_patchheat._qt.model_input import section_fields
from napari_patchheat.options import MODEL_INPUT, RunOptions


def test_the_section_holds_a_control_per_field_of_it(widget):
    names = [f.name for f in section_fields()]
    assert {"stain_norm", "stain_target"} <= set(names)
    assert list(widget.model_input.controls) == names
    assert MODEL_INPUT in widget.collapsibles  # a section of its own
    assert widget.model_input.run_fields() == {
        f.name: f.default for f in dataclasses.fields(RunOptions) if f.name in names}
    assert widget.model_input.controls["stain_norm"].choices == (
        "none", "reinhard", "macenko", "vahadane")


def test_test_time_controls_default_to_the_model_card_and_set_each_field(widget):
    """TTA, dropout passes and uncertainty sit in the section; at first they leave the choice
    to the model card (None), and each control sets its field."""
    controls = widget.model_input.controls
    assert {"tta", "mc_samples", "uncertainty"} <= set(controls)
    fields = widget.model_input.run_fields()
    assert (fields["tta"], fields["mc_samples"], fields["uncertainty"]) == (None, None, None)
    assert controls["tta"].choices == ("model card's", "none", "flips", "dihedral")
    assert controls["mc_samples"].native.specialValueText() == "model card's"
    controls["tta"].value = "dihedral"
    controls["mc_samples"].value = 8
    controls["uncertainty"].value = "on"
    options = widget.run_options()
    assert (options.tta, options.mc_samples, options.uncertainty) == ("dihedral", 8, True)
    controls["uncertainty"].value = "off"
    controls["mc_samples"].value = 0
    assert widget.run_options().uncertainty is False
    assert widget.run_options().mc_samples is None


def test_a_dock_run_normalises_to_the_chosen_target(viewer, widget, qtbot, tmp_path, svs_path,
                                                     ihc_png_path):
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "hematoxylin"
    widget.level.value = 1
    widget.size.value = widget.stride.value = 64
    widget.model_input.controls["stain_norm"].value = "reinhard"
    widget.model_input.controls["stain_target"].value = ihc_png_path
    options = widget.run_options()
    assert (options.stain_norm, options.stain_target) == ("reinhard", ihc_png_path)
    assert widget.run_panel.run()
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    heatmap = widget.display.heatmap
    assert heatmap.n_computed > 0
    fit = heatmap.extra["stain_norm"]
    assert fit["method"] == "reinhard"
    assert fit["source"]["means"] != fit["target"]["means"]  # two stains, both recorded
    # the inspector previews with the run's own fit (fitted in this process, NumPy only)
    preview = widget.inspector.stain
    qtbot.waitUntil(lambda: preview.fit(widget.slide)[1] is not None, timeout=RUN_TIMEOUT_MS)
    assert preview.fit(widget.slide)[1].to_json() == fit
