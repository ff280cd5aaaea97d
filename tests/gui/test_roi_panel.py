"""The dock's regions: a Shapes or Labels layer as the region of interest feeds the status line,
the preview and the run's options with the patches roi.py selects; a heatmap's regions appear
as a Shapes layer over the slide and their numbers in a table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import shapely
from gui_helpers import RUN_TIMEOUT_MS, random_heatmap, text

from napari_patchheat._qt.roi_panel import REGIONS_META_KEY, WHOLE_SLIDE
from napari_patchheat._qt.run_panel import _tiff_spec
from napari_patchheat._qt.slide_layer import SlideLayer
from napari_patchheat.roi import MaskRoi, Region, read_roi_geojson, roi_patch_mask

# regions in level-0 px, QuPath's convention (pixel p covers [p, p + 1))
BOX = (300.0, 200.0, 1500.0, 900.0)  # x0, y0, x1, y1
TRIANGLE = [(200.0, 1200.0), (1800.0, 1300.0), (600.0, 2700.0)]


def world(slide: SlideLayer, xy) -> np.ndarray:
    """Level-0 (x, y), QuPath's -> napari world (y, x) of the slide layer."""
    yx = np.asarray(xy, float)[:, ::-1] - 0.5
    return slide.to_world(yx)


@pytest.fixture
def svs(viewer, widget, svs_path):
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    layer = viewer.add_image(data, **kwargs)
    widget.level.value = 0
    widget.size.value = widget.stride.value = 256
    return SlideLayer.from_layer(layer)


def test_a_shapes_region_selects_the_patches_roi_py_selects(viewer, widget, qtbot, svs):
    assert svs.mpp is not None  # shown in µm: the conversion is tested
    x0, y0, x1, y1 = BOX
    rect = world(svs, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    shapes = viewer.add_shapes([rect, world(svs, TRIANGLE)],
                               shape_type=["rectangle", "polygon"], name="drawn")
    assert widget.region.layer.choices == (WHOLE_SLIDE, shapes)
    widget.region.layer.value = shapes
    expected = shapely.union(shapely.box(*BOX), shapely.Polygon(TRIANGLE))
    want = roi_patch_mask(expected, widget.grid, (1.0, 1.0), svs.level_shape(0))
    assert 0 < want.sum() < widget.grid.n_patches / 2
    np.testing.assert_array_equal(widget.inside, want)
    assert f"{int(want.sum()):,} in the region" in text(widget.status)
    qtbot.waitUntil(lambda: "to run" in text(widget.status), timeout=60_000)

    # the preview draws only the patches inside (the whole slide is in view)
    viewer.reset_view()
    widget.preview.update_now()
    assert widget.preview.layer.nshapes == want.sum()

    # the run gets the regions (level-0 px) and the rule
    widget.region.centre.value = True
    options = widget.run_request().options
    assert options.roi_centre and [r.name for r in options.roi] == ["drawn #1", "drawn #2"]
    drawn = options.roi[0].geometry
    assert shapely.hausdorff_distance(drawn, shapely.box(*BOX)) < 1e-3  # napari keeps float32
    np.testing.assert_array_equal(
        widget.inside, roi_patch_mask(expected, widget.grid, (1.0, 1.0), svs.level_shape(0),
                                      centre=True))

    # edits of the layer update the selection; the whole slide again: no region
    shapes.data = [rect]
    assert widget.inside.sum() < want.sum()
    widget.region.layer.value = WHOLE_SLIDE
    assert widget.inside is None and "in the region" not in text(widget.status)
    assert widget.run_request().options.roi is None


def test_a_region_with_no_patch_is_the_status_line(viewer, widget, svs):
    tiny = world(svs, [(10, 10), (20, 10), (20, 20), (10, 20)])
    widget.region.layer.value = viewer.add_shapes([tiny], shape_type="polygon")
    assert widget.grid is None and "holds no patch" in text(widget.status)
    with pytest.raises(ValueError, match="holds no patch"):
        widget.run_request()


def test_a_labels_region_is_a_mask_over_the_slide(viewer, widget, svs):
    level = 1
    h, w = svs.level_shape(level)
    labels = np.zeros((h, w), np.uint8)
    labels[h // 4: h // 2, w // 3: w] = 3
    dy, dx = svs.downsamples[level]
    scale = (svs.world_per_px[0] * dy, svs.world_per_px[1] * dx)
    # labels pixel p covers level-0 px [p d, (p + 1) d): centred on p d + (d - 1) / 2
    centre = svs.world_offset + (np.array(scale) - svs.world_per_px) / 2
    layer = viewer.add_labels(labels, scale=scale, translate=tuple(centre))
    widget.region.layer.value = layer
    want = roi_patch_mask(labels, widget.grid, (1.0, 1.0), svs.level_shape(0))
    assert 0 < want.sum() < widget.grid.n_patches
    np.testing.assert_array_equal(widget.inside, want)
    assert isinstance(widget.run_request().options.roi, MaskRoi)
    layer.translate = (1e4, 1e4)  # off the slide
    widget._on_params()
    assert "does not cover the slide" in text(widget.status)


def test_a_layer_without_a_file_runs_its_level_with_the_regions_scaled(widget, svs, tmp_path):
    request = widget.run_request()
    request = dataclasses.replace(request, options=dataclasses.replace(
        request.options, level=1, roi=[Region("r", shapely.box(*BOX))]))
    spec = _tiff_spec(request, tmp_path / "level1.tif")
    dy, dx = svs.downsamples[1]
    x0, y0, x1, y1 = BOX
    assert spec.options.level == 0
    assert spec.options.roi[0].geometry.equals(shapely.box(x0 / dx, y0 / dy, x1 / dx, y1 / dy))


def test_regions_and_numbers_of_a_heatmap(viewer, widget, svs, tmp_path):
    heatmap = random_heatmap(svs, 0, 64, 64, classes=("a",), padding="VALID", seed=2)
    widget.display.show_heatmap(heatmap, svs)
    panel = widget.regions
    panel.threshold.value = 0.9
    shapes = viewer.add_shapes([world(svs, [(0, 0), (1000, 0), (1000, 1000), (0, 1000)])],
                               shape_type="polygon", name="roi")
    widget.region.layer.value = shapes
    assert panel.compute()
    layer = panel.layer
    assert layer.metadata[REGIONS_META_KEY] and layer in viewer.layers
    kinds = [r.kind for r in panel.rows]
    n_regions = kinds.count("region")
    assert kinds[:2] == ["all", "roi"] and n_regions > 1
    assert panel.rows[0].patches == heatmap.n_computed
    above = (heatmap.values[..., 0] >= 0.9).sum()
    assert sum(r.patches for r in panel.rows if r.kind == "region") == above
    table = panel.table.value
    assert len(table["data"]) == len(panel.rows) and list(table["columns"][1:3]) == [
        "region\narea", "patch\narea"]
    # the outlines lie on the cells: every vertex of the first region is on the cell lattice
    (scale, translate) = heatmap.placement(svs.world_per_px)
    corners = np.concatenate(layer.data)
    on_lattice = (corners - np.asarray(translate) + np.asarray(scale) / 2) / np.asarray(scale)
    np.testing.assert_allclose(on_lattice, np.round(on_lattice), atol=1e-6)
    assert panel.compute() and sum(REGIONS_META_KEY in lay.metadata for lay in viewer.layers) == 1
    widget.display.export_folder.value = tmp_path
    widget.display.export_stem.value = "cmu"
    files = panel.export()
    back = read_roi_geojson(files["geojson"])
    assert len(back) == n_regions and files["csv"].read_text().count("\n") == len(panel.rows) + 1
    panel.threshold.value = 1.0
    assert not panel.compute()
    assert "no computed patch has a >= 1" in text(widget.status)
    widget.region.layer.value = WHOLE_SLIDE
    panel.threshold.value = 0.9
    assert widget.regions.compute() and [r.kind for r in widget.regions.rows][:2] == [
        "all", "region"]


def test_a_run_in_the_dock_computes_exactly_the_patches_inside(viewer, widget, qtbot, tmp_path,
                                                               pyramid):
    """The IHC sample as a numpy pyramid (run through a temporary TIFF of level 1, the regions
    scaled to it) inside a drawn triangle: the heatmap is computed where the dock said."""
    import skimage.data

    levels = pyramid(skimage.data.immunohistochemistry(), (2,))
    layer = viewer.add_image(levels, rgb=True, multiscale=True, name="ihc")
    slide = SlideLayer.from_layer(layer)
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "dab"
    widget.level.value = 1
    widget.size.value, widget.stride.value = 32, 16
    widget.tissue_threshold.value = 0.0
    widget.region.layer.value = viewer.add_shapes(
        [world(slide, [(40, 30), (500, 200), (100, 480)])], shape_type="polygon")
    inside = widget.inside
    assert 0 < inside.sum() < widget.grid.n_patches / 2
    assert widget.run_panel.run()
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    assert "done" in text(widget.run_panel.info), text(widget.run_panel.info)
    h = widget.display.heatmap
    np.testing.assert_array_equal(h.computed, inside)
    assert h.extra["roi"]["patches"] == inside.sum()
