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
