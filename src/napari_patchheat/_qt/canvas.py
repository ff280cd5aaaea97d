"""The viewer's canvas: its camera, the world rectangle it shows, and the outline layers (Shapes
of transparent rectangles, and the grid preview's image of lines) that the grid preview and the
patch inspector draw over the slide.

Outline layers are not editable and stay on top of every other layer: after layers are added
or moved (another slide opened, a heatmap shown, a drag in the layer list) they are moved back
on top once the event is over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

OUTLINE_BLENDING = "translucent_no_depth"  # outlines stay visible over the slide and heatmaps
OUTLINE_META_KEY = "patchheat_outline"  # layer metadata of the outline layers made here


def camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas_size(viewer: Any) -> tuple[float, float]:
    """(height, width) of the canvas in screen pixels."""
    canvas = getattr(viewer, "canvas", None)
    size: Any = getattr(canvas, "size", None) if canvas is not None else None
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


def is_outline_layer(layer: Any) -> bool:
    """True for a layer made by :func:`add_outline_layer`."""
    return bool(getattr(layer, "metadata", {}).get(OUTLINE_META_KEY))


def add_outline_layer(viewer: Any, name: str, color: str, **kwargs: Any) -> Any:
    """A new, empty Shapes layer for rectangle outlines of ``color``, on top of the others and
    not editable; the active layer stays active (the user's clicks and keys keep going where
    they went). ``kwargs`` go to napari (e.g. the slide layer's ``units``)."""
    return _as_outline(viewer, lambda: viewer.add_shapes(
        None, ndim=2, name=name, face_color="transparent", edge_color=color,
        blending=OUTLINE_BLENDING, metadata={OUTLINE_META_KEY: True}, **kwargs))


def add_overlay_layer(viewer: Any, name: str, **kwargs: Any) -> Any:
    """A new Image layer for an RGBA picture (h, w, 4 uint8; the grid preview's lines past its
    rectangles), kept on top and not editable like the outline layers, under those already
    there; the active layer stays active. ``kwargs`` go to napari."""
    layer = _as_outline(viewer, lambda: viewer.add_image(
        np.zeros((1, 1, 4), np.uint8), rgb=True, name=name, blending=OUTLINE_BLENDING,
        metadata={OUTLINE_META_KEY: True}, **kwargs))
    layers = viewer.layers
    layers.move(layers.index(layer), min(layers.index(o) for o in layers if is_outline_layer(o)))
    return layer


def _as_outline(viewer: Any, add: Callable[[], Any]) -> Any:
    """``add()`` a layer as an outline layer: the active layer stays active, the new one is not
    editable and kept on top."""
    active = viewer.layers.selection.active
    layer = add()
    if active is not None:
        viewer.layers.selection.active = active
    _keep_read_only(layer)
    _keep_on_top(viewer, layer)
    return layer


def _keep_read_only(layer: Any) -> None:
    """Make ``layer`` not editable, also after napari resets it (Shapes do on ``data = ...``)."""
    def lock(*_: Any) -> None:
        if layer.editable:
            layer.editable = False

    layer.events.editable.connect(lock)
    lock()


def _keep_on_top(viewer: Any, layer: Any) -> None:
    """Move the outline layers back on top after any layer is inserted or moved, while
    ``layer`` is in the viewer. The move waits for the event to end (the layer list's other
    listeners, Qt's among them, see each change in order)."""
    pending = [False]

    def raise_now() -> None:
        pending[0] = False
        raise_outlines(viewer)

    def schedule(*_: Any) -> None:
        if not pending[0]:
            pending[0] = True
            QTimer.singleShot(0, raise_now)

    def forget(event: Any) -> None:
        if event.value is layer:
            viewer.layers.events.inserted.disconnect(schedule)
            viewer.layers.events.moved.disconnect(schedule)
            viewer.layers.events.removed.disconnect(forget)

    viewer.layers.events.inserted.connect(schedule)
    viewer.layers.events.moved.connect(schedule)
    viewer.layers.events.removed.connect(forget)


def raise_outlines(viewer: Any) -> None:
    """Move the outline layers to the top of the layer list (keeping their order)."""
    layers = viewer.layers
    outlines = [layer for layer in layers if is_outline_layer(layer)]
    top = list(layers)[len(layers) - len(outlines):]
    if all(a is b for a, b in zip(top, outlines)):
        return
    for layer in outlines:
        layers.move(layers.index(layer), len(layers))


def add_outlines(layer: Any, rects: np.ndarray, edge_width: float, color: Any,
                 face_color: Any = "transparent") -> None:
    """Add rectangles (n, 4, 2 world corners) to an outline layer, ``edge_width`` world units;
    ``face_color`` one colour or one per rectangle (RGBA rows)."""
    if len(rects):
        layer.add_rectangles(rects, edge_width=edge_width, edge_color=color,
                             face_color=face_color)


@contextmanager
def one_update(layer: Any) -> Iterator[Any]:
    """Change ``layer`` in several steps as one update: its events and refreshes are held back,
    then it refreshes once. Each layer event costs napari ~5 ms in its layer list (a
    ``dataChanged`` of the row, thumbnail included); a Shapes redraw emitted ~19 of them.
    ``editable`` stays as it was (napari resets it on ``data = ...``)."""
    editable = layer.editable
    with ExitStack() as stack:
        stack.enter_context(layer.events.blocker_all())
        block = getattr(layer, "_block_refresh", None)  # napari >= 0.5 (private)
        if block is not None:
            stack.enter_context(block())
        yield layer
        if layer.editable != editable:
            layer.editable = editable
    layer.refresh()


def remove_layer(viewer: Any, layer: Any) -> None:
    """Remove ``layer`` from the viewer if it is still there."""
    if layer is not None and layer in viewer.layers:
        viewer.layers.remove(layer)
