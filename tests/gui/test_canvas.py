"""The canvas helpers: the world rectangle on screen and outline layers over the slide."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchheat._qt.canvas import (
    add_outline_layer,
    add_outlines,
    camera,
    screen_px_to_world,
    view_rect_world,
)


def test_the_view_rectangle_is_the_canvas_at_the_cameras_zoom(viewer):
    viewer.add_image(np.zeros((1000, 1000), np.uint8))
    cam = camera(viewer)
    cam.center, cam.zoom = (500.0, 400.0), 2.0
    canvas = viewer.window._qt_viewer.canvas.native
    y0, x0, y1, x1 = view_rect_world(viewer)
    assert (y1 - y0, x1 - x0) == pytest.approx((canvas.height() / 2, canvas.width() / 2), abs=1)
    assert ((y0 + y1) / 2, (x0 + x1) / 2) == pytest.approx((500.0, 400.0))
    assert screen_px_to_world(viewer, 3.0) == pytest.approx(1.5)


def test_an_outline_layer_leaves_the_active_layer_active(viewer):
    image = viewer.add_image(np.zeros((100, 100), np.uint8))
    layer = add_outline_layer(viewer, "outlines", "cyan")
    assert viewer.layers.selection.active is image and layer.nshapes == 0
    rect = np.array([[[0, 0], [0, 10], [20, 10], [20, 0]]], float)
    add_outlines(layer, rect, 2.0, "cyan")
    add_outlines(layer, np.zeros((0, 4, 2)), 2.0, "cyan")  # nothing to add: nothing added
    assert layer.nshapes == 1 and layer.edge_width == [2.0]
    np.testing.assert_allclose(layer.data[0], rect[0])
    assert layer.blending == "translucent_no_depth"


def test_outline_layers_stay_on_top_when_layers_are_added_or_moved(viewer, qtbot):
    image = viewer.add_image(np.zeros((100, 100), np.uint8), name="slide")
    first = add_outline_layer(viewer, "first", "cyan")
    second = add_outline_layer(viewer, "second", "yellow")
    other = viewer.add_image(np.zeros((50, 50), np.uint8), name="another slide")  # on top now
    assert viewer.layers[-1] is other  # napari adds it on top; the outlines follow it later
    qtbot.waitUntil(lambda: list(viewer.layers)[-2:] == [first, second], timeout=5_000)
    assert list(viewer.layers)[:2] == [image, other]
    viewer.layers.move(viewer.layers.index(second), 0)  # dragged to the bottom of the list
    qtbot.waitUntil(lambda: list(viewer.layers) == [image, other, second, first],  # new order
                    timeout=5_000)
    viewer.layers.remove(first)
    third = viewer.add_image(np.zeros((50, 50), np.uint8), name="third")
    qtbot.waitUntil(lambda: list(viewer.layers) == [image, other, third, second], timeout=5_000)


def test_outline_layers_are_not_editable(viewer):
    viewer.add_image(np.zeros((100, 100), np.uint8))
    layer = add_outline_layer(viewer, "outlines", "cyan")
    assert layer.editable is False
    for mode in ("add_rectangle", "select", "direct", "vertex_insert"):
        layer.mode = mode
        assert layer.mode == "pan_zoom"  # napari refuses edit modes on a layer not editable
    rect = np.array([[[0, 0], [0, 10], [20, 10], [20, 0]]], float)
    add_outlines(layer, rect, 2.0, "cyan")
    layer.data = []  # napari's Shapes make themselves editable again on new data
    add_outlines(layer, rect, 2.0, "cyan")
    assert layer.editable is False and layer.nshapes == 1
    layer.mode = "add_rectangle"
    assert layer.mode == "pan_zoom"
