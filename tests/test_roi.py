"""Regions of interest -> patches: exact fractions and centres against shapely; every form of
region (GeoJSON file, geometry, mask image) selects the same patches; bad input is one sentence;
runs inside a region on the real CMU SVS."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import shapely
import tifffile
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from napari_patchheat import PatchGrid, compute_heatmap
from napari_patchheat.cli import main
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.inference import HeatmapRun
from napari_patchheat.options import RunOptions
from napari_patchheat.roi import (
    MaskRoi,
    Region,
    load_roi,
    polygon_centres,
    polygon_fraction,
    read_roi_geojson,
    roi_patch_mask,
)


def all_boxes(grid: PatchGrid, d) -> np.ndarray:
    rr, cc = np.meshgrid(np.arange(grid.rows), np.arange(grid.cols), indexing="ij")
    b = grid.boxes(rr, cc, downsample=d)
    return shapely.box(b[..., 1], b[..., 0], b[..., 3], b[..., 2])


def star(cx, cy, radii, angles, hole=0.0) -> shapely.Geometry:
    ring = np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)]
    poly = shapely.make_valid(shapely.Polygon(ring))
    if hole:
        poly = poly.difference(shapely.Point(cx, cy).buffer(hole))
    return poly


@st.composite
def grids_and_regions(draw):
    h, w = draw(st.integers(80, 400)), draw(st.integers(80, 400))
    size, stride = draw(st.integers(2, 20)), draw(st.integers(1, 25))  # e <= 58 < 80
    rate, padding = draw(st.integers(1, 3)), draw(st.sampled_from(["VALID", "SAME"]))
    d = (draw(st.floats(0.5, 3.0)), draw(st.floats(0.5, 3.0)))
    n = draw(st.integers(3, 30))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    scale = min(h * d[0], w * d[1])
    radii = rng.uniform(0.05, 0.5, n) * scale
    hole = draw(st.sampled_from([0.0, 0.04 * scale]))
    region = star(w * d[1] / 2, h * d[0] / 2, radii, angles, hole)
    if draw(st.booleans()):  # a second part, overlapping or not
        region = shapely.union(region, shapely.box(0, 0, 0.3 * w * d[1], 0.2 * h * d[0]))
    return PatchGrid(h, w, size, stride, rate, padding), d, region


@settings(max_examples=60, deadline=None)
@given(grids_and_regions())
def test_fraction_inside_equals_shapely_area_of_each_box_inside(case):
    grid, d, region = case
    boxes = all_boxes(grid, d)
    reference = shapely.area(shapely.intersection(boxes, region)) / shapely.area(boxes)
    assume(reference.max() > 0)  # the region meets the grid
    np.testing.assert_allclose(polygon_fraction(region, grid, d), reference, rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(grids_and_regions())
def test_centres_inside_equal_shapely_contains(case):
    grid, d, region = case
    rr, cc = np.meshgrid(np.arange(grid.rows), np.arange(grid.cols), indexing="ij")
    b = grid.boxes(rr, cc, downsample=d)
    cy, cx = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
    reference = shapely.contains_xy(region, cx, cy)
    on_edge = shapely.intersects_xy(region.boundary, cx, cy)
    got = polygon_centres(region, cy[:, 0], cx[0])
    np.testing.assert_array_equal(got[~on_edge], reference[~on_edge])


def test_a_mask_image_selects_the_same_patches_as_the_polygon_it_draws():
    slide = (600, 800)
    grid = PatchGrid(300, 400, 16, 12, rate=2, padding="SAME")  # level 1, d = 2
    outer = shapely.box(40, 60, 520, 400)  # (x0, y0, x1, y1), multiples of 4 px
    region = outer.difference(shapely.box(200, 160, 320, 280))
    mask = np.zeros((slide[0] // 4, slide[1] // 4), np.uint8)
    mask[15:100, 10:130] = 7
    mask[40:70, 50:80] = 0
    for centre in (False, True):
        from_polygon = roi_patch_mask(region, grid, 2.0, slide, centre=centre)
        from_mask = roi_patch_mask(mask, grid, 2.0, slide, centre=centre)
        assert 0 < from_polygon.sum() < grid.n_patches
        np.testing.assert_array_equal(from_mask, from_polygon)


def test_the_rule_is_the_chosen_fraction_or_the_centre():
    grid = PatchGrid(100, 100, 10, 10)
    region = shapely.box(0, 0, 34, 100)  # columns 0-2 whole, column 3 at 40%
    cols = [roi_patch_mask(region, grid, 1.0, (100, 100), min_fraction=f)[0].sum()
            for f in (0.5, 0.4, 0.3)]
    assert cols == [3, 4, 4]
    assert roi_patch_mask(region, grid, 1.0, (100, 100), centre=True)[0].sum() == 3
    assert roi_patch_mask(shapely.box(0, 0, 36, 100), grid, 1.0, (100, 100),
                          centre=True)[0].sum() == 4


def write_geojson(path: Path, geometries, names=None) -> Path:
    features = [{"type": "Feature", "geometry": json.loads(shapely.to_geojson(g)),
                 "properties": {"objectType": "annotation",
                                **({"name": names[i]} if names else {})}}
                for i, g in enumerate(geometries)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_geojson_with_holes_multipolygons_and_a_bow_tie(tmp_path):
    bow_tie = shapely.Polygon([(0, 0), (100, 100), (100, 0), (0, 100)])  # self-intersecting
    assert not bow_tie.is_valid
    donut = shapely.box(200, 200, 400, 400).difference(shapely.box(250, 250, 300, 300))
    multi = shapely.MultiPolygon([shapely.box(500, 0, 600, 50), shapely.box(700, 0, 720, 20)])
    line = shapely.LineString([(0, 0), (10, 10)])
    path = write_geojson(tmp_path / "r.geojson", [bow_tie, donut, multi, line])
    regions = read_roi_geojson(path)
    assert [r.name for r in regions] == ["feature 1", "feature 2", "feature 3"]
    assert regions[0].geometry.area == pytest.approx(shapely.make_valid(bow_tie).area) == 5000
    assert regions[1].geometry.area == donut.area and regions[2].geometry.area == multi.area


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    (json.dumps({"type": "FeatureCollection", "features": []}), "has no Polygon"),
    (json.dumps({"type": "Point", "coordinates": [1, 2]}), "has no Polygon"),
    (json.dumps({"type": "Polygon", "coordinates": [[1, 2]]}),
     "feature 1 is not a valid GeoJSON geometry"),
])
def test_bad_geojson_is_one_sentence(tmp_path, content, message):
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_roi(path)


def test_a_region_outside_the_slide_is_named(tmp_path):
    path = write_geojson(tmp_path / "r.geojson",
                         [shapely.box(0, 0, 10, 10), shapely.box(900, 0, 1200, 10)],
                         names=["ok", "Tumor"])
    grid = PatchGrid(100, 100, 10, 10)
    with pytest.raises(ValueError, match=r"feature 2 \(Tumor\) spans x 900..1200"):
        roi_patch_mask(path, grid, 10.0, (1000, 1000))


def test_a_mask_that_is_not_2d_and_a_region_with_no_patch_are_one_sentence(tmp_path):
    grid = PatchGrid(100, 100, 10, 10)
    with pytest.raises(ValueError, match="not a 2-D image"):
        roi_patch_mask(np.ones((10, 10, 3)), grid, 1.0, (100, 100))
    tifffile.imwrite(tmp_path / "m.tif", np.ones((4, 10, 10), np.uint8), photometric="minisblack")
    with pytest.raises(ValueError, match="not a 2-D image"):
        load_roi(tmp_path / "m.tif")
    with pytest.raises(ValueError, match="holds no patch of the 10 x 10 grid"):
        roi_patch_mask(shapely.box(1, 1, 4, 4), grid, 1.0, (100, 100))
    with pytest.raises(ValueError, match="does not exist"):
        load_roi(tmp_path / "missing.geojson")
    assert isinstance(load_roi(np.eye(3)), MaskRoi)
    assert [r.name for r in load_roi([Region("a", shapely.box(0, 0, 1, 1))])] == ["a"]


# --- runs on the real slide -----------------------------------------------------------------------
RUN = dict(model="dab", size=64, stride=48, padding="SAME", batch_size=64)


def svs_region() -> shapely.Geometry:
    """A rectilinear region with a hole over part of the CMU SVS (2220 x 2967 px), on whole
    pixels so that a mask image draws it exactly."""
    outer = shapely.Polygon([(300, 200), (1500, 200), (1500, 900), (900, 900), (900, 1800),
                             (300, 1800)])
    return outer.difference(shapely.box(500, 400, 800, 700))


def test_a_run_inside_a_region_is_nan_outside_and_the_full_run_inside(svs_path, tmp_path):
    opts = dict(RUN, cache_dir=tmp_path / "cache")
    model = opts.pop("model")
    full = compute_heatmap(svs_path, model, **opts)
    region = svs_region()
    inside = compute_heatmap(svs_path, model, roi=region, **opts)
    expected = roi_patch_mask(region, full.grid, full.downsample, full.slide_shape)
    assert 0 < expected.sum() < full.grid.n_patches / 2
    np.testing.assert_array_equal(inside.computed, expected)
    assert np.isnan(inside.values[~expected]).all()
    assert np.nanstd(full.values[expected]) > 0  # the values inside vary
    np.testing.assert_array_equal(inside.values[expected], full.values[expected])
    assert inside.extra["roi"] == {"patches": int(expected.sum()), "min_fraction": 0.5,
                                   "centre": False}

    # the same polygon as a QuPath GeoJSON file and as a mask image: the same heatmap
    geojson = write_geojson(tmp_path / "r.geojson", [region])
    mask = np.zeros(full.slide_shape, np.uint8)
    mask[200:1800, 300:900] = 255
    mask[200:900, 900:1500] = 255
    mask[400:700, 500:800] = 0
    png = tmp_path / "mask.png"
    from PIL import Image

    Image.fromarray(mask).save(png)
    for source in (geojson, png):
        other = compute_heatmap(svs_path, model, roi=source, **opts)
        np.testing.assert_array_equal(other.values, inside.values)


def _computed(run: HeatmapRun) -> int:
    """Patches ``run`` computes: the last progress's count (0 when it has nothing to do)."""
    return max((p.done for p in run.run()), default=0)


def test_a_region_shares_the_whole_slides_cache(svs_path, tmp_path):
    """The region is no part of the cache key: a run inside it after the whole slide's
    computes nothing; one before it leaves the whole slide's run only the rest."""
    opts = RunOptions(size=64, stride=64, tissue_threshold=0.0, cache_dir=tmp_path / "a")
    region = shapely.box(0, 0, 1000, 1000)

    def inside(options: RunOptions) -> HeatmapRun:
        return HeatmapRun(svs_path, "dab", RunOptions(**{**_fields(options), "roi": region}))

    whole = HeatmapRun(svs_path, "dab", opts)
    assert whole.key == inside(opts).key
    n = whole.grid.n_patches
    assert _computed(whole) == n
    full = whole.result().values
    mask = roi_patch_mask(region, whole.grid, whole.downsample, whole.slide.shape[:2])
    assert 0 < mask.sum() < n / 2 and np.nanstd(full[mask]) > 0
    roi_run = inside(opts)
    assert roi_run.todo.sum() == 0 and _computed(roi_run) == 0  # all from the cache
    np.testing.assert_array_equal(roi_run.heatmap.computed, mask)  # the region's patches only
    np.testing.assert_array_equal(roi_run.heatmap.values[mask], full[mask])
    assert np.isnan(roi_run.heatmap.values[~mask]).all()

    first = dataclasses.replace(opts, cache_dir=tmp_path / "b")  # the region first
    assert _computed(inside(first)) == mask.sum()
    rest = HeatmapRun(svs_path, "dab", first)
    assert rest.heatmap.n_computed == mask.sum() and _computed(rest) == n - mask.sum()
    np.testing.assert_array_equal(rest.result().values, full)
    assert _computed(inside(first)) == 0


def _fields(options: RunOptions) -> dict:
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def test_cli_run_inside_a_geojson_region(svs_path, tmp_path, capsys):
    geojson = write_geojson(tmp_path / "r.geojson", [svs_region()])
    code = main(["run", str(svs_path), "--model", "dab", "--size", "64", "--stride", "48",
                 "--roi", str(geojson), "--roi-centre", "--tissue-threshold", "0",
                 "--out", str(tmp_path / "out"), "--no-cache"])
    assert code == 0
    h = Heatmap.load_npz(next((tmp_path / "out").glob("*.npz")))
    expected = roi_patch_mask(svs_region(), h.grid, h.downsample, h.slide_shape, centre=True)
    np.testing.assert_array_equal(h.computed, expected)
    bad = tmp_path / "bad.geojson"
    bad.write_text("[1, 2")
    assert main(["run", str(svs_path), "--roi", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "bad.geojson is not JSON" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_the_region_and_the_tissue_threshold_must_both_hold(svs_path, tmp_path):
    from napari_patchheat import open_slide
    from napari_patchheat.tissue import patch_tissue_fraction

    region = svs_region()
    h = compute_heatmap(svs_path, "dab", size=64, stride=64, roi=region, tissue_threshold=0.5,
                        use_cache=False)
    with open_slide(svs_path) as slide:
        tissue = patch_tissue_fraction(slide, h.grid, 0) >= 0.5
    inside = roi_patch_mask(region, h.grid, h.downsample, h.slide_shape)
    assert (inside & ~tissue).any() and (tissue & ~inside).any()  # both rules remove patches
    np.testing.assert_array_equal(h.computed, inside & tissue)


# --- hostile and careless inputs (issue #24) ----------------------------------------------


def test_a_deeply_nested_geojson_is_one_sentence(tmp_path):
    path = tmp_path / "nested.geojson"
    path.write_text("[" * 200_000)
    with pytest.raises(ValueError, match=r"^nested.geojson is not JSON \(nested too deeply to "
                                         r"read\): give a GeoJSON file"):
        load_roi(path)


def test_a_folder_or_a_non_image_as_a_region_is_one_sentence(tmp_path):
    with pytest.raises(ValueError, match=f"the region {tmp_path} is a folder: give a GeoJSON"):
        load_roi(tmp_path)
    fake = tmp_path / "mask.png"
    fake.write_text("not an image")
    with pytest.raises(ValueError, match=r"^mask.png cannot be read as a mask image \(.*\): "
                                         "give a PNG, TIFF or JPEG mask"):
        load_roi(fake)


def test_a_mask_bigger_than_pillows_bomb_limit_is_read(tmp_path):
    from PIL import Image

    h, w = 19_000, 19_000  # 361 M px: more than twice Pillow's 179 M, which it refuses
    assert h * w > 2 * Image.MAX_IMAGE_PIXELS
    mask = np.zeros((h, w), bool)
    mask[1000:2000, 3000:5000] = True
    Image.fromarray(mask).save(tmp_path / "mask.png")
    del mask
    limit = Image.MAX_IMAGE_PIXELS
    roi = load_roi(tmp_path / "mask.png")
    assert roi.mask.shape == (h, w) and roi.mask.sum() == 1000 * 2000
    assert Image.MAX_IMAGE_PIXELS == limit  # Pillow's own limit is back


def test_a_mask_of_another_shape_than_the_slide_is_one_sentence():
    grid = PatchGrid(2967, 2220, 64, 64)
    with pytest.raises(ValueError, match=r"the mask is 37 x 1000 px \(h x w\) and the slide "
                                         r"2967 x 2220 px: scaled over the slide it would "
                                         r"stretch 80.2x down and 2.22x across"):
        roi_patch_mask(np.ones((37, 1000), bool), grid, 1.0, (2967, 2220))
    # a mask made at a lower resolution (rounded to whole pixels) fits
    small = np.ones((round(2967 / 16), round(2220 / 16)), bool)
    assert roi_patch_mask(small, grid, 1.0, (2967, 2220)).all()


def test_a_mask_declaring_more_pixels_than_allowed_is_refused_before_decoding(tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    png = tmp_path / "bomb.png"  # 57 bytes claiming 40000 x 40000
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)) + chunk(b"IEND", b""))
    tif = tmp_path / "bomb.tif"  # 320 bytes claiming 200000 x 200000
    tifffile.imwrite(tif, np.zeros((8, 8), np.uint8))
    with tifffile.TiffFile(tif, mode="r+b") as t:
        t.pages[0].tags["ImageWidth"].overwrite(200_000)
        t.pages[0].tags["ImageLength"].overwrite(200_000)
    for path in (png, tif):
        assert path.stat().st_size < 1000
        with pytest.raises(ValueError, match=rf"^{path.name} cannot be read as a mask image "):
            load_roi(path)
