"""session.py: slide references, Shapes as GeoJSON, the files written and read back exactly,
one sentence for a damaged, foreign or newer session (the viewer: tests/gui/test_session.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.session import (
    SessionError,
    geojson_shapes,
    heatmap_stem,
    heatmaps_folder,
    read_session,
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


def test_a_session_is_written_and_read_back_exactly(tmp_path):
    h1, h2 = heatmap(), heatmap(1, "he")
    assert np.nanstd(h1.values) > 0.1
    path = tmp_path / "s.patchheat.json"
    stems = {}
    for h in (h1, h2):
        stems[heatmap_stem(h, list(stems))] = h
    assert list(stems) == ["dab_CMU-1", "he_CMU-1"]
    assert heatmap_stem(h1, ["dab_CMU-1"]) == "dab_CMU-1-2"
    layers = [{"slide": "CMU-1.svs", "display": {"name": "CMU-1.svs"}},
              {"heatmap": "dab_CMU-1", "class": 1, "display": {"opacity": 0.6}},
              {"heatmap": "he_CMU-1", "class": 0, "display": {"visible": False}}]
    write_session(path, {"layers": layers, "camera": {"zoom": 0.5}}, stems)
    assert sorted(p.name for p in heatmaps_folder(path).iterdir()) == [
        "dab_CMU-1.ome.zarr", "he_CMU-1.ome.zarr"]
    doc, heatmaps = read_session(path)
    assert doc["version"] == 1 and doc["layers"] == layers and doc["camera"] == {"zoom": 0.5}
    for stem, h in stems.items():
        assert np.array_equal(heatmaps[stem].values, h.values, equal_nan=True)
        assert heatmaps[stem].grid == h.grid and heatmaps[stem].metadata() == h.metadata()


@pytest.mark.parametrize("text, says", [
    ('{"version": 2, "layers": []}', "is of version 2, which this napari-patchheat does not know"),
    ('{"version": 1, "layers": [{"slide": "a.svs"}]}', "is damaged"),
    ('{"a": 1}', "is not a napari-patchheat session"),
    ('{"version": 1, "layers": [', "Cannot read the session s.patchheat.json"),
    ('{"version": 1, "layers": [{"heatmap": "x", "display": {}}]}', "Cannot read the heatmaps"),
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
