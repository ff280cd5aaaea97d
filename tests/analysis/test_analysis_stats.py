"""Numbers per region: the area is shapely's area of the union of the patch boxes; the values
are numpy's statistics of the computed patches inside; CSV and the terminal table."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_patchheat import PatchGrid
from napari_patchheat.analysis.stats import (
    format_stats,
    region_stats,
    stats_columns,
    union_area,
    write_stats_csv,
)
from napari_patchheat.heatmap import Heatmap


@settings(max_examples=80, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 10), st.integers(1, 10))), st.integers(1, 9),
       st.integers(1, 12), st.integers(1, 3), st.sampled_from(["VALID", "SAME"]),
       st.floats(0.5, 3), st.floats(0.5, 3))
def test_area_is_shapelys_area_of_the_union_of_the_boxes(chosen, size, stride, rate, padding,
                                                         dy, dx):
    e = (size - 1) * rate + 1
    rows, cols = chosen.shape
    grid = PatchGrid((rows - 1) * stride + e, (cols - 1) * stride + e, size, stride, rate,
                     padding)
    mask = np.zeros(grid.shape, bool)
    mask[:rows, :cols] = chosen[: grid.rows, : grid.cols]
    i, j = np.nonzero(mask)
    b = grid.boxes(i, j, (dy, dx))
    reference = shapely.union_all(shapely.box(b[:, 1], b[:, 0], b[:, 3], b[:, 2])).area
    assert union_area(grid, (dy, dx), mask) == pytest.approx(reference, rel=1e-12, abs=1e-9)


def test_numbers_are_numpys_of_the_computed_patches_inside():
    rng = np.random.default_rng(3)
    grid = PatchGrid(200, 300, 20, 10)  # overlapping patches
    values = rng.random((*grid.shape, 2)).astype(np.float32)
    values[:3] = np.nan  # not computed
    h = Heatmap(values, grid, 1, (2.0, 2.0), ("a", "b"), mpp=(0.25, 0.5))
    inside = np.zeros(grid.shape, bool)
    inside[1:9, 4:20] = True
    row = region_stats(h, "r", "roi", inside, 0.6, shapely.box(0, 0, 10, 20))
    chosen = inside.copy()
    chosen[:3] = False
    v = values[chosen].astype(np.float64)
    assert np.std(v[:, 1]) > 0 and row.patches == chosen.sum() == 6 * 16
    for k, name in enumerate("ab"):
        got = row.values[name]
        assert got["mean"] == pytest.approx(v[:, k].mean())
        assert got["median"] == pytest.approx(np.median(v[:, k]))
        assert got["p90"] == pytest.approx(np.percentile(v[:, k], 90))
        assert got["share_above"] == pytest.approx((v[:, k] >= 0.6).mean())
    # boxes 40 x 40 level-0 px every 20 px: 6 rows x 16 cols cover 140 x 340 px
    assert row.area == pytest.approx(140 * 340 * 0.25 * 0.5)
    assert row.region_area == pytest.approx(200 * 0.125) and row.unit == "um2"
    empty = region_stats(h, "none", "roi", np.zeros(grid.shape, bool), 0.6)
    assert empty.patches == 0 and empty.area == 0 and np.isnan(empty.values["a"]["mean"])


def test_csv_and_table(tmp_path):
    grid = PatchGrid(100, 100, 10, 10)
    values = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10, 1)
    h = Heatmap(values, grid, 0, (1.0, 1.0), ("dab",))
    rows = [region_stats(h, "all", "all", h.computed, 0.5),
            region_stats(h, "top", "region", np.arange(100).reshape(10, 10) < 30, 0.5)]
    path = write_stats_csv(rows, h.class_names, tmp_path / "s.csv")
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == stats_columns(["dab"], "px2")
    assert table[2][:6] == ["top", "region", "30", "", "3000.0", "3000.0"]
    assert float(table[1][-1]) == pytest.approx(0.5)  # share at or above 0.5
    text = format_stats(rows, "dab")
    assert "px²" in text and "top" in text and "50.0%" in text
