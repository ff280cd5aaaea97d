"""session.py: slide references, Shapes and Points as GeoJSON, region numbers, the files
(heatmaps, Labels) written and read back exactly, a version 1 file read, one sentence for a
damaged, foreign or newer session (the viewer: tests/gui/test_session.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_patchheat.analysis import region_report
from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.session import (
    SESSION_VERSION,
    SessionError,
    geojson_points,
    geojson_shapes,
    heatmap_stem,
    heatmaps_folder,
    points_geojson,
    read_session,
    report_record,
    resolve_slide,
    shapes_geojson,
    slide_reference,
    write_session,
)


def heatmap(seed=0, model="dab") -> Heatmap:
    grid = PatchGrid(900, 1300, 96, 64, padding="SAME")
    values = np.random.default_rng(seed).random((*grid.shape, 2)).astype(np.float32)
    values[0, :4] = np.nan
    return Heatmap(values, grid, 1, (4.0, 4.0), ("a", "b"), mpp=(0.5, 0.5), model_name=model,
                   slide_path="/data/CMU-1.svs", slide_shape=(3600, 5200))


def test_slides_are_recorded_relative_to_the_session_where_possible(tmp_path):
    session = tmp_path / "work" / "s.patchheat.json"
    slide = tmp_path / "slides" / "CMU-1.svs"
    assert slide_reference(str(slide), session) == "../slides/CMU-1.svs"
    assert resolve_slide("../slides/CMU-1.svs", session) == str(slide)
    assert slide_reference("s3://bucket/a.svs", session) == "s3://bucket/a.svs"
    assert resolve_slide("s3://bucket/a.svs", session) == "s3://bucket/a.svs"
    assert resolve_slide("/abs/a.svs", session) == "/abs/a.svs"


def test_shapes_go_to_geojson_and_back_exactly():
    data = [np.array([[1.5, 2.25], [10.0, 3.0], [7.125, 9.0]]),
            np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 6.0], [0.0, 6.0]]),
            np.array([[1.0, 1.0], [2.0, 5.0]])]
    kinds = ["polygon", "ellipse", "line"]
    doc = shapes_geojson(data, kinds)
    assert doc["features"][0]["geometry"]["coordinates"][0][0] == [2.25, 1.5]  # x, y; closed
    assert doc["features"][0]["geometry"]["coordinates"][0][-1] == [2.25, 1.5]
    assert doc["features"][2]["geometry"]["type"] == "LineString"
    back, back_kinds = geojson_shapes(json.loads(json.dumps(doc)))
    assert back_kinds == kinds
    assert all(np.array_equal(a, b) for a, b in zip(data, back, strict=True))


def test_points_go_to_geojson_and_back_exactly():
    points = np.array([[1.5, 2.25], [1e-7, 3.0], [7.125, 1234567.875]])
    doc = json.loads(json.dumps(points_geojson(points)))
    assert doc["features"][0]["geometry"] == {"type": "Point", "coordinates": [2.25, 1.5]}
    assert np.array_equal(geojson_points(doc), points)
    assert geojson_points(points_geojson(np.zeros((0, 2)))).shape == (0, 2)


def labels() -> np.ndarray:
    mask = np.zeros((300, 420), np.uint16)
    mask[50:120, 60:300] = 1
    mask[200:, :100] = 513  # beyond a byte
    return mask


def rows_text(rows) -> str:
    """A report's rows as text: equal when every number is (NaN included)."""
    return json.dumps([vars(row) for row in rows])


def test_a_session_is_written_and_read_back_exactly(tmp_path):
    h1, h2 = heatmap(), heatmap(1, "he")
    assert np.nanstd(h1.values) > 0.1
    path = tmp_path / "s.patchheat.json"
    stems = {}
    for h in (h1, h2):
        stems[heatmap_stem(h, list(stems))] = h
    assert list(stems) == ["dab_CMU-1", "he_CMU-1"]
    assert heatmap_stem(h1, ["dab_CMU-1"]) == "dab_CMU-1-2"
    report = region_report(h1, 1, 0.8, min_cells=3)
    assert len(report.regions) > 1 and report.left_out > 0
    layers = [{"slide": "CMU-1.svs", "display": {"name": "CMU-1.svs"}},
              {"heatmap": "dab_CMU-1", "class": 1, "display": {"opacity": 0.6}},
              {"heatmap": "he_CMU-1", "class": 0, "display": {"visible": False}},
              {"labels": "mask", "display": {"opacity": 0.4}},
              {"points": points_geojson(np.array([[1.0, 2.0]])), "display": {}},
              {"shapes": shapes_geojson([], []), "display": {},
               "regions": report_record(report, "dab_CMU-1")}]
    write_session(path, {"layers": layers, "camera": {"zoom": 0.5}}, stems, {"mask": labels()})
    assert sorted(p.name for p in heatmaps_folder(path).iterdir()) == [
        "dab_CMU-1.ome.zarr", "he_CMU-1.ome.zarr", "mask.labels.npz"]
    doc, heatmaps, masks, reports = read_session(path)
    assert doc["version"] == SESSION_VERSION == 2 and doc["camera"] == {"zoom": 0.5}
    assert json.loads(json.dumps(doc["layers"])) == json.loads(json.dumps(layers))
    for stem, h in stems.items():
        assert np.array_equal(heatmaps[stem].values, h.values, equal_nan=True)
        assert heatmaps[stem].grid == h.grid and heatmaps[stem].metadata() == h.metadata()
    assert masks["mask"].dtype == np.uint16 and np.array_equal(masks["mask"], labels())
    back = reports[5]  # the regions layer's numbers, its regions found again
    assert rows_text(back.rows) == rows_text(report.rows)  # NaN and all
    assert back.heatmap is heatmaps["dab_CMU-1"]
    assert (back.class_index, back.threshold, back.min_cells, back.left_out) == (
        1, 0.8, 3, report.left_out)
    assert [r.geometry.equals(q.geometry) for r, q in zip(back.regions, report.regions,
                                                          strict=True)] == [True] * len(
        report.regions)


def test_a_version_1_session_still_opens(tmp_path):
    path = tmp_path / "old.patchheat.json"
    path.write_text(json.dumps({"version": 1, "layers": [
        {"slide": "CMU-1.svs", "display": {"name": "CMU-1.svs", "opacity": 1.0}},
        {"shapes": shapes_geojson([np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 6.0]])],
                                  ["polygon"]), "display": {"name": "ROI"}}],
        "camera": {"zoom": 0.25}, "dock": {"stride": 112}}))
    doc, heatmaps, masks, reports = read_session(path)
    assert doc["version"] == 1 and doc["dock"] == {"stride": 112}
    assert [layer["display"]["name"] for layer in doc["layers"]] == ["CMU-1.svs", "ROI"]
    assert heatmaps == masks == reports == {}


@pytest.mark.parametrize("text, says", [
    ('{"version": 3, "layers": []}', "is of version 3, which this napari-patchheat does not know"),
    ('{"version": 1, "layers": [{"slide": "a.svs"}]}', "is damaged"),
    ('{"a": 1}', "is not a napari-patchheat session"),
    ('{"version": 1, "layers": [', "Cannot read the session s.patchheat.json"),
    ('{"version": 1, "layers": [{"heatmap": "x", "display": {}}]}', "Cannot read the heatmaps"),
    ('{"version": 2, "layers": [{"labels": "x", "display": {}}]}', "Cannot read the heatmaps"),
    ('{"version": 2, "layers": [{"shapes": {}, "display": {}, "regions": {}}]}', "is damaged"),
])
def test_a_bad_session_is_one_sentence(tmp_path, text, says):
    path = tmp_path / "s.patchheat.json"
    path.write_text(text)
    with pytest.raises(SessionError, match=says) as caught:
        read_session(path)
    assert str(caught.value).count(". ") == 0 and str(caught.value).endswith(".")


def test_a_missing_session_is_one_sentence(tmp_path):
    with pytest.raises(SessionError, match="Cannot read the session none.patchheat.json"):
        read_session(tmp_path / "none.patchheat.json")
