"""test_time.py: the settings of test-time augmentation and Monte-Carlo dropout, sd names."""

from __future__ import annotations

import pytest

from napari_patchheat.test_time import PLAIN, TestTime, n_predicted, sd_name


@pytest.mark.parametrize("names, predicted", [
    (("a", "b", "a sd", "b sd"), 2),
    (("dab_positive", "dab_positive sd"), 1),
    (("a", "a sd", "b"), 3),  # sd channels come last, one per class
    (("a", "b", "b sd", "a sd"), 4),  # ... in the classes' order
    (("x sd",), 1),
    ((), 0),
])
def test_sd_channels_are_the_last_ones_named_after_the_classes(names, predicted):
    assert n_predicted(names) == predicted
    assert sd_name("tumour") == "tumour sd"


def test_passes_and_resolution():
    card = TestTime("dihedral", 30, True)
    assert (card.transforms, card.passes, card.active) == (8, 240, True)
    assert (PLAIN.passes, PLAIN.active) == (1, False)
    assert card.resolve(None, None, None) == card
    assert card.resolve("none", 1, False) == PLAIN
    assert card.resolve("FLIPS", None, None) == TestTime("flips", 30, True)
    assert TestTime("flips").passes == 4 and TestTime(mc_samples=3).passes == 3


@pytest.mark.parametrize("fields, message", [
    (dict(tta="rot90"), r"^tta='rot90' is unknown: use 'none', 'flips' \(4 transforms\) or "
                        r"'dihedral' \(8\)\.$"),
    (dict(tta=None), r"^tta=None is unknown"),
    (dict(mc_samples=0), r"^mc_samples=0 must be a whole number of at least 1 \(1: dropout "
                         r"off\)\.$"),
    (dict(mc_samples=True), r"^mc_samples=True must be"),
    (dict(uncertainty=True), r"^uncertainty needs more than one pass per patch: add test-time "
                             r"augmentation \(tta='flips' or 'dihedral'\) or Monte-Carlo "
                             r"dropout \(mc_samples > 1\)\.$"),
])
def test_bad_settings_are_one_sentence(fields, message):
    with pytest.raises(ValueError, match=message):
        TestTime(**fields)
