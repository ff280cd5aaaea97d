"""A heatmap's region report: regions and numbers in one, its two files, heatmap files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely

from napari_patchheat import PatchGrid
from napari_patchheat.analysis import (
    heatmap_file_stem,
    read_heatmap_file,
    region_report,
    write_region_report,
)
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.roi import Region


def test_report_rows_files_and_heatmap_files(tmp_path):
    values = np.zeros((10, 10, 1), np.float32)
    values[1:4, 1:4] = 0.8
    values[6:9, 5:9] = 0.6
    values[9, 9] = np.nan
    h = Heatmap(values, PatchGrid(100, 100, 10, 10), 0, (1.0, 1.0), ("x",), mpp=(2.0, 2.0),
                slide_shape=(100, 100))
    roi = [Region("top", shapely.box(0, 0, 100, 50)), Region("none", shapely.box(0, 0, 2, 2))]
    report = region_report(h, "x", 0.5, roi=roi)
    assert [(r.name, r.kind, r.patches) for r in report.rows] == [
        ("all computed patches", "all", 99), ("top", "roi", 50), ("none", "roi", 0),
        ("x >= 0.5 #1", "region", 12), ("x >= 0.5 #2", "region", 9)]
    assert report.rows[3].area == report.rows[3].region_area == 12 * 100 * 4.0
    files = write_region_report(report, tmp_path / "out", "s.m")
    doc = json.loads(files["geojson"].read_text())
    assert [f["properties"]["measurements"]["Patches"] for f in doc["features"]] == [12, 9]
    assert doc["patchheat"]["threshold"] == 0.5 and files["csv"].name == "s.m.regions.csv"
    assert len(files["csv"].read_text().splitlines()) == 6
    npz = h.save_npz(tmp_path / "s.m.npz")
    np.testing.assert_array_equal(read_heatmap_file(npz).values, values)
    assert heatmap_file_stem(npz) == "s.m" == heatmap_file_stem(Path("s.m.ome.tif"))
    with pytest.raises(ValueError, match="does not exist"):
        read_heatmap_file(tmp_path / "gone.npz")
