"""Results kept apart: a run inside a region of interest gets its own layer, named after the
region, and reuses what the whole slide's run computed (the cache is the whole slide's); a run
into a hidden layer shows it; the legend and colour bar describe the top visible map, the
overlap mean included. Real runs of the built-in 'dab' model on the CMU SVS."""

from __future__ import annotations

import numpy as np
from gui_helpers import RUN_TIMEOUT_MS, random_heatmap, text

from napari_patchheat._qt.legend import LEGEND_OVERLAY_KEY
from napari_patchheat._qt.roi_panel import WHOLE_SLIDE
from napari_patchheat._qt.slide_layer import SlideLayer, is_heatmap_layer
from napari_patchheat.heatmap import HEATMAP_META_KEY


def run_and_wait(widget, qtbot) -> str:
    """Run the dock's parameters to the end; the run's last line."""
    assert widget.run_panel.run()
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=RUN_TIMEOUT_MS)
    return text(widget.run_panel.info)


def heatmap_layers(viewer) -> list:
    return [layer for layer in viewer.layers if is_heatmap_layer(layer)]


def dab_on_the_svs(viewer, widget, tmp_path, svs_path) -> tuple[SlideLayer, int]:
    """The CMU SVS opened by our reader, the dock set to `dab` at 64 px over every patch of
    level 0 (a cache of its own): the slide and the grid's patch count."""
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    slide = SlideLayer.from_layer(viewer.add_image(data, **kwargs))
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "dab"
    widget.level.value = 0
    widget.size.value = widget.stride.value = 64
    widget.tissue_threshold.value = 0.0
    return slide, widget.grid.n_patches


def test_a_region_run_has_its_own_layer_and_computes_nothing_the_slide_run_did(
        viewer, widget, qtbot, tmp_path, svs_path):
    slide, n = dab_on_the_svs(viewer, widget, tmp_path, svs_path)
    assert run_and_wait(widget, qtbot) == f"done: {n:,} patches computed by this run"
    whole = widget.display.layer
    values = whole.metadata[HEATMAP_META_KEY].values.copy()
    metadata, data_before, name = dict(whole.metadata), whole.data.copy(), whole.name
    assert np.nanstd(values) > 0 and name == f"dab · {svs_path.stem}"

    # a rectangle as the region, the whole slide's layer hidden: a layer of its own
    corners = slide.to_world(np.array([[200.0, 300.0], [900.0, 1500.0]]))
    roi = viewer.add_shapes([corners], shape_type="rectangle", name="ROI 1")
    widget.region.layer.value = roi
    inside = widget.inside
    assert 0 < inside.sum() < n / 2
    whole.visible = False
    assert run_and_wait(widget, qtbot) == (f"done: 0 patches computed by this run, "
                                           f"{int(inside.sum()):,} from the cache")
    layer = widget.display.layer
    assert layer is not whole and len(heatmap_layers(viewer)) == 2
    assert layer.name == f"dab · {svs_path.stem} · ROI 1" and layer.visible
    h = layer.metadata[HEATMAP_META_KEY]
    np.testing.assert_array_equal(h.computed, inside)  # the region's patches, and only those
    np.testing.assert_array_equal(h.values[inside], values[inside])
    assert h.extra["roi"]["name"] == "ROI 1" and h.extra["roi"]["patches"] == inside.sum()
    # the whole slide's layer is as it was: values, pixels, name, metadata
    assert whole.name == name and not whole.visible and dict(whole.metadata) == metadata
    np.testing.assert_array_equal(whole.metadata[HEATMAP_META_KEY].values, values)
    np.testing.assert_array_equal(whole.data, data_before)
    assert "roi" not in whole.metadata[HEATMAP_META_KEY].extra
    legend = viewer.canvas.overlays[LEGEND_OVERLAY_KEY]
    assert legend.visible and layer.name in legend.text and layer.colorbar.visible

    # the region again, "replace" ticked, the whole slide's layer in use: the region's layer
    viewer.layers.selection.active = whole
    widget.run_panel.replace.value = True
    assert run_and_wait(widget, qtbot).startswith("done: 0 patches computed")
    assert widget.display.layer is layer and len(heatmap_layers(viewer)) == 2
    # another region, "replace" ticked, the whole slide's layer in use: a layer of its own
    viewer.layers.selection.active = whole
    widget.region.layer.value = viewer.add_shapes([corners / 2], shape_type="rectangle",
                                                  name="ROI 2")
    assert run_and_wait(widget, qtbot).startswith("done: 0 patches computed")
    second = widget.display.layer
    assert second.name == f"dab · {svs_path.stem} · ROI 2" and len(heatmap_layers(viewer)) == 3
    assert whole.name == name and dict(whole.metadata) == metadata
    np.testing.assert_array_equal(whole.metadata[HEATMAP_META_KEY].values, values)
    viewer.layers.remove(second)

    # the whole slide again into its hidden layer, at another tissue threshold: it is shown
    widget.run_panel.replace.value = False
    widget.region.layer.value = WHOLE_SLIDE
    widget.tissue_threshold.value = 0.3
    assert run_and_wait(widget, qtbot).startswith("done: 0 patches computed")
    assert widget.display.layer is whole and whole.visible and len(heatmap_layers(viewer)) == 2
    np.testing.assert_array_equal(whole.metadata[HEATMAP_META_KEY].values, values)
    np.testing.assert_array_equal(layer.metadata[HEATMAP_META_KEY].computed, inside)
    # the region's layer lies on top: the legend still describes it
    assert layer.name in legend.text and layer.colorbar.visible and not whole.colorbar.visible


def test_a_region_run_first_leaves_the_whole_slide_run_only_the_rest(viewer, widget, qtbot,
                                                                     tmp_path, svs_path):
    slide, n = dab_on_the_svs(viewer, widget, tmp_path, svs_path)
    corners = slide.to_world(np.array([[200.0, 300.0], [900.0, 1500.0]]))
    widget.region.layer.value = viewer.add_shapes([corners], shape_type="rectangle",
                                                  name="ROI 1")
    k = int(widget.inside.sum())
    assert run_and_wait(widget, qtbot) == f"done: {k:,} patches computed by this run"
    region_layer = widget.display.layer
    widget.region.layer.value = WHOLE_SLIDE
    assert run_and_wait(widget, qtbot) == (f"done: {n - k:,} patches computed by this run, "
                                           f"{k:,} from the cache")
    whole = widget.display.layer
    assert whole is not region_layer and whole.name == f"dab · {svs_path.stem}"
    assert whole.metadata[HEATMAP_META_KEY].n_computed == n
    assert region_layer.metadata[HEATMAP_META_KEY].n_computed == k


def test_the_overlap_mean_has_the_legend_while_it_is_on_top(viewer, widget, svs_path):
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    slide = SlideLayer.from_layer(viewer.add_image(data, **kwargs))
    heatmap_layer = widget.display.show_heatmap(
        random_heatmap(slide, 1, 64, 32, classes=("tumour", "stroma")), slide)
    widget.display.class_name.value = "stroma"
    assert widget.overlap.show_map()
    mean = widget.overlap.layer
    legend = viewer.canvas.overlays[LEGEND_OVERLAY_KEY]
    assert viewer.layers[-1] is mean and mean.name == f"{heatmap_layer.name} overlap mean"
    assert legend.visible and legend.text == f"stroma: 0–1\n{mean.name}"
    assert mean.colorbar.visible and not heatmap_layer.colorbar.visible
    assert legend.position == mean.colorbar.position
    mean.visible = False  # the heatmap under it is the top visible map again
    assert legend.text == f"stroma: 0–1\n{heatmap_layer.name}" and heatmap_layer.colorbar.visible
    mean.visible = True
    viewer.layers.remove(mean)
    assert heatmap_layer.name in legend.text and heatmap_layer.colorbar.visible
