"""Export formats: round trips against Heatmap and PatchGrid, placement, PNG pixels, atomicity."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_patchheat import export as ex
from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap

GRIDS = {
    "valid": dict(height=700, width=900, size=64, stride=64, padding="VALID"),
    "same-overlap": dict(height=1000, width=1300, size=64, stride=48, padding="SAME"),
    "dilated-nonsquare": dict(
        height=811, width=517, size=(9, 7), stride=(10, 6), rate=(3, 2), padding="SAME"
    ),
    "gaps": dict(height=600, width=640, size=16, stride=40, padding="VALID"),
}


def make_heatmap(grid_kw: dict, *, downsample=(4.0, 4.0), mpp=(0.25, 0.25),
                 classes=("stroma", "tumor"), seed: int = 0, nan_fraction: float = 0.3,
                 slide_shape=None) -> Heatmap:
    grid = PatchGrid(**grid_kw)
    rng = np.random.default_rng(seed)
    values = rng.random((*grid.shape, len(classes))).astype(np.float32)
    values[rng.random(grid.shape) < nan_fraction] = np.nan
    if slide_shape is None:  # as a Slide has them: downsample = level-0 size / level size
        slide_shape = (round(grid.height * downsample[0]), round(grid.width * downsample[1]))
        downsample = (slide_shape[0] / grid.height, slide_shape[1] / grid.width)
    return Heatmap(values, grid, level=2, downsample=downsample, class_names=classes, mpp=mpp,
                   model_name="toy", model_fingerprint="sha256:abc", slide_path="/data/s1.svs",
                   slide_shape=slide_shape)


@pytest.fixture
def heatmap() -> Heatmap:
    return make_heatmap(GRIDS["same-overlap"])


def folder_listing(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder`` (an OME-Zarr is a folder) with its bytes."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


# --- the one call ------------------------------------------------------------------------------
def test_parse_formats_accepts_cli_text_and_rejects_unknown():
    assert ex.parse_formats("ometiff, PNG,csv,geojson") == ("ometiff", "png", "csv", "geojson")
    assert ex.parse_formats(["slide-raster", "csv", "csv"]) == ("slide_raster", "csv")
    with pytest.raises(ValueError, match="tiff.*choose from ometiff"):
        ex.parse_formats("tiff")
    with pytest.raises(ValueError):
        ex.parse_formats("")


def test_export_heatmap_writes_every_format_and_creates_the_folder(heatmap, tmp_path):
    out = tmp_path / "new" / "sub"
    written = ex.export_heatmap(heatmap, out, "s1")
    assert set(written) == {*ex.FORMATS, "json"}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["s1.ome.tif", "s1.json", "s1.ome.zarr", "s1.raster.tif", "s1.png", "s1.csv",
         "s1.wsinfer.csv", "s1.geojson"]
    )
    assert all(p.parent == out and p.stat().st_size > 0 for p in written.values())
    only = ex.export_heatmap(heatmap, tmp_path / "two", "s2", "csv,geojson")
    assert set(only) == {"csv", "geojson"}


@pytest.mark.parametrize("stem", ["", "a/b", "..", "/abs"])
def test_export_heatmap_rejects_a_stem_with_folders(heatmap, tmp_path, stem):
    with pytest.raises(ValueError, match="stem"):
        ex.export_heatmap(heatmap, tmp_path, stem, "csv")


# --- OME-TIFF ----------------------------------------------------------------------------------
def ome_pixels(path: Path) -> dict:
    with tifffile.TiffFile(path) as tif:
        return tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]


@pytest.mark.parametrize("name", sorted(GRIDS))
@pytest.mark.parametrize("mpp", [(0.25, 0.25), (0.2527, 0.2491), None])
def test_ome_tiff_round_trip_and_placement(name, mpp, tmp_path):
    h = make_heatmap(GRIDS[name], downsample=(4.000345, 3.99917), mpp=mpp, seed=3)
    path = ex.write_ome_tiff(h, tmp_path / "h.ome.tif")
    with tifffile.TiffFile(path) as tif:
        data = tif.series[0].asarray()
        assert tif.is_ome and tif.series[0].axes == "CYX"
        pages = [p.aspage() for p in tif.pages]
        assert all(p.is_tiled for p in pages)
        assert all(p.compression == tifffile.COMPRESSION.ADOBE_DEFLATE for p in pages)
    expected = np.moveaxis(h.values, -1, 0)
    assert data.dtype == np.float32
    assert np.array_equal(np.isnan(data), np.isnan(expected))
    assert np.array_equal(data, expected, equal_nan=True)

    # the recorded physical size and offset put cell (i, j) on patch (i, j)'s centre
    px = ome_pixels(path)
    unit = "µm" if mpp is not None else "pixel"
    assert px["PhysicalSizeXUnit"] == px["PhysicalSizeYUnit"] == unit
    planes = px["Plane"] if isinstance(px["Plane"], list) else [px["Plane"]]
    assert len(planes) == len(h.class_names)
    my, mx = mpp if mpp is not None else (1.0, 1.0)
    rows, cols = np.meshgrid(np.arange(h.grid.rows), np.arange(h.grid.cols), indexing="ij")
    for plane in planes:
        assert plane["PositionXUnit"] == plane["PositionYUnit"] == unit
        cy = (plane["PositionY"] + rows * px["PhysicalSizeY"]) / my
        cx = (plane["PositionX"] + cols * px["PhysicalSizeX"]) / mx
        want = h.grid.centers(rows, cols, h.downsample)
        np.testing.assert_allclose(cy, want[..., 0], rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(cx, want[..., 1], rtol=1e-12, atol=1e-9)
    if mpp is not None:
        assert px["PhysicalSizeY"] == pytest.approx(h.grid.stride[0] * h.downsample[0] * mpp[0])
        assert px["PhysicalSizeX"] == pytest.approx(h.grid.stride[1] * h.downsample[1] * mpp[1])

    back = ex.read_ome_tiff(path)
    assert back.metadata() == h.metadata()
    assert np.array_equal(back.values, h.values, equal_nan=True)


def test_ome_tiff_is_a_pyramid_in_subifds_and_sidecar_holds_the_metadata(tmp_path):
    h = make_heatmap(dict(height=9000, width=5000, size=8, stride=8), downsample=(1.0, 1.0))
    assert h.grid.shape == (1125, 625)
    path = ex.write_ome_tiff(h, tmp_path / "big.ome.tif")
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shapes = [lv.shape for lv in series.levels]
        assert shapes == [(2, 1125, 625), (2, 563, 313), (2, 282, 157), (2, 141, 79)]
        assert len(tif.pages) == 2 and len(tif.pages[0].subifds) == 3
        low = series.levels[1].asarray()
    block = h.values[2:4, 4:6, 0]  # level 1 is the NaN-ignoring mean of 2 x 2 cells
    assert np.isfinite(block).any() and not np.isfinite(block).all()
    assert low[0, 1, 2] == pytest.approx(np.nanmean(block))
    sidecar = tmp_path / "big.json"
    assert json.loads(sidecar.read_text()) == json.loads(json.dumps(h.metadata()))


def test_read_ome_tiff_falls_back_to_the_sidecar_and_refuses_foreign_files(heatmap, tmp_path):
    path = ex.write_ome_tiff(heatmap, tmp_path / "h.ome.tif")
    plain = tmp_path / "plain.ome.tif"
    with tifffile.TiffFile(path) as tif:
        tifffile.imwrite(plain, tif.series[0].asarray(), ome=True, metadata={"axes": "CYX"})
    with pytest.raises(ValueError, match="no PatchHeat heatmap metadata"):
        ex.read_ome_tiff(plain)
    (tmp_path / "plain.json").write_text((tmp_path / "h.json").read_text())
    back = ex.read_ome_tiff(plain)
    assert np.array_equal(back.values, heatmap.values, equal_nan=True)
    assert back.grid == heatmap.grid


def test_sidecar_path():
    assert ex.sidecar_path("/a/b.ome.tif") == Path("/a/b.json")
    assert ex.sidecar_path("/a/b.OME.TIFF") == Path("/a/b.json")
    assert ex.sidecar_path("b.tif") == Path("b.json")


# --- slide-aligned raster ---------------------------------------------------------------------
def brute_force_cells(h: Heatmap, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per axis, the cell whose stride area [c - S/2, c + S/2) (world) holds each pixel centre."""
    h0, w0 = ex.level0_shape(h)
    out = []
    for axis, (n, n0) in enumerate(zip(shape, (h0, w0))):
        d = n0 / n
        idx = np.arange(h.grid.shape[axis])
        at = (idx, 0) if axis == 0 else (0, idx)
        centres = h.grid.centers(*at, h.downsample)[:, axis]
        half = h.grid.stride[axis] * h.downsample[axis] / 2
        world = (np.arange(n) + 0.5) * d - 0.5
        offset = world[:, None] - centres[None]
        inside = (offset >= -half - 1e-9) & (offset < half - 1e-9)
        assert inside.sum(axis=1).max() <= 1
        out.append(np.where(inside.any(axis=1), inside.argmax(axis=1), -1))
    return out[0], out[1]


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_raster_cells_at_the_heatmap_level_paint_the_stride_area_round_the_patch_centre(name):
    h = make_heatmap(GRIDS[name], downsample=(4.000345, 3.99917))
    g = h.grid
    iy, ix = ex.raster_cells(h, (g.height, g.width))
    for axis, cells in enumerate((iy, ix)):
        s, e, pb = g.stride[axis], g.effective_size[axis], g.pad_before[axis]
        for i in range(g.shape[axis]):
            a = i * s - pb
            first, stop = int(np.ceil(a + (e - 1 - s) / 2)), int(np.ceil(a + (e - 1 + s) / 2))
            painted = np.flatnonzero(cells == i)
            want = np.arange(max(first, 0), min(stop, len(cells)))
            assert np.array_equal(painted, want), (axis, i)
    by, bx = brute_force_cells(h, (g.height, g.width))
    assert np.array_equal(iy, by) and np.array_equal(ix, bx)


def test_raster_cells_of_non_overlapping_patches_are_the_patches():
    h = make_heatmap(dict(height=1000, width=1100, size=256, stride=256), downsample=(1.0, 1.0))
    iy, ix = ex.raster_cells(h, (1000, 1100))
    assert np.array_equal(iy[:768], np.repeat(np.arange(3), 256)) and (iy[768:] == -1).all()
    assert np.array_equal(ix[:1024], np.repeat(np.arange(4), 256)) and (ix[1024:] == -1).all()


@pytest.mark.parametrize("name", sorted(GRIDS))
@pytest.mark.parametrize("target", [(0.5, 0.5), (0.25, 0.3), (1.7, 1.7)])
def test_raster_cells_on_another_level_match_the_nearest_stride_area(name, target):
    h = make_heatmap(GRIDS[name], downsample=(2.0, 2.0))
    shape = (round(h.grid.height * target[0]), round(h.grid.width * target[1]))
    iy, ix = ex.raster_cells(h, shape)
    by, bx = brute_force_cells(h, shape)
    assert np.array_equal(iy, by) and np.array_equal(ix, bx)


@pytest.mark.parametrize("tile_px", [16, 512])
def test_slide_raster_file_holds_the_resampled_values(heatmap, tmp_path, tile_px):
    shape = (heatmap.grid.height // 2 + 3, heatmap.grid.width // 2 + 1)
    path = ex.write_slide_raster(heatmap, tmp_path / "r.tif", shape, tile_px=tile_px)
    iy, ix = ex.raster_cells(heatmap, shape)
    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        desc = json.loads(tif.pages[0].description)
        assert all(p.aspage().is_tiled and p.aspage().tilewidth == tile_px for p in tif.pages)
    assert data.shape == (2, *shape) and data.dtype == np.float32
    for c in range(2):
        want = np.full(shape, np.nan, np.float32)
        ok = (iy >= 0)[:, None] & (ix >= 0)[None, :]
        want[ok] = heatmap.values[..., c][np.maximum(iy, 0)][:, np.maximum(ix, 0)][ok]
        assert np.array_equal(data[c], want, equal_nan=True)
    assert desc["patchheat_raster"]["level_shape"] == list(shape)
    assert desc["patchheat_raster"]["classes"] == ["stroma", "tumor"]
    one = ex.write_slide_raster(heatmap, tmp_path / "one.tif", classes=["tumor"])
    assert tifffile.imread(one).shape == (heatmap.grid.height, heatmap.grid.width)


def test_slide_raster_at_the_heatmap_level_by_default(heatmap, tmp_path):
    path = ex.write_slide_raster(heatmap, tmp_path / "r.tif")
    data = tifffile.imread(path)
    assert data.shape == (2, heatmap.grid.height, heatmap.grid.width)
    # the centre pixel of every patch shows that patch's value
    g = heatmap.grid
    rows, cols = np.meshgrid(np.arange(g.rows), np.arange(g.cols), indexing="ij")
    b = g.boxes(rows, cols)
    cy = ((b[..., 0] + b[..., 2] - 1) // 2).astype(int)
    cx = ((b[..., 1] + b[..., 3] - 1) // 2).astype(int)
    inside = (cy >= 0) & (cy < g.height) & (cx >= 0) & (cx < g.width)
    got = data[1][cy[inside], cx[inside]]
    assert np.array_equal(got, heatmap.values[..., 1][inside], equal_nan=True)


# --- PNG overlay ---------------------------------------------------------------------------------
def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


def find_colour_bar(panel: np.ndarray, lut: np.ndarray) -> tuple[int, int, int]:
    """(row, first, last) of a run of the panel that walks the whole colormap, left to right."""
    lut255 = lut * 255
    for y in range(panel.shape[0]):
        row = panel[y].astype(np.float32)
        dist = ((row[:, None, :] - lut255[None]) ** 2).sum(-1)
        idx, err = dist.argmin(1), np.sqrt(dist.min(1))
        good = err < 3
        if good.sum() < panel.shape[1] // 3:
            continue
        xs = np.flatnonzero(good)
        run = xs[(xs >= xs[0]) & (xs <= xs[-1])]
        if idx[run[0]] <= 2 and idx[run[-1]] >= len(lut) - 3 and np.all(np.diff(idx[run]) >= 0):
            return y, int(run[0]), int(run[-1])
    raise AssertionError("no colour bar found below the overlay")


def test_png_overlay_blends_computed_cells_leaves_nan_areas_and_draws_a_colour_bar(tmp_path):
    h = make_heatmap(dict(height=150, width=200, size=16, stride=16), downsample=(4.0, 4.0),
                     nan_fraction=0.4, slide_shape=(600, 800))
    h.values[:, :5] = np.nan  # a whole strip not computed
    rng = np.random.default_rng(1)
    thumb = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
    path = ex.write_png_overlay(h, tmp_path / "o.png", thumb, class_name="tumor", opacity=0.5,
                                max_px=1000, colormap="viridis")
    img = read_png(path)
    hh, ww, bar_h = ex.png_size((600, 800), 1000)
    assert (hh, ww) == (600, 800) and img.shape == (600 + bar_h, 800, 3)
    over = img[:600]
    cells = ex.sample_cells(h.values[..., 1], *ex.raster_cells(h, (600, 800)))
    nan = np.isnan(cells)
    assert nan[:, :5 * 16].all() and nan.any() and (~nan).any()
    assert np.array_equal(over[nan], thumb[nan])  # the slide unchanged where nothing was computed
    lut = ex.colormap_lut("viridis")
    want = np.round(0.5 * thumb[~nan] + 0.5 * lut[np.round(cells[~nan] * 255).astype(int)] * 255)
    assert np.abs(over[~nan].astype(int) - want.astype(int)).max() <= 1
    assert (over[~nan] != thumb[~nan]).any(axis=-1).mean() > 0.9
    y, x0, x1 = find_colour_bar(img[600:], lut)
    assert x1 - x0 > ww // 2
    title_rows = img[600 : 600 + y - 2, ww // 3 : 2 * ww // 3]
    assert (title_rows.min(axis=-1) < 100).any()  # dark title text (the class name) above the bar
    with pytest.raises(AssertionError):
        find_colour_bar(img[600:], ex.colormap_lut("magma"))  # the check can fail


def test_png_overlay_default_size_fits_2000_px_and_never_upscales(heatmap):
    big = make_heatmap(dict(height=500, width=750, size=8, stride=8), downsample=(80.0, 80.0))
    img = ex.render_overlay(big)
    assert max(img.shape[:2]) == 2000 and img.shape[1] == 2000 and img.shape[0] <= 2000
    tall = make_heatmap(dict(height=1000, width=300, size=8, stride=8), downsample=(40.0, 40.0))
    img = ex.render_overlay(tall, max_px=1200)
    assert img.shape[0] == 1200 and img.shape[1] < 1200
    small = make_heatmap(dict(height=60, width=80, size=8, stride=8), downsample=(2.0, 2.0))
    img = ex.render_overlay(small, np.zeros((10, 10, 3), np.uint8))
    assert img.shape[1] == 160
    with pytest.raises(ValueError, match="png_max_px"):
        ex.render_overlay(small, max_px=10)


def test_png_overlay_value_range_and_white_background_without_thumbnail():
    h = make_heatmap(dict(height=64, width=64, size=8, stride=8), downsample=(1.0, 1.0),
                     nan_fraction=0.0)
    h.values[..., 0] = 5.0
    h.values[0, 0, 0] = 10.0
    h.values[1, 1, 0] = np.nan
    img = ex.render_overlay(h, None, opacity=1.0)
    lut = ex.colormap_lut("inferno")
    assert np.abs(img[4, 4].astype(int) - np.round(lut[-1] * 255)).max() <= 1  # 10: the top
    assert np.abs(img[20, 20].astype(int) - np.round(lut[0] * 255)).max() <= 1  # 5 = bottom
    assert (img[12, 12] == 255).all()  # NaN over no thumbnail: white
    above = ex.render_overlay(h, None, opacity=1.0, show_at_or_above=10.0)
    np.testing.assert_array_equal(above[4, 4], img[4, 4])  # 10: at the threshold, shown
    assert (above[20, 20] == 255).all() and (img[20, 20] != 255).any()  # 5: below, hidden


# --- CSV ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(GRIDS))
def test_csv_round_trip_equals_heatmap_and_grid(name, tmp_path):
    h = make_heatmap(GRIDS[name], downsample=(4.0, 4.0))
    path = ex.write_csv(h, tmp_path / "h.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header == [*ex.CSV_COLUMNS, "stroma", "tumor"]
    t = ex.read_csv(path)
    rows, cols = np.nonzero(h.computed)
    assert len(path.read_text().splitlines()) == h.n_computed + 1
    assert np.array_equal(t.rows, rows) and np.array_equal(t.cols, cols) and t.level == h.level
    assert np.array_equal(t.boxes, h.grid.boxes(rows, cols, h.downsample))
    assert np.array_equal(t.centers, h.grid.centers(rows, cols, h.downsample))
    assert np.array_equal(t.values, h.values[rows, cols])  # float32 exactly
    assert t.class_names == h.class_names


def test_csv_fractional_downsample_and_clashing_class_names(tmp_path):
    h = make_heatmap(GRIDS["dilated-nonsquare"], downsample=(4.000345, 3.99917),
                     classes=("x", "tumor"))
    t = ex.read_csv(ex.write_csv(h, tmp_path / "h.csv"))
    rows, cols = np.nonzero(h.computed)
    np.testing.assert_allclose(t.boxes, h.grid.boxes(rows, cols, h.downsample), rtol=0, atol=1e-9)
    assert np.array_equal(t.centers, h.grid.centers(rows, cols, h.downsample))
    assert (tmp_path / "h.csv").read_text().splitlines()[0].endswith(",class_x,tumor")
    assert t.class_names == ("x", "tumor")


def test_csv_class_names_a_spreadsheet_would_run_are_quoted_and_read_back(tmp_path):
    """CSV injection: a class name starting with = + - @ goes in with a leading "'"."""
    import csv

    classes = ("=HYPERLINK(\"http://x\")", "+1", "-cmd", "@SUM(A1)", "'=quoted", "plain")
    h = make_heatmap(GRIDS["dilated-nonsquare"], classes=classes)
    path = ex.write_csv(h, tmp_path / "h.csv")
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header[len(ex.CSV_COLUMNS):] == ["'=HYPERLINK(\"http://x\")", "'+1", "'-cmd",
                                            "'@SUM(A1)", "''=quoted", "plain"]
    assert ex.read_csv(path).class_names == classes
    wsinfer = ex.write_wsinfer_csv(h, tmp_path / "w.csv").read_text().splitlines()[0]
    assert "prob_=HYPERLINK" in wsinfer  # starts with prob_: nothing to run
    values = [float(v) for v in path.read_text().splitlines()[1].split(",")[9:]]
    assert len(values) == len(classes)  # number cells stay numbers


def test_tables_written_in_chunks_are_the_same_files(heatmap, tmp_path, monkeypatch):
    whole = ex.export_heatmap(heatmap, tmp_path / "whole", "h", "csv,geojson")
    monkeypatch.setattr(ex.tables, "TABLE_CHUNK_ROWS", 7)
    assert heatmap.n_computed % 7 != 0
    chunked = ex.export_heatmap(heatmap, tmp_path / "chunked", "h", "csv,geojson")
    for fmt in ("csv", "geojson"):
        assert chunked[fmt].read_bytes() == whole[fmt].read_bytes()


# --- GeoJSON -------------------------------------------------------------------------------------
def check_rfc7946_polygon_collection(doc: dict) -> None:
    """The RFC 7946 rules a FeatureCollection of Polygons must keep."""
    from shapely.geometry import LinearRing, shape

    assert doc["type"] == "FeatureCollection" and isinstance(doc["features"], list)
    assert "crs" not in doc  # removed in RFC 7946
    for feat in doc["features"]:
        assert feat["type"] == "Feature" and set(feat) >= {"geometry", "properties"}
        assert isinstance(feat.get("id", ""), (str, int, float))
        geom = feat["geometry"]
        assert geom["type"] == "Polygon"
        for k, ring in enumerate(geom["coordinates"]):
            assert len(ring) >= 4 and ring[0] == ring[-1]  # closed linear ring
            assert all(len(p) == 2 and all(isinstance(v, (int, float)) for v in p) for p in ring)
            assert LinearRing(ring).is_ccw == (k == 0)  # exterior counter-clockwise, holes not
        assert shape(geom).is_valid


def test_geojson_is_valid_qupath_ready_and_equals_the_grid_boxes(heatmap, tmp_path):
    from shapely.geometry import Polygon, box, shape
    from shapely.geometry.polygon import orient

    path = ex.write_geojson(heatmap, tmp_path / "h.geojson")
    doc = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    check_rfc7946_polygon_collection(doc)
    rows, cols = np.nonzero(heatmap.computed)
    boxes = heatmap.grid.boxes(rows, cols, heatmap.downsample)
    assert len(doc["features"]) == heatmap.n_computed == len(rows)
    ids = set()
    for feat, r, c, (y0, x0, y1, x1) in zip(doc["features"], rows, cols, boxes):
        poly = shape(feat["geometry"])
        assert poly.equals(box(x0, y0, x1, y1))  # x, y order, level-0 pixels
        ccw = orient(Polygon(poly.exterior.coords), 1.0)
        assert list(poly.exterior.coords) == list(ccw.exterior.coords)
        props = feat["properties"]
        assert props["objectType"] == "tile"
        assert props["patchheat"] == {"row": int(r), "col": int(c), "level": heatmap.level}
        vals = heatmap.values[r, c]
        assert [np.float32(props["measurements"][n]) for n in heatmap.class_names] == list(vals)
        top = int(np.argmax(vals))
        assert props["classification"] == {"name": heatmap.class_names[top],
                                           "color": list(ex.CLASS_COLORS_RGB[top])}
        ids.add(feat["id"])
    assert len(ids) == len(rows)
    t = ex.read_geojson(path)
    assert np.array_equal(t.boxes, boxes) and np.array_equal(t.values, heatmap.values[rows, cols])
    assert np.array_equal(t.centers, heatmap.grid.centers(rows, cols, heatmap.downsample))
    again = ex.write_geojson(heatmap, tmp_path / "again.geojson", object_type="detection")
    doc2 = json.loads(again.read_text())
    assert [f["id"] for f in doc2["features"]] == [f["id"] for f in doc["features"]]  # stable ids
    assert doc2["features"][0]["properties"]["objectType"] == "detection"
    with pytest.raises(ValueError, match="object_type"):
        ex.write_geojson(heatmap, tmp_path / "x.geojson", object_type="cell")


def test_nothing_computed_gives_empty_tables_and_an_unchanged_thumbnail(tmp_path):
    h = Heatmap.empty(PatchGrid(64, 96, 8, 8), ("a",), level=0, downsample=1.0)
    written = ex.export_heatmap(h, tmp_path, "e", thumbnail=np.full((64, 96, 3), 77, np.uint8))
    assert written["csv"].read_text().strip() == ",".join([*ex.CSV_COLUMNS, "a"])
    doc = json.loads(written["geojson"].read_text())
    assert doc["features"] == [] and doc["type"] == "FeatureCollection"
    assert (read_png(written["png"])[:64] == 77).all()
    assert np.isnan(tifffile.imread(written["ometiff"])).all()
    assert len(ex.read_csv(written["csv"]).rows) == 0
    assert len(ex.read_geojson(written["geojson"]).rows) == 0


# --- GeoJSON classification ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def dab_heatmap(ihc_png_path) -> Heatmap:
    """The built-in ``dab`` model (TensorFlow) over the real IHC image: one output per patch."""
    from napari_patchheat import compute_heatmap

    h = compute_heatmap(ihc_png_path, "dab", size=64, stride=48, padding="SAME", use_cache=False)
    assert h.class_names == ("dab_positive",) and h.n_computed == h.grid.n_patches > 100
    assert np.unique(h.values).size > 50  # values vary
    return h


def geojson_features(path: Path) -> tuple[dict, list[dict]]:
    doc = json.loads(Path(path).read_text())
    return doc, doc["features"]


def test_dab_geojson_classifies_exactly_the_tiles_at_or_above_the_threshold(dab_heatmap,
                                                                           tmp_path):
    h = dab_heatmap
    values = h.values[..., 0]
    threshold = float(np.sort(values, axis=None)[values.size // 3])  # a value some tile has
    above = values >= threshold
    assert 0 < above.sum() < values.size and (values == threshold).any()
    path = ex.write_geojson(h, tmp_path / "dab.geojson", positive_threshold=threshold)
    doc, features = geojson_features(path)
    assert len(features) == values.size
    classified = np.zeros_like(above)
    for feat in features:
        props = feat["properties"]
        r, c = props["patchheat"]["row"], props["patchheat"]["col"]
        assert np.float32(props["measurements"]["dab_positive"]) == values[r, c]
        if "classification" in props:
            assert props["classification"] == {"name": "dab_positive",
                                               "color": list(ex.CLASS_COLORS_RGB[0])}
            classified[r, c] = True
    assert np.array_equal(classified, above)  # none below, every one at or above
    rule = doc["patchheat"]["classification"]
    assert rule["positive_threshold"] == threshold and rule["min_probability"] is None
    assert "dab_positive" in rule["rule"] and ">=" in rule["rule"]


def test_without_a_threshold_no_dab_tile_is_classified(dab_heatmap, tmp_path):
    assert (dab_heatmap.values > 0).any()  # argmax would call these positive
    doc, features = geojson_features(ex.export_heatmap(dab_heatmap, tmp_path, "dab",
                                                      "geojson")["geojson"])
    assert len(features) == dab_heatmap.n_computed
    assert not any("classification" in f["properties"] for f in features)
    assert doc["patchheat"]["classification"]["positive_threshold"] is None


def test_multiclass_keeps_argmax_and_leaves_tiles_below_min_probability_unclassified(tmp_path):
    h = make_heatmap(GRIDS["valid"], classes=("stroma", "tumor", "necrosis"))
    rows, cols = np.nonzero(h.computed)
    vals = h.values[rows, cols]
    top, best = np.argmax(vals, axis=1), vals.max(axis=1)
    min_probability = 0.7
    assert 0 < (best < min_probability).sum() < len(best) and len(np.unique(top)) == 3
    doc, features = geojson_features(ex.export_heatmap(
        h, tmp_path, "h", "geojson", min_probability=min_probability)["geojson"])
    for feat, k, b in zip(features, top, best):
        got = feat["properties"].get("classification")
        assert got == (None if b < min_probability else
                       {"name": h.class_names[k], "color": list(ex.CLASS_COLORS_RGB[k])})
    assert doc["patchheat"]["classification"]["min_probability"] == min_probability
    _, plain = geojson_features(ex.write_geojson(h, tmp_path / "plain.geojson"))
    assert [f["properties"]["classification"]["name"] for f in plain] == \
        [h.class_names[k] for k in top]  # no minimum: every tile gets its top class


def test_thresholds_that_do_not_fit_the_model_are_clear_errors(dab_heatmap, heatmap, tmp_path):
    with pytest.raises(ValueError, match="positive threshold applies only to a model with one"):
        ex.write_geojson(heatmap, tmp_path / "a.geojson", positive_threshold=0.5)
    with pytest.raises(ValueError, match="minimum probability applies only to a model with"):
        ex.write_geojson(dab_heatmap, tmp_path / "b.geojson", min_probability=0.5)
    with pytest.raises(ValueError, match="must be a finite number"):
        ex.write_geojson(dab_heatmap, tmp_path / "c.geojson", positive_threshold=float("nan"))
    with pytest.raises(ValueError, match="positive threshold applies only"):  # before any file
        ex.export_heatmap(heatmap, tmp_path / "d", "h", positive_threshold=0.5)
    assert list(tmp_path.iterdir()) == []


# --- WSInfer CSV --------------------------------------------------------------------------------
def wsinfer_box_to_polygon(*, minx, miny, width, height):
    """WSInfer's own ``write_geojson._box_to_polygon`` (SBU-BMI/wsinfer, wsinfer/write_geojson.py)
    that turns its CSV rows into GeoJSON rings."""
    maxx = minx + width
    maxy = miny + height
    return [(maxx, miny), (maxx, maxy), (minx, maxy), (minx, miny), (maxx, miny)]


@pytest.mark.parametrize("which", ["dab", "dilated-nonsquare"])
def test_wsinfer_csv_reads_back_with_pandas_as_wsinfer_does(which, dab_heatmap, tmp_path):
    pd = pytest.importorskip("pandas")
    h = dab_heatmap if which == "dab" else make_heatmap(GRIDS["dilated-nonsquare"],
                                                         downsample=(4.000345, 3.99917))
    written = ex.export_heatmap(h, tmp_path, "h", "csv_wsinfer,geojson")
    assert written["csv_wsinfer"] == tmp_path / "h.wsinfer.csv"
    df = pd.read_csv(written["csv_wsinfer"])
    prob_cols = [c for c in df.columns if c.startswith("prob_")]  # how WSInfer finds classes
    assert list(df.columns) == ["minx", "miny", "width", "height", *prob_cols]
    assert prob_cols == [f"prob_{n}" for n in h.class_names]
    rows, cols = np.nonzero(h.computed)
    y0, x0, y1, x1 = h.grid.boxes(rows, cols, h.downsample).T
    assert len(df) == len(rows) and np.unique(df[prob_cols[0]]).size > 10
    np.testing.assert_allclose(df["minx"], x0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(df["miny"], y0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(df["width"], x1 - x0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(df["height"], y1 - y0, rtol=0, atol=1e-9)
    assert (x0 < 0).any() or which != "dab"  # SAME padding: boxes start outside the slide
    values = h.values[rows, cols]
    assert np.array_equal(df[prob_cols].to_numpy(np.float32), values)  # float32 exactly
    _, features = geojson_features(written["geojson"])
    for feat, (_, row) in zip(features, df.iterrows()):  # WSInfer's rings are ours
        ring = wsinfer_box_to_polygon(minx=row["minx"], miny=row["miny"], width=row["width"],
                                      height=row["height"])
        np.testing.assert_allclose(feat["geometry"]["coordinates"][0], ring, rtol=0, atol=1e-9)


# --- atomic writes and errors ------------------------------------------------------------------
def test_a_folder_that_cannot_exist_is_one_clear_error(heatmap, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "exports"  # fails for root too: a file is not a folder
    with pytest.raises(ex.ExportError, match=f"folder '{target}'.*not a folder") as info:
        ex.export_heatmap(heatmap, target, "s1")
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOTDIR
    assert info.value.filename == str(target)
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    with pytest.raises(ex.ExportError, match="not a folder"):
        ex.write_csv(heatmap, blocker / "h.csv")  # single writers too


@pytest.mark.parametrize("fmt", ex.FORMATS)
def test_a_failed_write_leaves_no_half_file_and_keeps_the_old_one(heatmap, tmp_path, monkeypatch,
                                                                  fmt):
    ex.export_heatmap(heatmap, tmp_path, "s1", fmt)
    before = folder_listing(tmp_path)

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(ex.ExportError, match=f"folder '{tmp_path}'.*disk is full") as info:
        ex.export_heatmap(heatmap, tmp_path, "s1", fmt)
    assert info.value.errno == errno.ENOSPC
    assert folder_listing(tmp_path) == before  # old files intact, no temporary files


def test_a_write_failing_halfway_removes_its_temporary_file(heatmap, tmp_path, monkeypatch):
    real = tifffile.TiffWriter.write

    def write_then_fail(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile.TiffWriter, "write", write_then_fail)
    for fmt in ("ometiff", "slide_raster"):
        with pytest.raises(ex.ExportError, match="disk is full"):
            ex.export_heatmap(heatmap, tmp_path, "s1", fmt)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_is_not_wrapped_but_still_cleans_up(heatmap, tmp_path, monkeypatch):
    monkeypatch.setattr(ex.tables, "_num_str", lambda a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        ex.write_csv(heatmap, tmp_path / "h.csv")
    monkeypatch.undo()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(json, "dumps", boom)
    with pytest.raises(KeyboardInterrupt):
        ex.write_geojson(heatmap, tmp_path / "h.geojson")
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_normal_permissions(heatmap, tmp_path):
    path = ex.write_csv(heatmap, tmp_path / "h.csv")
    probe = tmp_path / "probe"
    probe.write_text("")
    assert os.stat(path).st_mode & 0o777 == os.stat(probe).st_mode & 0o777


@pytest.mark.parametrize("damage", ["truncated", "sidecar not JSON", "sidecar without grid"])
def test_a_damaged_heatmap_ome_tiff_is_one_sentence(tmp_path, damage):
    h = make_heatmap(GRIDS["same-overlap"])
    path = ex.write_ome_tiff(h, tmp_path / "h.ome.tif")
    side = ex.sidecar_path(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    else:  # a plain OME-TIFF whose heatmap metadata is only in a damaged sidecar
        import tifffile

        tifffile.imwrite(path, h.values[..., 0], ome=True)
        meta = h.metadata()
        del meta["grid"]
        side.write_text("{" if damage == "sidecar not JSON" else json.dumps(meta))
    with pytest.raises(ValueError, match="cannot be read as a heatmap written by napari-patch"):
        ex.read_ome_tiff(path)
