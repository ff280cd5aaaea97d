"""Issue #24's hostile and careless inputs to the analyses of a finished run (``patchheat
regions``): each one sentence and the right exit code, never a traceback; and what the
analyses write: formulas neutralised, RFC 7946 rings, empty cells for no number."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import numpy as np
import pytest
import shapely

from napari_patchheat import PatchGrid
from napari_patchheat.analysis import region_report, write_region_report
from napari_patchheat.cli import main
from napari_patchheat.export.tables import read_text_cell
from napari_patchheat.heatmap import Heatmap


def two_regions(class_name: str = "x") -> Heatmap:
    """A 10 x 10 heatmap with two regions above 0.5, one of them with a hole."""
    values = np.zeros((10, 10, 1), np.float32)
    values[1:6, 1:6] = 0.8
    values[3, 3] = 0.1  # a hole in the first region
    values[7:9, 6:9] = 0.6
    return Heatmap(values, PatchGrid(100, 100, 10, 10), 0, (1.0, 1.0), (class_name,),
                   mpp=(2.0, 2.0), slide_shape=(100, 100))


def test_regions_geojson_rings_follow_rfc_7946(tmp_path):
    report = region_report(two_regions(), "x", 0.5)
    files = write_region_report(report, tmp_path, "s")
    features = json.loads(files["geojson"].read_text())["features"]
    rings = [(shapely.LinearRing(ring), k) for f in features
             for k, ring in enumerate(f["geometry"]["coordinates"])]
    assert len(rings) == 3  # two outer rings and one hole
    # counter-clockwise in (x, y) outside, clockwise for holes: as the tile GeoJSON's boxes
    assert [(r.is_ccw, k == 0) for r, k in rings] == [(k == 0, k == 0) for _, k in rings]


def test_the_regions_csv_neutralises_formulas_and_leaves_no_number_empty(tmp_path):
    h = two_regions("=HYPERLINK(\"http://x\")")
    report = region_report(h, 0, 0.5)
    files = write_region_report(report, tmp_path, "s")
    rows = list(csv.reader(io.StringIO(files["csv"].read_text())))
    header, first = rows[0], rows[1]
    assert not any(cell.startswith("=") for row in rows for cell in row)
    assert read_text_cell(header[6]) == "=HYPERLINK(\"http://x\")_mean"  # read back exactly
    assert first[:2] == ["all computed patches", "all"]
    assert first[header.index("region_area_um2")] == ""  # the whole slide has no polygon
    assert float(rows[2][header.index("region_area_um2")]) > 0  # a region has one


@pytest.mark.parametrize("args, message", [
    (["--smooth", "nan"], "smooth=nan must be 0 (none) or a number of cells above 0."),
    (["--threshold", "nan"], "threshold=nan must be a number, e.g. 0.5."),
])
def test_regions_refuses_nan_in_one_sentence(tmp_path, capsys, args, message):
    npz = two_regions().save_npz(tmp_path / "s.m.npz")
    base = ["regions", str(npz), "--threshold", "0.5"]
    assert main(base + args) == 2
    assert capsys.readouterr().err.strip() == f"patchheat: error: {message}"


def test_regions_out_a_file_is_one_sentence(tmp_path, capsys):
    npz = two_regions().save_npz(tmp_path / "s.m.npz")
    (tmp_path / "file").write_text("")
    assert main(["regions", str(npz), "--threshold", "0.5", "--out",
                 str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"patchheat: error: Cannot write to the folder '{tmp_path / 'file'}': File exists. "
        "It is a file, not a folder: choose another folder.")


def hostile_npz(path, shape=(10**6, 10**6, 1)):
    """A tiny .npz whose 'values' declares ``shape`` (3.6 TiB for the default)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    meta = io.BytesIO()
    np.save(meta, np.array(json.dumps({"grid": {}})))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("values.npy", header.getvalue())
        z.writestr("metadata.npy", meta.getvalue())
    return path


@pytest.mark.parametrize("command", [["regions", "--threshold", "0.5"], ["overlap"]])
def test_a_heatmap_declaring_terabytes_is_refused_before_anything_is_allocated(tmp_path, capsys,
                                                                               command):
    npz = hostile_npz(tmp_path / "h.npz")
    assert npz.stat().st_size < 1000
    assert main([command[0], str(npz), *command[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"patchheat: error: {npz} cannot be read as a heatmap written by "
                   "napari-patchheat (its 'values' array declares 1000000 x 1000000 x 1 values "
                   "in 128 bytes): it is damaged or another kind of file.")
