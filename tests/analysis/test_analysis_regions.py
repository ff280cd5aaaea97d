"""Heatmap -> regions: the polygons are exactly the union of the cells above the threshold, one
per 4-connected region with its holes; re-imported as a region of interest they select exactly
those patches; QuPath's GeoJSON; ``patchheat regions``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from napari_patchheat import PatchGrid, compute_heatmap
from napari_patchheat.analysis.regions import (
    above_threshold,
    cell_lattice,
    cell_polygons,
    heatmap_regions,
    smoothed,
    write_regions_geojson,
)
from napari_patchheat.cli import main
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.roi import read_roi_geojson, roi_patch_mask


def heatmap_of(values: np.ndarray, grid: PatchGrid, d=(1.0, 1.0), **kw) -> Heatmap:
    v = np.asarray(values, np.float32)
    return Heatmap(v[..., None] if v.ndim == 2 else v, grid, 0, d,
                   [f"c{k}" for k in range(1 if v.ndim == 2 else v.shape[-1])], **kw)


@settings(max_examples=80, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))),
       st.integers(1, 9), st.integers(1, 9), st.sampled_from(["VALID", "SAME"]),
       st.floats(0.5, 3))
def test_polygons_are_the_union_of_the_cells_one_per_connected_region(cells, size, stride,
                                                                     padding, d):
    rows, cols = cells.shape
    grid = PatchGrid(max(rows * stride, size + (rows - 1) * stride),
                     max(cols * stride, size + (cols - 1) * stride), size, stride,
                     padding=padding)
    cells = np.pad(cells, ((0, grid.rows - rows), (0, grid.cols - cols)))
    h = heatmap_of(np.zeros(grid.shape), grid, (d, d))
    out = cell_polygons(cells, h)
    assert len(out) == ndimage.label(cells)[1]
    (oy, ox), (sy, sx) = cell_lattice(h)
    i, j = np.nonzero(cells)
    reference = shapely.union_all(shapely.box(ox + j * sx, oy + i * sy, ox + (j + 1) * sx,
                                              oy + (i + 1) * sy))
    if not cells.any():
        assert out == []
        return
    assert shapely.union_all([g for g, _ in out]).normalize().equals(reference.normalize())
    assert sum(len(m[0]) for _, m in out) == cells.sum()
    for geometry, mask in out:
        assert geometry.is_valid and shapely.get_type_id(geometry) == 3  # one Polygon each
        assert geometry.area == pytest.approx(len(mask[0]) * sy * sx)
        assert cells[mask].all()


def test_a_ring_of_cells_keeps_its_hole_and_cells_meeting_at_a_corner_are_apart():
    grid = PatchGrid(100, 100, 10, 10)
    cells = np.zeros((10, 10), bool)
    cells[1:5, 1:5] = True
    cells[2:4, 2:4] = False  # a hole
    cells[5, 5] = True  # touches the ring's corner only
    out = cell_polygons(cells, heatmap_of(np.zeros((10, 10)), grid))
    assert [len(m[0]) for _, m in out] == [12, 1]
    ring = out[0][0]
    assert len(ring.interiors) == 1 and ring.area == 1200
    assert shapely.Polygon(ring.interiors[0]).equals(shapely.box(20, 20, 40, 40))


def test_the_cell_of_a_patch_is_the_stride_square_centred_on_it():
    grid = PatchGrid(50, 60, 7, 4, rate=2, padding="SAME")  # effective 13, odd
    h = heatmap_of(np.zeros(grid.shape), grid, (2.0, 3.0))
    (oy, ox), (sy, sx) = cell_lattice(h)
    b = grid.box(3, 5, (2.0, 3.0))
    assert (oy + 3.5 * sy, ox + 5.5 * sx) == pytest.approx(((b[0] + b[2]) / 2, (b[1] + b[3]) / 2))
    assert (sy, sx) == (8.0, 12.0)


def test_smoothing_averages_the_computed_neighbours_only():
    values = np.full((20, 20), 0.2)
    values[:, 10:] = 0.8
    values[5, 5] = np.nan
    h = heatmap_of(values, PatchGrid(200, 200, 10, 10))
    s = smoothed(h, 0, 1.5)
    assert np.isnan(s[5, 5]) and np.isnan(s).sum() == 1
    np.testing.assert_allclose(s[:, :4][~np.isnan(s[:, :4])], 0.2, atol=1e-6)  # 4 sigma away
    assert 0.2 < s[10, 9] < 0.5 < s[10, 10] < 0.8
    np.testing.assert_array_equal(smoothed(h, 0, 0), h.values[..., 0])
    with pytest.raises(ValueError, match="smooth=-1"):
        smoothed(h, 0, -1)


def test_nothing_above_the_threshold_is_one_sentence():
    h = heatmap_of(np.full((4, 4), 0.3), PatchGrid(40, 40, 10, 10))
    with pytest.raises(ValueError, match="no computed patch has c0 >= 0.5"):
        heatmap_regions(h, "c0", 0.5)


# --- the round trip on the real slide -----------------------------------------------------------
@pytest.mark.parametrize("stride, padding, centre", [(64, "VALID", False), (32, "SAME", True)])
def test_regions_reimported_as_a_roi_select_exactly_the_patches_above(svs_path, tmp_path,
                                                                      stride, padding, centre):
    h = compute_heatmap(svs_path, "dab", size=64, stride=stride, padding=padding,
                        use_cache=False)
    threshold = float(np.nanquantile(h.values[..., 0], 0.8))
    above = above_threshold(h, 0, threshold)
    assert 0 < above.sum() < h.grid.n_patches / 2
    regions = heatmap_regions(h, 0, threshold)
    assert len(regions) > 1 and any(len(r.geometry.interiors) for r in regions)  # holes kept
    path = write_regions_geojson(regions, tmp_path / "r.geojson", class_name="dab_positive")
    back = read_roi_geojson(path)
    assert len(back) == len(regions)
    selected = roi_patch_mask(back, h.grid, h.downsample, h.slide_shape, centre=centre)
    np.testing.assert_array_equal(selected, above)


def test_the_geojson_is_qupath_annotations_with_their_numbers(tmp_path):
    grid = PatchGrid(100, 100, 10, 10)
    values = np.zeros((10, 10))
    values[1:5, 1:5] = 0.9
    values[2:4, 2:4] = 0.1
    h = heatmap_of(values, grid, mpp=(0.5, 0.5))
    regions = heatmap_regions(h, 0, 0.5)
    path = write_regions_geojson(regions, tmp_path / "r.geojson", class_name="c0",
                                 measurements=[{"Area µm^2": 300.0, "x": float("nan")}],
                                 metadata={"threshold": 0.5})
    doc = json.loads(path.read_text())
    (feature,) = doc["features"]
    props = feature["properties"]
    assert props["objectType"] == "annotation" and props["classification"]["name"] == "c0"
    assert props["measurements"] == {"Area µm^2": 300.0, "x": None}
    assert feature["geometry"]["type"] == "Polygon" and len(feature["geometry"]["coordinates"]) == 2
    assert doc["patchheat"] == {"threshold": 0.5}


def test_cli_regions_writes_the_annotations_and_the_numbers(tmp_path, capsys):
    grid = PatchGrid(100, 100, 10, 10)
    values = np.zeros((10, 10, 2))
    values[1:5, 1:5, 1] = 0.9
    values[7:9, 7:9, 1] = 0.7
    h = heatmap_of(values, grid, mpp=(0.5, 0.5), slide_shape=(100, 100))
    npz = h.save_npz(tmp_path / "s.dab.npz")
    assert main(["regions", str(npz), "--threshold", "0.5"]) == 2
    assert "choose one with --class" in capsys.readouterr().err
    assert main(["regions", str(npz), "--class", "c1", "--threshold", "0.95"]) == 2
    assert "no computed patch has c1 >= 0.95" in capsys.readouterr().err
    assert list(tmp_path.glob("*.regions.*")) == []
    roi = tmp_path / "roi.geojson"
    roi.write_text(json.dumps({"type": "Feature", "properties": {"name": "left"},
                               "geometry": json.loads(shapely.to_geojson(
                                   shapely.box(0, 0, 50, 100)))}))
    assert main(["regions", str(npz), "--class", "c1", "--threshold", "0.5", "--roi",
                 str(roi)]) == 0
    out = capsys.readouterr().out
    assert "c1 >= 0.5 #1" in out and "feature 1 (left)" in out
    doc = json.loads((tmp_path / "s.dab.regions.geojson").read_text())
    areas = [f["properties"]["measurements"]["Area µm^2"] for f in doc["features"]]
    assert areas == [1600 * 0.25, 400 * 0.25]
    lines = (tmp_path / "s.dab.regions.csv").read_text().splitlines()
    assert lines[0].startswith(
        "region,kind,patches,region_area_um2,patch_area_um2,area_um2,c0_mean")
    assert [line.split(",")[1:3] for line in lines[1:]] == [
        ["all", "100"], ["roi", "50"], ["region", "16"], ["region", "4"]]
    mask = np.zeros((10, 10), np.uint8)
    mask[:, :3] = 1  # the left 30 px of the 100 px slide: patch columns 0-2
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    assert main(["regions", str(npz), "--class", "c1", "--threshold", "0.5", "--roi",
                 str(tmp_path / "mask.tif")]) == 0
    lines = (tmp_path / "s.dab.regions.csv").read_text().splitlines()
    assert lines[2].split(",")[:3] == ["mask", "roi", "30"]
