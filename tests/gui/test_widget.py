"""The dock widget: docking from the Plugins menu, its parameters and status line, bad
parameters, layer choices, and the units of the layers it adds."""

from __future__ import annotations

import numpy as np
from gui_helpers import random_heatmap, text

from napari_patchheat._qt.slide_layer import SlideLayer


def test_the_plugins_menu_docks_the_widget(viewer, qtbot, pyramid):
    from napari_patchheat._qt.widget import PatchHeatWidget

    viewer.add_image(pyramid(np.zeros((1000, 1200, 3), np.uint8), (2,)), rgb=True,
                     multiscale=True, scale=(0.5, 0.5), metadata={"mpp": (0.5, 0.5)}, name="s")
    _, w = viewer.window.add_plugin_dock_widget("napari-patchheat", "PatchHeat")
    try:
        assert isinstance(w, PatchHeatWidget) and w.viewer is viewer  # not napari's proxy
        assert w.level.choices == (0, 1)
        # height first, as the status line's rows x cols and the API's (y, x) pairs
        assert w.level.native.itemText(0) == "0: 1,000 x 1,200 px (h x w), 0.5 µm/px (20x)"
        assert w.level.native.itemText(1) == "1: 500 x 600 px (h x w), 1 µm/px (10x)"
        w.size.value = w.stride.value = 100
        w.preview.update_now()
        assert w.preview.layer.nshapes == 10 * 12
    finally:
        qtbot.waitUntil(lambda: w.workers.idle, timeout=30_000)

def keras_file_with_card(folder) -> object:
    """A '.keras' file (never loaded here) and its model card: classes, 96 px input."""
    import json

    model = folder / "tumour.keras"
    model.write_bytes(b"not read here: the card is")
    (folder / "tumour.json").write_text(json.dumps(
        {"class_names": ["normal", "tumour"], "input_size": 96}))
    return model


def test_a_keras_file_shows_its_cards_classes_and_input_size(viewer, widget, tmp_path):
    viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    model = keras_file_with_card(tmp_path)
    widget.model.value = "Keras file…"
    assert widget.model_file.visible and "choose a model file" in text(widget.status)
    widget.model_file.value = model
    assert text(widget.model_info) == "normal, tumour"
    assert widget.model_spec() == str(model)
    assert "takes 96 x 96 px patches" in text(widget.status)
    widget.size.value = 96
    assert "takes" not in text(widget.status)
    widget.size.value = 224
    widget.resize.value = True
    assert "takes" not in text(widget.status)


def test_mixed_precision_is_offered_for_keras_files_only(viewer, widget, tmp_path):
    viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    widget.model.value = "Keras file…"
    widget.model_file.value = keras_file_with_card(tmp_path)
    assert widget.mixed_precision.visible and not widget.run_options().mixed_precision
    widget.mixed_precision.value = True
    assert widget.run_options().mixed_precision
    assert widget.run_panel.spec().options.mixed_precision  # what the run's process gets
    assert widget.resize.visible
    widget.model.value = "dab"  # built-ins compute in float32, at any size: the options go away
    assert not widget.mixed_precision.visible and not widget.run_options().mixed_precision
    assert not widget.resize.visible


def test_a_renamed_layer_shows_its_new_name(viewer, widget):
    """napari resets the dock's choices on renames: they reach the scrolled column."""
    layer = viewer.add_image(np.zeros((100, 120, 3), np.uint8), rgb=True, name="before")
    assert widget.image_layer.native.currentText() == "before"
    layer.name = "after"
    assert widget.image_layer.native.currentText() == "after"
    assert widget.image_layer.value is layer


def test_run_options_follow_the_parameters(viewer, widget, tmp_path):
    assert widget.batch_auto.value and not widget.batch_size.enabled  # auto to start with
    viewer.add_image(np.zeros((400, 500, 3), np.uint8), rgb=True, name="slide")
    widget.size.value, widget.stride.value, widget.rate.value = 40, 30, 2
    widget.padding.value, widget.batch_auto.value, widget.batch_size.value = "SAME", False, 7
    widget.tissue_threshold.value = 0.25
    widget.cache_dir = str(tmp_path)
    request = widget.run_request()
    o = request.options
    assert (o.level, o.size, o.stride, o.rate, o.padding) == (0, (40, 40), (30, 30), (2, 2), "SAME")
    assert (o.batch_size, o.tissue_threshold, o.cache_dir) == (7, 0.25, str(tmp_path))
    assert request.grid == widget.grid and request.model == "tissue"
    assert widget.batch_size.enabled
    widget.batch_auto.value = True  # the dock's default: the run chooses (pipeline.py)
    assert widget.run_request().options.batch_size is None and not widget.batch_size.enabled


def test_bad_parameters_are_said_and_do_not_run(viewer, widget, errors):
    viewer.add_image(np.zeros((100, 120, 3), np.uint8), rgb=True, name="slide")
    widget.size.value = 200
    assert "No patch fits" in text(widget.status)
    assert widget.run_panel.run() is False and not widget.run_panel.running
    assert len(errors) == 1 and "No patch fits" in errors[0]
    widget.size.value = widget.stride.value = 20
    assert text(widget.status).startswith("5 x 6 = 30 patches")

def test_every_layer_the_widget_adds_shares_the_slides_units(viewer, widget, svs_path):
    """napari drops the scale bar's µm when layers disagree on units."""
    viewer.open(str(svs_path), plugin="napari-patchheat")
    slide_layer = viewer.layers[0]
    assert [str(u) for u in slide_layer.units] == ["micrometer", "micrometer"]
    widget.size.value = widget.stride.value = 200
    widget.preview.update_now()
    widget.inspector.select(1, 1)
    slide = SlideLayer.from_layer(slide_layer)
    widget.display.show_heatmap(random_heatmap(slide, 0, 200, 200), slide)
    assert len(viewer.layers) == 4  # slide, heatmap, grid preview, selected patch
    for layer in viewer.layers:
        assert tuple(layer.units) == tuple(slide_layer.units), layer.name


def test_the_dock_fits_900_px_and_opens_the_inspector_on_a_patch(viewer, widget, qtbot):
    from napari_patchheat._qt.widget import DISPLAY_SECTION, DOCK_MAX_HEIGHT_PX, INSPECTOR_SECTION

    layer = viewer.add_image(np.full((400, 500, 3), 230, np.uint8), rgb=True, name="slide")
    widget.size.value = widget.stride.value = 40
    body = widget.scroll.widget()
    assert body.sizeHint().height() <= DOCK_MAX_HEIGHT_PX
    inspector = widget.collapsibles[INSPECTOR_SECTION]
    assert not inspector.isExpanded()
    widget.inspector.select(9, 11)  # as a click or Alt+arrow does
    assert inspector.isExpanded()
    viewer.window._qt_window.resize(1200, 700)  # a short window: the dock scrolls to it
    qtbot.waitUntil(lambda: widget.scroll.viewport().height() < body.height())
    widget.inspector.select(0, 0)
    top = inspector.mapTo(body, inspector.rect().topLeft()).y()
    shown = widget.scroll.verticalScrollBar().value()
    assert shown <= top < shown + widget.scroll.viewport().height()
    assert not widget.collapsibles[DISPLAY_SECTION].isExpanded()
    slide = SlideLayer.from_layer(layer)
    widget.display.show_heatmap(random_heatmap(slide, 0, 40, 40), slide)
    assert widget.collapsibles[DISPLAY_SECTION].isExpanded()  # a heatmap: its colours, export


def test_the_dock_skips_glass_by_default_as_the_cli_does(viewer, widget):
    from napari_patchheat.cli import build_parser, run_options
    from napari_patchheat.options import INTERACTIVE_TISSUE_THRESHOLD

    viewer.add_image(np.full((400, 500, 3), 230, np.uint8), rgb=True, name="slide")
    cli = run_options(build_parser().parse_args(["run", "s.svs", "--out", "o"]))
    assert widget.run_options().tissue_threshold == cli.tissue_threshold
    assert cli.tissue_threshold == INTERACTIVE_TISSUE_THRESHOLD > 0
