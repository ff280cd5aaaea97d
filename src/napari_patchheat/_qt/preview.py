"""Live patch-grid preview: the true tiling of the patches in view, at any zoom.

Up to ``PREVIEW_MAX_SHAPES`` patches in view, each patch's rectangle in a napari Shapes layer
(about 0.5 ms a rectangle, so never the whole grid: :meth:`PatchGrid.patches_in` says in closed
form which patches meet the view). Past that, every patch boundary drawn into an image at
screen resolution (:mod:`~napari_patchheat.grid_picture`). Where patches overlap, single
patches are shaded and outlined in orange, so each one's extent shows across its neighbours.
Redrawn after parameter changes and camera moves, debounced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

from ..grid import FloatPair, PatchGrid
from ..grid_picture import (
    EXAMPLE_ALPHA,
    EXAMPLE_COLOR,
    LINE_COLOR,
    GridPicture,
    example_indices,
    example_steps,
    inside_table,
    region_mask,
    render,
    rgb,
    view_pixels,
)
from .canvas import (
    add_outline_layer,
    add_outlines,
    add_overlay_layer,
    camera,
    canvas_size,
    one_update,
    remove_layer,
    screen_px_to_world,
    view_rect_world,
)
from .slide_layer import SlideLayer

PREVIEW_MAX_SHAPES = 160  # rectangles at most (napari: ~0.5 ms each); past them, the lines
PREVIEW_DEBOUNCE_MS = 60  # redraw this long after the last parameter change or camera move
PREVIEW_EDGE_SCREEN_PX = 1.5  # rectangle edges, in screen pixels at any zoom
PREVIEW_MARGIN_FRACTION = 0.25  # the lines image reaches this share of the view past each side
PREVIEW_LAYER_NAME = "grid"  # then " · <the slide layer's name>"
PREVIEW_LINES_LAYER_NAME = "grid lines"

GridSource = Callable[[], "tuple[PatchGrid, FloatPair, SlideLayer] | None"]


def world_rect_to_level0(slide: SlideLayer, rect: tuple[float, ...]
                         ) -> tuple[float, float, float, float]:
    """A world rectangle -> the level-0 pixel rectangle ``[y0, y1) x [x0, x1)`` it overlaps."""
    (ay, ax), (by, bx) = slide.to_level0(np.array([rect[:2], rect[2:]]))
    # napari's pixel p covers [p - 0.5, p + 0.5): shift to pixel-edge coordinates
    return (float(min(ay, by)) + 0.5, float(min(ax, bx)) + 0.5, float(max(ay, by)) + 0.5,
            float(max(ax, bx)) + 0.5)


def grid_extent_level0(grid: PatchGrid, downsample: FloatPair) -> tuple[float, ...]:
    """``(y0, x0, y1, x1)``: level-0 pixel-edge coordinates of the box holding every patch."""
    first, last = grid.boxes([0, grid.rows - 1], [0, grid.cols - 1], downsample)
    return float(first[0]), float(first[1]), float(last[2]), float(last[3])


def _grid_key(state: Any) -> tuple[Any, ...] | None:
    """What the preview draws of a (grid, downsample, slide) source: the grid, its downsample,
    the slide layer and its place; None for none."""
    if state is None:
        return None
    grid, downsample, slide = state
    return grid, downsample, id(slide.layer), slide.world_offset, slide.world_per_px


def _pair_text(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]} x {pair[1]}"


@dataclass(frozen=True)
class PreviewPicture:
    """What the preview shows of ``grid``: ``in_view`` patches meet the view, drawn as
    ``n_shapes`` rectangles (every one of them) or, past the cap, as ``lines``."""

    grid: PatchGrid
    in_view: int
    n_shapes: int = 0
    lines: GridPicture | None = None

    @property
    def examples_shown(self) -> bool:
        """True when single patches are shown (patches overlap and are large enough)."""
        if example_steps(self.grid) is None:
            return False
        return self.lines is None or self.lines.examples_shown

    def describe(self) -> str:
        """'grid preview: 96 patches in view', '..., drawn as their boundary lines' past the
        cap, with what overlap and a grid finer than the screen look like."""
        if self.in_view == 0:
            return "grid preview: no patch in view"
        text = f"grid preview: {self.in_view:,} patches in view"
        if self.lines is not None:
            text += (", their lines closer than the screen shows, as a tint: zoom in to see each"
                     if self.lines.dense else ", drawn as their boundary lines")
        if example_steps(self.grid) is not None:
            g = self.grid
            text += (f"; patches overlap (stride {_pair_text(g.stride)} < effective size "
                     f"{_pair_text(g.effective_size)} px): ")
            text += ("single patches outlined in orange" if self.examples_shown
                     else "zoom in to see single patches")
        return text


class GridPreview:
    """Keeps the preview layers showing the patches in view; ``schedule()`` redraws debounced.

    ``source()`` gives the current (grid, downsample, slide) or None (nothing to show).
    ``redrawn`` callbacks run after each redraw (the inspector resizes its highlight there).
    ``layer`` holds the rectangles, ``lines_layer`` (made when first needed) the lines image.
    """

    def __init__(self, viewer: Any, source: GridSource, max_shapes: int = PREVIEW_MAX_SHAPES):
        self.viewer = viewer
        self.source = source
        self.max_shapes = max_shapes
        self._enabled = True
        self._aside: tuple[Any, Any] | None = None  # what it stepped aside from (step_aside)
        self.inside: np.ndarray | None = None  # bool (rows, cols): only these are drawn
        self._table: tuple[np.ndarray, np.ndarray] | None = None  # inside, its inside_table
        self.layer: Any = None
        self.lines_layer: Any = None
        self.picture: PreviewPicture | None = None
        self.message = ""
        self.redrawn: list[Callable[[], None]] = []
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
    def enabled(self) -> bool:
        """Whether the grid is shown ("show the patch grid"); setting it ends a step aside."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled, self._aside = bool(value), None

    @property
    def aside(self) -> bool:
        """True while stepped aside (see :meth:`step_aside`)."""
        return self._aside is not None

    def step_aside(self) -> None:
        """Hide (a run finished: its heatmap shows without the grid's mesh) until the grid, the
        slide or the region changes, or the grid is turned on again."""
        self._aside = (_grid_key(self.source() if self._enabled else None), self.inside)
        self.update_now()

    def _still_aside(self, state: Any) -> bool:
        """True while the grid, the slide and the region are those it stepped aside from."""
        assert self._aside is not None
        key, inside = self._aside
        same_inside = inside is self.inside or (
            inside is not None and self.inside is not None and np.array_equal(inside, self.inside))
        return same_inside and key == _grid_key(state)

    @property
    def pending(self) -> bool:
        """True while a redraw waits for its debounce delay."""
        return self._timer.isActive()

    def update_now(self) -> None:
        """Redraw now: the rectangles of the patches in view, or past the cap their lines."""
        self._timer.stop()
        state = self.source() if self._enabled else None
        if self._aside is not None and not self._still_aside(state):
            self._aside = None  # another grid, slide or region: back
        if self._aside is not None:
            state = None
        self.picture = None
        if state is not None and self.viewer.dims.ndisplay == 2:
            grid, downsample, slide = state
            self._new_layer_kwargs = slide.unit_kwargs()
            view = world_rect_to_level0(slide, view_rect_world(self.viewer))
            rr, cc = grid.patches_in(*view, downsample=downsample)
            n = len(rr) * len(cc)
            if n <= self.max_shapes:
                self._show_rectangles(grid, downsample, slide, rr, cc)
                self.picture = PreviewPicture(grid, n, n_shapes=n)
            else:
                self._draw()
                self.picture = PreviewPicture(grid, n, lines=self._show_lines(
                    grid, downsample, slide, view))
            for layer, name in ((self.layer, PREVIEW_LAYER_NAME),
                                (self.lines_layer, PREVIEW_LINES_LAYER_NAME)):
                if layer is not None:
                    slide.match_units(layer)
                    self._name(layer, name, slide)
        if self.picture is None:
            self._draw()
        if self.picture is None or self.picture.lines is None:
            self._hide_lines()
        self.message = "" if self.picture is None else self.picture.describe()
        for callback in self.redrawn:
            callback()

    @staticmethod
    def _name(layer: Any, name: str, slide: SlideLayer) -> None:
        """Name ``layer`` after the slide whose grid it shows: 'grid · CMU-1.svs'."""
        full = f"{name} · {slide.name}"
        if layer.name != full:
            layer.name = full

    def edge_width(self) -> float:
        """World units for PREVIEW_EDGE_SCREEN_PX screen pixels at the current zoom."""
        return screen_px_to_world(self.viewer, PREVIEW_EDGE_SCREEN_PX)

    # --- the rectangles ---------------------------------------------------------------------
    def _show_rectangles(self, grid: PatchGrid, downsample: FloatPair, slide: SlideLayer,
                         rr: range, cc: range) -> None:
        """Every patch of rows ``rr`` x columns ``cc`` (inside the region, if any) as a
        rectangle; where patches overlap, the single patches of :func:`example_indices`
        shaded and outlined in EXAMPLE_COLOR."""
        rows, cols = np.meshgrid(np.arange(rr.start, rr.stop), np.arange(cc.start, cc.stop),
                                 indexing="ij")
        r, c = rows.ravel(), cols.ravel()
        if self.inside is not None:  # a region of interest: only its patches
            keep = self.inside[r, c]
            r, c = r[keep], c[keep]
        edges = np.tile(np.r_[rgb(LINE_COLOR), 1.0], (len(r), 1))
        faces = np.zeros((len(r), 4))
        steps = example_steps(grid)
        if steps is not None:
            single = (np.isin(r, example_indices(rr, steps[0]))
                      & np.isin(c, example_indices(cc, steps[1])))
            example = rgb(EXAMPLE_COLOR)
            edges[single], faces[single] = np.r_[example, 1.0], np.r_[example, EXAMPLE_ALPHA]
        self._draw(slide.box_to_world(grid.boxes(r, c, downsample)), edges, faces)

    def _draw(self, rects: np.ndarray | None = None, edges: np.ndarray | None = None,
              faces: np.ndarray | None = None) -> None:
        """Show the rectangles ``rects`` (n, 4, 2 world corners) with their edge and face
        colours (n, 4 RGBA), all replaced in one napari update; none: clear. (Removing those
        that left a view and adding those that came in was slower: napari's Shapes remove each
        shape with a copy of its arrays.)"""
        layer = self.layer
        empty = rects is None or not len(rects)
        if layer is None or layer not in self.viewer.layers:
            if empty:
                return
            layer = self.layer = add_outline_layer(self.viewer, PREVIEW_LAYER_NAME, LINE_COLOR,
                                                   **self._new_layer_kwargs)
        if empty and not layer.nshapes:
            return
        with one_update(layer):
            if layer.nshapes:
                layer.data = []
            if rects is not None and len(rects):
                add_outlines(layer, rects, self.edge_width(), edges, faces)

    # --- the lines image --------------------------------------------------------------------
    def _show_lines(self, grid: PatchGrid, downsample: FloatPair, slide: SlideLayer,
                    view: tuple[float, ...]) -> GridPicture | None:
        """Draw every patch boundary over the view (and PREVIEW_MARGIN_FRACTION of it past
        each side, so a pan shows lines before the redraw) at screen resolution."""
        world_per_screen_px = screen_px_to_world(self.viewer, 1.0)
        wy, wx = slide.world_per_px
        step = (world_per_screen_px / wy, world_per_screen_px / wx)
        h, w = canvas_size(self.viewer)
        margin = (round(h * PREVIEW_MARGIN_FRACTION), round(w * PREVIEW_MARGIN_FRACTION))
        pixels = view_pixels(view, step, grid_extent_level0(grid, downsample), margin)
        if pixels is None:
            return None
        picture = render(grid, downsample, *pixels)
        if self.inside is not None:  # a region of interest: only its patches' lines
            if self._table is None or self._table[0] is not self.inside:
                self._table = (self.inside, inside_table(self.inside))
            picture.rgba[~region_mask(grid, downsample, *pixels, self._table[1])] = 0
        layer = self.lines_layer
        if layer is None or layer not in self.viewer.layers:
            layer = self.lines_layer = add_overlay_layer(
                self.viewer, PREVIEW_LINES_LAYER_NAME, **self._new_layer_kwargs)
        # image pixel k is centred on k (napari): the first screen pixel's centre, in world
        first = [p.start + p.step / 2 - 0.5 for p in pixels]
        scale = np.array([p.step * w for p, w in zip(pixels, slide.world_per_px)])
        translate = slide.to_world(np.array(first))
        with one_update(layer):
            layer.data = picture.rgba
            if not np.array_equal(layer.scale[-2:], scale):
                layer.scale = scale
            if not np.array_equal(layer.translate[-2:], translate):
                layer.translate = translate
        if not layer.visible:
            layer.visible = True
        return picture

    def _hide_lines(self) -> None:
        layer = self.lines_layer
        if layer is not None and layer in self.viewer.layers and layer.visible:
            layer.visible = False

    def remove(self) -> None:
        """Stop redrawing and remove the layers."""
        self._timer.stop()
        for emitter in self._emitters():
            emitter.disconnect(self.schedule)
        remove_layer(self.viewer, self.layer)
        remove_layer(self.viewer, self.lines_layer)
        self.layer = self.lines_layer = None
