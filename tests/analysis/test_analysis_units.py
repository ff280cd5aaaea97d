"""Regions in a pathologist's terms: areas in mm² (µm² under 0.01 mm²) in fixed point, the
polygon's "region area" and the boxes' "patch area" named apart, a minimum region size on the
real slide's regions, and the share of tissue at or above the threshold."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy import ndimage

from napari_patchheat import PatchGrid, compute_heatmap
from napari_patchheat.analysis import (
    format_area,
    format_stats,
    heatmap_regions,
    region_report,
    sized_regions,
    write_region_report,
)
from napari_patchheat.analysis.regions import FOUR_CONNECTED, above_threshold
from napari_patchheat.cli import main
from napari_patchheat.heatmap import Heatmap


@pytest.mark.parametrize("value, unit, text", [
    (7.099e5, "um2", "0.710 mm²"), (1.2345678e7, "um2", "12.346 mm²"),
    (2.5e9, "um2", "2,500.000 mm²"), (1e4, "um2", "0.010 mm²"), (9999.4, "um2", "9,999 µm²"),
    (64.0, "um2", "64 µm²"), (0.0, "um2", "0 µm²"), (123456.7, "px2", "123,457 px²"),
    (float("nan"), "um2", "")])
def test_areas_are_fixed_point_mm2_and_um2_under_a_hundredth(value, unit, text):
    assert format_area(value, unit) == text
    assert "e+" not in format_area(value, unit)


@pytest.fixture(scope="module")
def dab(svs_path):
    """The real CMU slide's dab heatmap (the stain model: no TensorFlow)."""
    return compute_heatmap(svs_path, "dab", size=64, stride=64, use_cache=False)


def test_a_minimum_size_leaves_out_the_small_regions_and_counts_them(dab, tmp_path):
    t = float(np.nanquantile(dab.values[..., 0], 0.8))
    labels, n = ndimage.label(above_threshold(dab, 0, t), structure=FOUR_CONNECTED)
    sizes = np.bincount(labels.ravel())[1:]
    assert n > 5 and (sizes < 4).sum() > 0 and (sizes >= 4).sum() > 0  # both kinds exist
    every = heatmap_regions(dab, 0, t)
    kept, left_out = sized_regions(dab, 0, t, min_cells=4)
    assert len(every) == n and left_out == (sizes < 4).sum() and len(kept) == (sizes >= 4).sum()
    assert [len(r.patches[0]) for r in kept] == sorted(sizes[sizes >= 4].tolist(), reverse=True)
    name = dab.class_names[0]
    assert [r.name for r in kept] == [f"{name} >= {t:g} #{k}" for k in range(1, len(kept) + 1)]
    assert all(a.geometry.equals(b.geometry) for a, b in zip(kept, every))  # the largest ones
    report = region_report(dab, name, t, min_cells=4)
    assert report.left_out == left_out and len(report.regions) == len(kept)
    assert [r.kind for r in report.rows].count("region") == len(kept)
    first = report.summary().splitlines()[0]
    assert first == (f"{len(kept)} regions ({left_out} smaller than 4 cells left out) of "
                     f"{name} >= {t:g}")
    files = write_region_report(report, tmp_path, "cmu")
    assert '"min_cells": 4' in files["geojson"].read_text()
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="whole number of cells, 1 or more"):
            sized_regions(dab, 0, t, min_cells=bad)


def test_the_tissue_line_is_the_share_of_computed_cells_at_or_above(dab):
    values = dab.values[..., 0]
    for t in (float(np.nanquantile(values, 0.7)), float(np.nanquantile(values, 0.9))):
        report = region_report(dab, 0, t)
        want = (values[dab.computed] >= t).mean()
        assert 0.05 < want < 0.6 and report.tissue_share == pytest.approx(want)
        assert report.summary().splitlines()[1] == f"{want:.1%} of tissue at or above {t:g}"


def test_region_area_is_the_polygons_patch_area_the_boxes_union(tmp_path):
    # 20 px patches every 10 px: a region's boxes reach 5 px past its cells on each side
    grid = PatchGrid(100, 100, 20, 10, padding="SAME")
    values = np.zeros((10, 10))
    values[2:5, 3:7] = 0.9
    h = Heatmap(values[..., None].astype(np.float32), grid, 0, (1.0, 1.0), ("x",),
                mpp=(50.0, 50.0), slide_shape=(100, 100))
    report = region_report(h, "x", 0.5)
    row = report.rows[1]
    assert row.region_area == 30 * 40 * 2500 and row.area == 40 * 50 * 2500  # µm²
    path = write_region_report(report, tmp_path, "s")["csv"]
    with open(path, newline="", encoding="utf-8") as f:
        (_, region) = list(csv.DictReader(f))
    assert float(region["region_area_um2"]) == row.region_area
    assert float(region["patch_area_um2"]) == float(region["area_um2"]) == row.area
    text = format_stats(report.rows, "x").splitlines()
    assert "region area" in text[0] and text[0].index("region area") < text[0].index("patch area")
    assert "3.000 mm²" in text[2] and "5.000 mm²" in text[2]


def test_cli_min_cells(tmp_path, capsys):
    grid = PatchGrid(100, 100, 10, 10)
    values = np.zeros((10, 10, 1), np.float32)
    values[1:5, 1:5] = 0.9
    values[8, 8] = 0.9
    npz = Heatmap(values, grid, 0, (1.0, 1.0), ("x",), mpp=(0.5, 0.5)).save_npz(tmp_path / "s.npz")
    assert main(["regions", str(npz), "--threshold", "0.5", "--min-cells", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 region (1 smaller than 2 cells left out) of x >= 0.5" in out
    assert "17.0% of tissue at or above 0.5" in out
    assert main(["regions", str(npz), "--threshold", "0.5", "--min-cells", "0"]) == 2
    assert "min_cells=0 must be a whole number" in capsys.readouterr().err
