"""Live patch-grid preview: the rectangles of the patches in view, in a napari Shapes layer.

napari's Shapes layer costs about 0.5 ms per rectangle, so the preview never builds the whole
grid: it asks :meth:`PatchGrid.patches_in` (closed form) which patches meet the view, keeps at
most ``PREVIEW_MAX_SHAPES`` of them (a regular subsample, aligned to the grid so it does not
shimmer while panning) and redraws after parameter changes and camera moves, debounced.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

from ..grid import FloatPair, PatchGrid
from .canvas import (
    add_outline_layer,
    add_outlines,
    camera,
    remove_layer,
    screen_px_to_world,
    view_rect_world,
)
from .slide_layer import SlideLayer

PREVIEW_MAX_SHAPES = 300  # rectangles drawn at most (about 0.15 ms each here)
PREVIEW_DEBOUNCE_MS = 60  # redraw this long after the last parameter change or camera move
PREVIEW_EDGE_SCREEN_PX = 1.5  # rectangle edges, in screen pixels at any zoom
PREVIEW_LAYER_NAME = "PatchHeat grid"
PREVIEW_EDGE_COLOR = "cyan"

GridSource = Callable[[], "tuple[PatchGrid, FloatPair, SlideLayer] | None"]


def world_rect_to_level0(slide: SlideLayer, rect: tuple[float, ...]) -> tuple[float, ...]:
    """A world rectangle -> the level-0 pixel rectangle ``[y0, y1) x [x0, x1)`` it overlaps."""
    (ay, ax), (by, bx) = slide.to_level0(np.array([rect[:2], rect[2:]]))
    # napari's pixel p covers [p - 0.5, p + 0.5): shift to pixel-edge coordinates
    return tuple(float(v) + 0.5 for v in (min(ay, by), min(ax, bx), max(ay, by), max(ax, bx)))


@dataclass(frozen=True)
class PreviewSelection:
    """Patches drawn: every ``rows[a]``, ``cols[b]`` pair; ``in_view`` patches meet the view."""

    rows: np.ndarray
    cols: np.ndarray
    step: int
    in_view: int
    cap: int = PREVIEW_MAX_SHAPES

    @property
    def n_shown(self) -> int:
        """Number of rectangles drawn."""
        return len(self.rows) * len(self.cols)

    def indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat (row, col) index arrays of the rectangles, row-major."""
        r, c = np.meshgrid(self.rows, self.cols, indexing="ij")
        return r.ravel(), c.ravel()

    def describe(self) -> str:
        """'grid preview: 96 patches in view', or with a subsample 'grid preview: every 4th row
        and column of the 4,096 patches in view (256 drawn, cap 300)'."""
        if self.in_view == 0:
            return "grid preview: no patch in view"
        if self.step == 1:
            return f"grid preview: {self.in_view:,} patches in view"
        return (f"grid preview: every {_ordinal(self.step)} row and column of the "
                f"{self.in_view:,} patches in view ({self.n_shown:,} drawn, cap {self.cap})")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _aligned(r: range, step: int) -> np.ndarray:
    """Indices of ``r`` that are multiples of ``step`` (the first index when none is)."""
    first = -(-r.start // step) * step
    out = np.arange(first, r.stop, step, dtype=np.int64)
    return out if len(out) or not len(r) else np.array([r.start], np.int64)


def select_patches(grid: PatchGrid, downsample: FloatPair, view_level0: tuple[float, ...],
                   max_shapes: int = PREVIEW_MAX_SHAPES) -> PreviewSelection:
    """The patches of ``grid`` (on a level of ``downsample``) meeting a level-0 px rectangle.

    At most ``max_shapes``: past it, every ``step``-th grid row and column (the same step on
    both axes, indices multiples of it).
    """
    rr, cc = grid.patches_in(*view_level0, downsample=downsample)
    n = len(rr) * len(cc)
    step = 1 if n <= max_shapes else max(1, math.ceil(math.sqrt(n / max_shapes)))
    rows, cols = _aligned(rr, step), _aligned(cc, step)
    while len(rows) * len(cols) > max_shapes:
        step = max(step + 1, math.ceil(step * math.sqrt(len(rows) * len(cols) / max_shapes)))
        rows, cols = _aligned(rr, step), _aligned(cc, step)
    return PreviewSelection(rows, cols, step, n, max_shapes)


class GridPreview:
    """Keeps a Shapes layer showing the patches in view; ``schedule()`` redraws debounced.

    ``source()`` gives the current (grid, downsample, slide) or None (nothing to show).
    ``redrawn`` callbacks run after each redraw (the inspector resizes its highlight there).
    """

    def __init__(self, viewer: Any, source: GridSource, max_shapes: int = PREVIEW_MAX_SHAPES):
        self.viewer = viewer
        self.source = source
        self.max_shapes = max_shapes
        self.enabled = True
        self.layer: Any = None
        self.selection: PreviewSelection | None = None
        self.message = ""
        self.redrawn: list[Callable[[], None]] = []
        self._keys: list[tuple[int, int]] = []  # (row, col) of each rectangle, in layer order
        self._look: Any = None  # what the rectangles were drawn for, besides which patches
        self._new_layer_kwargs: dict[str, Any] = {}  # the slide layer's units, for a new layer
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(PREVIEW_DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_now)
        for emitter in self._emitters():
            emitter.connect(self.schedule)

    def _emitters(self) -> list[Any]:
        """Events after which the view shows other patches: camera moves, canvas resizes."""
        cam = camera(self.viewer)
        out = [cam.events.center, cam.events.zoom]
        canvas = getattr(self.viewer, "canvas", None)
        if canvas is not None and hasattr(getattr(canvas, "events", None), "size"):
            out.append(canvas.events.size)
        return out

    def schedule(self, *_: Any) -> None:
        """Redraw once no change has come for PREVIEW_DEBOUNCE_MS."""
        self._timer.start()

    @property
    def pending(self) -> bool:
        """True while a redraw waits for its debounce delay."""
        return self._timer.isActive()

    def update_now(self) -> None:
        """Redraw now: rectangles of the patches in view (capped), or none."""
        self._timer.stop()
        state = self.source() if self.enabled else None
        if state is None or self.viewer.dims.ndisplay != 2:
            self.selection, self.message = None, ""
            self._draw([], lambda keys: np.zeros((0, 4, 2)), None)
        else:
            grid, downsample, slide = state
            view = world_rect_to_level0(slide, view_rect_world(self.viewer))
            self.selection = select_patches(grid, downsample, view, self.max_shapes)
            self.message = self.selection.describe()
            rows, cols = self.selection.indices()

            def rects(keys: list[tuple[int, int]]) -> np.ndarray:
                r, c = np.array(keys, np.int64).reshape(-1, 2).T
                return slide.box_to_world(grid.boxes(r, c, downsample))

            look = (grid, downsample, slide.world_per_px, slide.world_offset, self.edge_width())
            self._new_layer_kwargs = slide.unit_kwargs()
            self._draw(list(zip(rows.tolist(), cols.tolist())), rects, look)
            if self.layer is not None:
                slide.match_units(self.layer)
        for callback in self.redrawn:
            callback()

    def edge_width(self) -> float:
        """World units for PREVIEW_EDGE_SCREEN_PX screen pixels at the current zoom."""
        return screen_px_to_world(self.viewer, PREVIEW_EDGE_SCREEN_PX)

    def _draw(self, keys: list[tuple[int, int]],
              rects: Callable[[list[tuple[int, int]]], np.ndarray], look: Any) -> None:
        """Show the patches ``keys`` (row, col). When only the view moved (same grid, placement
        and zoom: ``look``), only the patches that left are removed and those that came in
        added; napari's cost is per rectangle, so a pan costs a fraction of a redraw."""
        layer = self.layer
        if layer is None or layer not in self.viewer.layers:
            if not keys:
                return
            layer = self.layer = add_outline_layer(self.viewer, PREVIEW_LAYER_NAME,
                                                   PREVIEW_EDGE_COLOR, **self._new_layer_kwargs)
            self._keys, self._look = [], None
        if look is not None and look == self._look and layer.nshapes == len(self._keys):
            wanted, had = set(keys), set(self._keys)
            gone = [i for i, k in enumerate(self._keys) if k not in wanted]
            new = [k for k in keys if k not in had]
            if len(gone) + len(new) < len(keys):
                if gone:
                    layer.selected_data = set(gone)
                    layer.remove_selected()
                self._add(layer, rects(new))
                self._keys = [k for k in self._keys if k in wanted] + new
                return
        if layer.nshapes:
            layer.data = []
        self._add(layer, rects(keys))
        self._keys, self._look = list(keys), look

    def _add(self, layer: Any, rects: np.ndarray) -> None:
        add_outlines(layer, rects, self.edge_width(), PREVIEW_EDGE_COLOR)

    def remove(self) -> None:
        """Stop redrawing and remove the layer."""
        self._timer.stop()
        for emitter in self._emitters():
            emitter.disconnect(self.schedule)
        remove_layer(self.viewer, self.layer)
        self.layer = None
