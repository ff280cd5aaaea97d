"""Two heatmaps compared: A - B cell for cell where they share a grid, one sentence where not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_patchheat import PatchGrid, compute_heatmap
from napari_patchheat.analysis.compare import difference, symmetric_limits, why_no_difference
from napari_patchheat.heatmap import Heatmap


@pytest.fixture(scope="module")
def dab_and_hematoxylin(svs_path):
    """The built-in dab and hematoxylin heatmaps of the CMU SVS on one grid."""
    return [compute_heatmap(svs_path, model, size=64, stride=64, use_cache=False)
            for model in ("dab", "hematoxylin")]


def test_the_difference_is_a_minus_b_cell_for_cell_on_real_heatmaps(dab_and_hematoxylin):
    a, b = dab_and_hematoxylin
    assert why_no_difference(a, b) == ""
    diff = difference(a, b)
    va, vb = a.values[..., 0], b.values[..., 0]
    known = ~np.isnan(va) & ~np.isnan(vb)
    assert known.sum() > 100 and np.nanstd(va) > 0.01 and np.nanstd(vb) > 0.01  # values vary
    assert np.nanstd(diff) > 0.01
    np.testing.assert_array_equal(diff[known], va[known] - vb[known])
    np.testing.assert_array_equal(np.isnan(diff), ~known)
    lo, hi = symmetric_limits(diff)
    assert lo == -hi and hi == pytest.approx(np.nanmax(np.abs(diff)))


def test_nan_where_either_is_nan_and_classes_by_name():
    grid = PatchGrid(40, 60, 10, 10)
    rng = np.random.default_rng(1)
    va, vb = rng.random((4, 6, 2)), rng.random((4, 6, 1))
    va[0, 0], vb[1, 2] = np.nan, np.nan
    a = Heatmap(va, grid, 0, (1.0, 1.0), ("x", "y"))
    b = Heatmap(vb, grid, 0, (1.0, 1.0), ("z",))
    diff = difference(a, b, "y", "z")
    assert np.isnan(diff[0, 0]) and np.isnan(diff[1, 2]) and np.isnan(diff).sum() == 2
    assert diff[3, 5] == np.float32(va[3, 5, 1]) - np.float32(vb[3, 5, 0])
    assert symmetric_limits(np.full((2, 2), np.nan)) == (-1.0, 1.0)


@pytest.mark.parametrize("change, sentence", [
    (dict(stride=(224, 224)), "no difference map: A's stride is 112, B's is 224"),
    (dict(size=(64, 128)), "no difference map: A's patch size is 224, B's is 64 x 128"),
    (dict(padding="SAME"), "no difference map: A's padding is VALID, B's is SAME"),
    (dict(width=1500), "no difference map: A's level width is 1200, B's is 1500"),
])
def test_a_different_grid_is_one_sentence(change, sentence):
    grid = PatchGrid(1000, 1200, 224, 112)
    a = Heatmap.empty(grid, ("x",), level=1, downsample=(4.0, 4.0))
    other = dataclasses.replace(grid, **change)
    b = Heatmap.empty(other, ("x",), level=1, downsample=(4.0, 4.0))
    assert why_no_difference(a, b) == sentence
    with pytest.raises(ValueError, match=sentence):
        difference(a, b)


def test_another_level_or_slide_is_one_sentence(tmp_path):
    grid = PatchGrid(1000, 1200, 224, 112)
    a = Heatmap.empty(grid, ("x",), level=1, downsample=(4.0, 4.0), slide_path=str(tmp_path / "a"))
    b = dataclasses.replace(a, level=0)
    assert why_no_difference(a, b) == "no difference map: A's level is 1, B's is 0"
    c = dataclasses.replace(a, slide_path=str(tmp_path / "c"))
    assert why_no_difference(a, c) == "no difference map: A and B were computed on different slides"
