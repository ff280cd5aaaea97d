"""The heatmap panel: heatmap layers placed on their patches, display that never recomputes,
new layers or merges, heatmaps read back from files, and Export."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from gui_helpers import random_heatmap, text

from napari_patchheat._qt import heatmap_panel
from napari_patchheat._qt.canvas import is_outline_layer
from napari_patchheat._qt.legend import LEGEND_OVERLAY_KEY
from napari_patchheat._qt.slide_layer import SlideLayer
from napari_patchheat.export import FORMATS, SUFFIXES, read_csv, read_ome_tiff
from napari_patchheat.heatmap import CLASS_META_KEY

EXPORT_TIMEOUT_MS = 60_000


def export_and_wait(panel, qtbot):
    """Start an export and wait for it: the files written, or None when it failed."""
    assert panel.export()
    qtbot.waitUntil(lambda: not panel.exporting, timeout=EXPORT_TIMEOUT_MS)
    return panel.exported


def slide_file_layer(viewer, path, shape=(300, 400)):
    """A slide file written at ``path`` and opened with this plugin's reader."""
    import tifffile

    from napari_patchheat._reader import read_slides

    tifffile.imwrite(path, np.full((*shape, 3), 180, np.uint8), photometric="rgb")
    data, kwargs, _ = read_slides(str(path))[0]
    return viewer.add_image(data, **kwargs)


@pytest.mark.parametrize("level, mpp", [(0, None), (1, None), (1, 0.25)])
def test_heatmap_cells_lie_on_their_patches(viewer, widget, pyramid, level, mpp):
    levels = pyramid(np.zeros((1001, 1403, 3), np.uint8), (4,))
    scale = 1.0 if mpp is None else mpp
    layer = viewer.add_image(levels, rgb=True, multiscale=True, scale=(scale, scale),
                             metadata={} if mpp is None else {"mpp": (mpp, mpp)}, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, level, 24, 24)  # stride == size: cells are the patches
    hl = widget.display.show_heatmap(heatmap, slide)
    grid, ds = heatmap.grid, heatmap.downsample
    assert ds == (1001 / 251, 1403 / 351) if level else ds == (1.0, 1.0)
    for i, j in [(1, 1), (3, 7), (grid.rows - 1, grid.cols - 1), (grid.rows // 2, 5)]:
        centre = grid.centers(i, j, ds) * scale  # world point of the patch's centre
        assert np.allclose(np.round(hl.world_to_data(centre)), (i, j))
        assert hl.get_value(centre, world=True) == pytest.approx(heatmap.values[i, j, 0])
        # the cell's far edges (data i + 1/2) lie where the patch's level-0 box ends: pixel
        # y1 - 1 is the last one in the patch, its outer edge is world y1 - 0.5
        y0, x0, y1, x1 = grid.box(i, j, ds)
        edge = np.asarray(hl.data_to_world((i + 0.5, j + 0.5)))
        assert np.abs(edge - (np.array([y1, x1]) - 0.5) * scale).max() <= 0.5 * scale
        start = np.asarray(hl.data_to_world((i - 0.5, j - 0.5)))
        assert np.abs(start - (np.array([y0, x0]) - 0.5) * scale).max() <= 0.5 * scale
    assert np.isnan(hl.get_value(grid.centers(0, 1, ds) * scale, world=True))  # not computed

def test_class_colormap_opacity_never_recompute(viewer, widget):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    heatmap = random_heatmap(SlideLayer.from_layer(layer), 0, 40, 40)
    hl = widget.display.show_heatmap(heatmap, SlideLayer.from_layer(layer))
    values = heatmap.values
    assert widget.display.class_name.choices == ("a", "b") and hl.name == "toy · slide · a"
    widget.display.class_name.value = "b"
    np.testing.assert_array_equal(hl.data, values[..., 1])
    assert hl.name == "toy · slide · b" and hl.metadata[CLASS_META_KEY] == 1
    widget.display.colormap.value = "viridis"
    widget.display.opacity.value = 0.3
    assert hl.colormap.name == "viridis" and hl.opacity == pytest.approx(0.3)
    assert tuple(hl.contrast_limits) == (0.0, 1.0)
    assert widget.display.heatmap.values is values and not widget.run_panel.running

def test_other_parameters_make_a_new_layer_same_ones_merge(viewer, widget):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    first = widget.display.show_heatmap(random_heatmap(slide, 0, 40, 40), slide)
    other = widget.display.show_heatmap(random_heatmap(slide, 0, 40, 20), slide)
    assert other is not first and first in viewer.layers  # another grid: a layer of its own
    again = random_heatmap(slide, 0, 40, 40, seed=5)
    again.values[:] = np.nan  # e.g. a run whose cache was lost
    assert widget.display.show_heatmap(again, slide) is first  # same grid and model: merged
    np.testing.assert_array_equal(first.data, random_heatmap(slide, 0, 40, 40).values[..., 0])
    n = len(viewer.layers)
    replaced = widget.display.show_heatmap(random_heatmap(slide, 0, 32, 32), slide, replace=True)
    assert replaced is first and len(viewer.layers) == n and first.data.shape == (13, 16)

def test_a_heatmap_read_back_from_a_file_finds_its_slide(viewer, widget, qtbot, tmp_path):
    import tifffile

    from napari_patchheat._reader import read_slides
    from napari_patchheat.export import write_ome_tiff

    slide_file = tmp_path / "slide.tif"
    tifffile.imwrite(slide_file, np.full((300, 400, 3), 180, np.uint8), photometric="rgb")
    data, kwargs, _ = read_slides(str(slide_file))[0]
    viewer.add_image(data, **kwargs)
    slide = SlideLayer.from_layer(viewer.layers[-1])
    heatmap = random_heatmap(slide, 0, 50, 50)
    heatmap.slide_path = str(slide_file)
    write_ome_tiff(heatmap, tmp_path / "h.ome.tif")
    for data, kwargs, _ in read_slides(str(tmp_path / "h.ome.tif")):
        viewer.add_image(data, **kwargs)  # selecting it makes it the heatmap in use
    assert widget.display.heatmap is not None and widget.display.heatmap.grid == heatmap.grid
    assert widget.image_layer.value is viewer.layers[0]  # heatmaps are not offered as slides
    assert widget.display.source_of(widget.display.layer) is viewer.layers[0]  # by its path
    widget.size.value = widget.stride.value = 50
    widget.padding.value = "SAME"
    widget.inspector.select(1, 2)
    a, b = heatmap.values[1, 2]
    assert f"a {a:.4g}, b {b:.4g}" in text(widget.inspector.info)
    widget.display.export_folder.value = tmp_path / "out"
    widget.display.export_formats["png"].value = True
    assert export_and_wait(widget.display, qtbot)["png"].is_file()

def test_export_writes_every_format(viewer, widget, qtbot, tmp_path):
    layer = viewer.add_image(np.full((400, 500, 3), 200, np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    widget.display.show_heatmap(random_heatmap(slide, 0, 40, 40), slide)
    widget.display.export_folder.value = tmp_path / "out"
    widget.display.export_stem.value = "case1"
    files = export_and_wait(widget.display, qtbot)
    assert set(files) == set(FORMATS) | {"json"}
    for fmt in FORMATS:
        assert (files[fmt] == tmp_path / "out" / f"case1{SUFFIXES[fmt]}"
                and files[fmt].stat().st_size)
    assert "exported" in text(widget.display.export_info)

def test_export_to_an_unwritable_folder_is_an_error_and_keeps_the_layer(viewer, widget, qtbot,
                                                                         tmp_path, errors):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, 0, 40, 40)
    hl = widget.display.show_heatmap(heatmap, slide)
    before = heatmap.values.copy()
    (tmp_path / "a_file").write_text("in the way")
    widget.display.export_folder.value = tmp_path / "a_file" / "out"  # a folder under a file
    assert export_and_wait(widget.display, qtbot) is None
    assert len(errors) == 1 and "Cannot write" in errors[0] and "a_file" in errors[0]
    assert "Cannot write" in text(widget.status)
    assert "failed" in text(widget.display.export_info)
    assert hl in viewer.layers and widget.display.heatmap is heatmap
    np.testing.assert_array_equal(heatmap.values, before)
    assert widget.display.export_button.enabled  # the widget stays usable
    widget.display.export_folder.value = tmp_path / "fine"
    assert export_and_wait(widget.display, qtbot) is not None


def export_geojson(widget, qtbot, tmp_path, stem: str):
    """Export only the GeoJSON of the heatmap in use; (features, the rule the file states)."""
    import json

    for fmt, box in widget.display.export_formats.items():
        box.value = fmt == "geojson"
    widget.display.export_folder.value = tmp_path
    widget.display.export_stem.value = stem
    files = export_and_wait(widget.display, qtbot)
    assert files is not None and set(files) == {"geojson"}
    doc = json.loads(files["geojson"].read_text())
    return doc["features"], doc["patchheat"]["classification"]


def classified(features, heatmap) -> np.ndarray:
    """(rows, cols) class index of each exported tile, -1 where it has no classification."""
    out = np.full(heatmap.grid.shape, -2)
    for feat in features:
        props = feat["properties"]
        name = props.get("classification", {}).get("name")
        out[props["patchheat"]["row"], props["patchheat"]["col"]] = \
            -1 if name is None else heatmap.class_names.index(name)
    return out


def test_the_positive_threshold_field_reaches_the_geojson(viewer, widget, qtbot, tmp_path,
                                                         errors):
    layer = viewer.add_image(np.full((400, 500, 3), 200, np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, 0, 40, 40, classes=("dab_positive",))
    widget.display.show_heatmap(heatmap, slide)
    panel = widget.display
    assert panel.positive_threshold.visible and not panel.min_probability.visible
    values, computed = heatmap.values[..., 0], heatmap.computed
    assert 0 < (values[computed] >= 0.6).sum() < computed.sum()  # values vary around it
    panel.positive_threshold.value = "0.6"
    features, rule = export_geojson(widget, qtbot, tmp_path, "t")
    assert len(features) == computed.sum() and rule["positive_threshold"] == 0.6
    got = classified(features, heatmap)
    np.testing.assert_array_equal(got[computed], np.where(values[computed] >= 0.6, 0, -1))
    panel.positive_threshold.value = ""  # no threshold: no tile is classified
    features, rule = export_geojson(widget, qtbot, tmp_path, "none")
    assert rule["positive_threshold"] is None
    assert (classified(features, heatmap)[computed] == -1).all()
    panel.positive_threshold.value = "high"
    assert panel.export() is False and not panel.exporting  # nothing starts
    assert len(errors) == 1 and "'high' is not a number" in errors[0]


def test_sd_channels_show_like_classes_and_classify_nothing(viewer, widget, qtbot, tmp_path):
    layer = viewer.add_image(np.full((400, 500, 3), 200, np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, 0, 40, 40, classes=("dab_positive", "dab_positive sd"))
    hl = widget.display.show_heatmap(heatmap, slide)
    panel = widget.display
    assert panel.class_name.choices == ("dab_positive", "dab_positive sd")
    panel.class_name.value = "dab_positive sd"
    np.testing.assert_array_equal(hl.data, heatmap.values[..., 1])
    assert hl.name == "toy · slide · dab_positive sd"
    # one class (its sd is none): the positive threshold applies, to the class channel only
    assert panel.positive_threshold.visible and not panel.min_probability.visible
    panel.positive_threshold.value = "0.6"
    features, _ = export_geojson(widget, qtbot, tmp_path, "sd")
    computed, values = heatmap.computed, heatmap.values[heatmap.computed]
    assert ((values[:, 1] >= 0.6) != (values[:, 0] >= 0.6)).any()
    np.testing.assert_array_equal(classified(features, heatmap)[computed],
                                  np.where(values[:, 0] >= 0.6, 0, -1))


def test_a_heatmaps_recorded_threshold_fills_the_field(viewer, widget):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, 0, 40, 40, classes=("tumour",))
    heatmap.extra["positive_threshold"] = 0.35  # from the model card or `patchheat run`
    widget.display.show_heatmap(heatmap, slide)
    assert widget.display.positive_threshold.value == "0.35"


def test_the_min_probability_field_leaves_multiclass_tiles_unclassified(viewer, widget, qtbot,
                                                                       tmp_path):
    layer = viewer.add_image(np.full((400, 500, 3), 200, np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, 0, 40, 40, classes=("a", "b", "c"))
    widget.display.show_heatmap(heatmap, slide)
    panel = widget.display
    assert panel.min_probability.visible and not panel.positive_threshold.visible
    computed = heatmap.computed
    vals = heatmap.values[computed]
    top = np.argmax(vals, axis=1)
    assert 0 < (vals.max(axis=1) < 0.7).sum() < len(vals) and len(np.unique(top)) == 3
    features, _ = export_geojson(widget, qtbot, tmp_path, "argmax")  # empty: each its top class
    np.testing.assert_array_equal(classified(features, heatmap)[computed], top)
    panel.min_probability.value = "0.7"
    features, rule = export_geojson(widget, qtbot, tmp_path, "min")
    assert rule["min_probability"] == 0.7
    np.testing.assert_array_equal(classified(features, heatmap)[computed],
                                  np.where(vals.max(axis=1) >= 0.7, top, -1))



def outlines_on_top(viewer) -> bool:
    """True when the outline layers (grid preview, selected patch) are the top layers."""
    flags = [is_outline_layer(layer) for layer in viewer.layers]
    return any(flags) and flags == sorted(flags)


def test_a_new_heatmap_goes_on_top_of_the_heatmaps_under_the_outlines(viewer, widget, qtbot):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    widget.size.value = widget.stride.value = 40
    assert widget.inspector.select(2, 3)  # the selected-patch outline
    qtbot.waitUntil(lambda: outlines_on_top(viewer), timeout=5_000)
    slide = SlideLayer.from_layer(layer)
    first = widget.display.show_heatmap(random_heatmap(slide, 0, 40, 40), slide)
    second = widget.display.show_heatmap(random_heatmap(slide, 0, 40, 20, model="other"), slide)
    assert list(viewer.layers)[:3] == [layer, first, second]  # the second is not hidden
    assert outlines_on_top(viewer)
    later = viewer.add_image(np.zeros((300, 300, 3), np.uint8), rgb=True, name="slide 2")
    qtbot.waitUntil(lambda: outlines_on_top(viewer), timeout=5_000)  # the outlines follow
    third = widget.display.show_heatmap(random_heatmap(slide, 0, 40, 20, model="third"), slide)
    assert list(viewer.layers)[:5] == [layer, first, second, third, later]
    qtbot.waitUntil(lambda: outlines_on_top(viewer), timeout=5_000)
    assert widget.display.show_heatmap(random_heatmap(slide, 0, 40, 40, seed=4), slide) is first
    assert list(viewer.layers)[:5] == [layer, first, second, third, later]  # merged: stays


def test_layer_names_are_short_with_a_run_number_and_name_the_export(viewer, widget, tmp_path):
    layer = slide_file_layer(viewer, tmp_path / "CMU-1-Small-Region.svs.tif")
    assert layer.name == "CMU-1-Small-Region.svs.tif"
    slide = SlideLayer.from_layer(layer)
    panel = widget.display
    dab = random_heatmap(slide, 0, 50, 50, classes=("dab_positive",), model="dab")
    first = panel.show_heatmap(dab, slide)
    assert first.name == "dab · CMU-1-Small-Region"  # one class: not named
    assert panel.export_stem.value == "dab_CMU-1-Small-Region"
    again = panel.show_heatmap(
        random_heatmap(slide, 0, 50, 25, classes=("dab_positive",), model="dab"), slide)
    assert again.name == "dab · CMU-1-Small-Region (2)"
    assert panel.export_stem.value == "dab_CMU-1-Small-Region_2"
    assert panel.show_heatmap(dab, slide) is first and first.name == "dab · CMU-1-Small-Region"
    multi = panel.show_heatmap(random_heatmap(slide, 0, 50, 50, classes=("a", "b"), model="hed"),
                               slide)
    assert multi.name == "hed · CMU-1-Small-Region · a"
    panel.class_name.value = "b"
    assert multi.name == "hed · CMU-1-Small-Region · b"
    assert panel.export_stem.value == "hed_CMU-1-Small-Region"  # every class goes to the files
    viewer.layers.remove(again)
    third = panel.show_heatmap(
        random_heatmap(slide, 0, 40, 40, classes=("dab_positive",), model="dab"), slide)
    assert third.name == "dab · CMU-1-Small-Region (2)"  # numbers the heatmaps still open


def test_the_top_visible_map_shows_its_colour_bar_and_legend(viewer, widget):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    panel = widget.display
    legend = viewer.canvas.overlays[LEGEND_OVERLAY_KEY]
    first = panel.show_heatmap(random_heatmap(slide, 0, 40, 40, classes=("tumour", "stroma")),
                               slide)
    assert first.colorbar.visible and tuple(first.contrast_limits) == (0.0, 1.0)
    assert legend.visible and "tumour" in legend.text and "0–1" in legend.text
    assert first.name in legend.text
    assert legend.position == first.colorbar.position  # the legend sits over its colour bar
    panel.class_name.value = "stroma"
    assert "stroma" in legend.text and "tumour" not in legend.text
    second = panel.show_heatmap(random_heatmap(slide, 0, 40, 20, classes=("dab_positive",),
                                               model="dab"), slide)
    assert second.colorbar.visible and not first.colorbar.visible  # one bar: the top one's
    assert "dab_positive" in legend.text and second.name in legend.text
    viewer.layers.selection.active = first  # the one in use lies under the second: no change
    assert panel.layer is first and second.colorbar.visible and not first.colorbar.visible
    assert "dab_positive" in legend.text
    second.visible = False  # the top visible map is the first now
    assert first.colorbar.visible and not second.colorbar.visible and "stroma" in legend.text
    viewer.layers.move(viewer.layers.index(first), viewer.layers.index(second) + 1)
    second.visible = True  # visible again, but under the first
    assert first.colorbar.visible and "stroma" in legend.text
    first.visible = second.visible = False
    assert not legend.visible
    first.visible = True
    assert legend.visible
    viewer.layers.remove(first)
    assert not legend.visible
    second.visible = True
    assert legend.visible and second.name in legend.text


def test_export_runs_off_the_gui_thread_on_the_values_it_started_with(viewer, widget, qtbot,
                                                                     tmp_path, monkeypatch):
    gates, writers, notes = [threading.Event(), threading.Event()], [], []
    write = heatmap_panel.export_heatmap

    def held_export(*args, **kwargs):  # export_heatmap of one format, held until let go
        writers.append(threading.current_thread())
        assert gates[len(writers) - 1].wait(30)
        return write(*args, **kwargs)

    monkeypatch.setattr(heatmap_panel, "export_heatmap", held_export)
    monkeypatch.setattr(heatmap_panel, "show_info", notes.append)
    layer = viewer.add_image(np.full((400, 500, 3), 200, np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    heatmap = random_heatmap(slide, 0, 40, 40)
    panel = widget.display
    hl = panel.show_heatmap(heatmap, slide)
    for fmt, box in panel.export_formats.items():
        box.value = fmt in ("ometiff", "csv")
    out = tmp_path / "out"
    panel.export_folder.value, panel.export_stem.value = out, "held"
    exported = heatmap.values.copy()
    assert panel.export()  # returns while the files are still being written
    assert panel.exporting and not panel.export_button.enabled
    assert not panel.export_busy.native.isHidden()
    assert (panel.export_busy.max, panel.export_busy.value) == (2, 0)  # formats written
    qtbot.waitUntil(lambda: len(writers) == 1, timeout=10_000)
    assert writers[0] is not threading.main_thread() and not out.exists()
    qtbot.waitUntil(lambda: "OME-TIFF (1 of 2)" in text(panel.export_info), timeout=10_000)
    heatmap.values[...] = 0.25  # a run's batch lands while the export runs
    panel.refresh_layer()
    assert (hl.data == 0.25).all()
    gates[0].set()
    qtbot.waitUntil(lambda: len(writers) == 2, timeout=EXPORT_TIMEOUT_MS)
    qtbot.waitUntil(lambda: "CSV (2 of 2)" in text(panel.export_info), timeout=10_000)
    assert panel.exporting and panel.export_busy.value == 1
    assert sorted(f.name for f in out.iterdir()) == ["held.json", "held.ome.tif"]
    gates[1].set()
    qtbot.waitUntil(lambda: not panel.exporting, timeout=EXPORT_TIMEOUT_MS)
    files = panel.exported
    assert set(files) == {"ometiff", "json", "csv"} and files["csv"].parent == out
    np.testing.assert_array_equal(read_ome_tiff(files["ometiff"]).values, exported)
    table = read_csv(files["csv"])
    assert len(table.rows) == np.isfinite(exported).all(-1).sum()
    np.testing.assert_allclose(table.values, exported[table.rows, table.cols], rtol=1e-6)
    assert panel.export_button.enabled and panel.export_busy.native.isHidden()
    assert len(notes) == 1 and str(out) in notes[0] and "3 files" in notes[0]
    assert "exported 3 files" in text(panel.export_info) and out.name in text(panel.export_info)


def test_the_class_choices_outlive_a_layer_added_later(viewer, widget):
    layer = viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    slide = SlideLayer.from_layer(layer)
    hl = widget.display.show_heatmap(random_heatmap(slide, 0, 40, 40, classes=("a", "b", "c")),
                                     slide)
    widget.display.class_name.value = "b"
    viewer.add_image(np.zeros((50, 50), np.uint8), name="another")  # napari resets choices
    assert widget.display.class_name.choices == ("a", "b", "c")
    assert widget.display.class_name.value == "b" and hl.metadata[CLASS_META_KEY] == 1


# --- the PNG export's colours (napari imported for its colormaps; no canvas needed) -------------
COLOUR_CHECK_POINTS = (2, 256, 1001, 4099)  # colormap_lut's n: ~5000 distinct values of 0..1


def offered_colormaps() -> list[str]:
    """The colormap names the dock offers, and the default of the export API (the CLI's PNG)."""
    import inspect

    from napari_patchheat.export import colormap_lut, export_heatmap, render_overlay

    defaults = {inspect.signature(f).parameters["colormap"].default
                for f in (export_heatmap, render_overlay, colormap_lut)}
    return sorted(set(heatmap_panel.COLORMAPS) | defaults)


class DuckColormap:
    """Not a napari Colormap, but with its ``map``: the export takes it as one."""

    def __init__(self, colormap):
        self.colormap = colormap

    def map(self, values):
        return self.colormap.map(values)


@pytest.mark.parametrize("name", offered_colormaps())
def test_the_png_colours_are_naparis_for_every_offered_colormap(name):
    """colormap_lut (which imports no napari) equals napari's ensure_colormap(name).map, value
    for value, by name, for napari's Colormap passed in, and for any object with its ``map``."""
    from napari.utils.colormaps import ensure_colormap

    from napari_patchheat.export import colormap_lut

    napari_map = ensure_colormap(name)
    for n in COLOUR_CHECK_POINTS:
        want = napari_map.map(np.linspace(0.0, 1.0, n))[:, :3].astype(np.float32)
        np.testing.assert_array_equal(colormap_lut(name, n), want)
        np.testing.assert_array_equal(colormap_lut(napari_map, n), want)
        np.testing.assert_array_equal(colormap_lut(DuckColormap(napari_map), n), want)


def test_the_colour_check_can_fail():
    """Another map differs, and so does the right map off by one float32 step: cmap's stops in
    float64 (napari keeps them as float32), interpolated the same way."""
    from cmap import Colormap as CmapColormap
    from napari.utils.colormaps import Colormap, ensure_colormap

    from napari_patchheat.export import colormap_lut

    values = np.linspace(0.0, 1.0, 1001)
    want = ensure_colormap("inferno").map(values)[:, :3].astype(np.float32)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(colormap_lut("magma", 1001), want)
    reversed_map = Colormap(colors=ensure_colormap("inferno").colors[::-1], name="inferno_rev")
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(colormap_lut(reversed_map, 1001), want)
    stops = CmapColormap("inferno").color_stops
    in_float64 = np.stack([np.interp(values, np.asarray(stops.stops),
                                     np.asarray(stops.color_array)[:, k]) for k in range(3)], -1)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(in_float64.astype(np.float32), want)
    np.testing.assert_allclose(in_float64, want, atol=2e-7)  # a miss of one step, not a bug


def test_the_png_colours_need_no_napari():
    """The export's colours come without napari (in a fresh interpreter: this one has it)."""
    import subprocess
    import sys

    code = ("import sys; from napari_patchheat.export import colormap_lut, render_overlay; "
            "assert colormap_lut('turbo', 7).shape == (7, 3); "
            "assert 'napari' not in sys.modules, 'napari imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
