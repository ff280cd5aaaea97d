"""The viewer's canvas: its camera, the world rectangle it shows, and the outline layers (Shapes
of transparent rectangles) that the grid preview and the patch inspector draw over the slide."""

from __future__ import annotations

from typing import Any

import numpy as np

OUTLINE_BLENDING = "translucent_no_depth"  # outlines stay visible over the slide and heatmaps


def camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas_size(viewer: Any) -> tuple[float, float]:
    """(height, width) of the canvas in screen pixels."""
    canvas = getattr(viewer, "canvas", None)
    size = getattr(canvas, "size", None) if canvas is not None else None
    if size is None:
        size = getattr(viewer, "_canvas_size", (600, 800))
    return float(size[0]), float(size[1])


def view_rect_world(viewer: Any) -> tuple[float, float, float, float]:
    """The world rectangle ``(y0, x0, y1, x1)`` the 2-D canvas shows now."""
    cam = camera(viewer)
    cy, cx = (float(v) for v in cam.center[-2:])
    h, w = canvas_size(viewer)
    hy, hx = h / cam.zoom / 2, w / cam.zoom / 2
    return cy - hy, cx - hx, cy + hy, cx + hx


def screen_px_to_world(viewer: Any, screen_px: float) -> float:
    """World units spanned by ``screen_px`` screen pixels at the current zoom."""
    return screen_px / camera(viewer).zoom


def add_outline_layer(viewer: Any, name: str, color: str, **kwargs: Any) -> Any:
    """A new, empty Shapes layer for rectangle outlines of ``color``; the active layer stays
    active (the user's clicks and keys keep going where they went). ``kwargs`` go to napari
    (e.g. the slide layer's ``units``)."""
    active = viewer.layers.selection.active
    layer = viewer.add_shapes(None, ndim=2, name=name, face_color="transparent",
                              edge_color=color, blending=OUTLINE_BLENDING, **kwargs)
    if active is not None:
        viewer.layers.selection.active = active
    return layer


def add_outlines(layer: Any, rects: np.ndarray, edge_width: float, color: str) -> None:
    """Add rectangles (n, 4, 2 world corners) to an outline layer, ``edge_width`` world units."""
    if len(rects):
        layer.add_rectangles(rects, edge_width=edge_width, edge_color=color,
                             face_color="transparent")


def remove_layer(viewer: Any, layer: Any) -> None:
    """Remove ``layer`` from the viewer if it is still there."""
    if layer is not None and layer in viewer.layers:
        viewer.layers.remove(layer)
