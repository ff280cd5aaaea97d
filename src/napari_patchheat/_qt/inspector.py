"""Patch inspector: pick a patch (click or step) and see it exactly as the model receives it.

The patch is :meth:`PatchGrid.read_patch` of the level: every ``rate``-th pixel of its
effective extent, zeros where SAME padding reaches outside the image (NumPy; the tests hold
it to ``tf.image.extract_patches``). Shown in the dock, with its grid index, level-0 box and,
once computed, its predictions; when the dock's Model input asks for stain normalisation, the
patch normalised as the model gets it beside it (``stain_preview.py``: the run's fit, in NumPy).
A Shapes layer outlines it on the slide. A click on a heatmap inspects that heatmap's own grid,
level and values (its patch under the click, over its slide) until a click lands on no heatmap;
elsewhere the dock's grid is inspected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui.widgets import Container, PushButton, SpinBox
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QHBoxLayout, QLabel, QWidget

from ..grid import FloatPair, PatchGrid
from ..heatmap import HEATMAP_META_KEY
from ..models.stain_norm import StainFit, normalise_numpy
from .canvas import (
    add_outline_layer,
    add_outlines,
    camera,
    one_update,
    remove_layer,
    screen_px_to_world,
)
from .hover import box_text, heatmap_cell_at, values_text
from .slide_layer import SlideLayer
from .stain_preview import StainPreview
from .widgets import TextLabel

INSPECTOR_DISPLAY_PX = 160  # the patch is drawn at least this large (whole-pixel zoom)
INSPECTOR_MAX_DISPLAY_PX = 256  # ...and at most this large (larger patches: every k-th pixel)
PAIR_DISPLAY_PX = (100, 200)  # as read and normalised side by side: each at least, at most
HIGHLIGHT_LAYER_NAME = "PatchHeat selected patch"
HIGHLIGHT_EDGE_COLOR = "yellow"
HIGHLIGHT_EDGE_SCREEN_PX = 3.0
CLICK_MAX_MOVE_SCREEN_PX = 4.0  # a press and release further apart than this is a pan, not a click
STEP_KEYS = {"Alt-Up": (-1, 0), "Alt-Down": (1, 0), "Alt-Left": (0, -1), "Alt-Right": (0, 1)}

InspectSource = Callable[[], "tuple[PatchGrid, FloatPair, SlideLayer, int] | None"]
ValuesSource = Callable[[PatchGrid, int, int, int], "tuple[tuple[str, ...], np.ndarray] | None"]
InspectState = tuple[PatchGrid, FloatPair, SlideLayer, int]


def display_rgb(patch: np.ndarray) -> np.ndarray:
    """A patch as uint8 RGB for the screen: RGB uint8 as it is, anything else min-max grey."""
    if patch.ndim == 3 and patch.shape[2] >= 3 and patch.dtype == np.uint8:
        return np.ascontiguousarray(patch[..., :3])
    grey = patch.astype(np.float64)
    grey = grey.mean(axis=2) if grey.ndim == 3 else grey
    lo, hi = float(grey.min()), float(grey.max())
    grey = (grey - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(grey)
    return np.repeat(grey.round().astype(np.uint8)[..., None], 3, axis=2)


def zoom_for_display(image: np.ndarray, least: int = INSPECTOR_DISPLAY_PX,
                     most: int = INSPECTOR_MAX_DISPLAY_PX) -> np.ndarray:
    """Nearest-neighbour zoom by a whole factor (or every k-th pixel) to a readable size:
    at least ``least`` pixels on the long side where a whole factor allows, at most ``most``."""
    side = max(image.shape[:2])
    if side > most:
        k = -(-side // most)
        return np.ascontiguousarray(image[::k, ::k])
    f = max(1, least // side)
    return np.ascontiguousarray(np.repeat(np.repeat(image, f, axis=0), f, axis=1))


def patch_at(grid: PatchGrid, downsample: FloatPair,
             yx_level0: np.ndarray) -> tuple[int, int] | None:
    """The patch under a level-0 point (napari pixel coordinates): of the patches whose extent
    holds that pixel, the one whose centre is nearest; None outside every patch."""
    qy, qx = (float(v) for v in np.floor(np.asarray(yx_level0, float) + 0.5))
    rr, cc = grid.patches_in(qy, qx, qy + 1, qx + 1, downsample)
    if not len(rr) or not len(cc):
        return None
    r, c = np.meshgrid(np.arange(rr.start, rr.stop), np.arange(cc.start, cc.stop), indexing="ij")
    d = ((grid.centers(r, c, downsample) - np.asarray(yx_level0, float)) ** 2).sum(-1)
    k = np.unravel_index(np.argmin(d), d.shape)
    return int(r[k]), int(c[k])


class PatchInspector(Container):
    """Row/column of the patch shown, step buttons, the patch, and what is known about it.

    ``source()`` gives the dock's (grid, downsample, slide, level) or None; ``values(grid,
    level, row, col)`` gives (class names, values) of a computed patch or None; ``slide_of
    (heatmap layer)`` gives the slide layer a heatmap lies over, or None. ``heatmap_layer`` is
    the heatmap whose grid is inspected (after a click on it), None for the dock's grid.
    ``stain`` (optional) previews the dock's stain normalisation: ``on_screen_normalised`` holds
    the normalised pixels shown (None when only the patch as read is shown).
    """

    def __init__(self, viewer: Any, source: InspectSource, values: ValuesSource,
                 slide_of: Callable[[Any], Any], stain: StainPreview | None = None):
        self.viewer = viewer
        self.source = source
        self.values = values
        self.slide_of = slide_of
        self.stain = stain
        self.heatmap_layer: Any = None
        self.patch_index: tuple[int, int] | None = None
        self.patch: np.ndarray | None = None
        self.highlight: Any = None
        self._grid: PatchGrid | None = None  # the grid the outlined patch is of
        self.on_screen = np.zeros((1, 1, 3), np.uint8)  # the pixels shown (zoomed patch)
        self.on_screen_normalised: np.ndarray | None = None
        self.row = SpinBox(label="row", min=0, max=0)
        self.col = SpinBox(label="col", min=0, max=0)
        self.up, self.down = PushButton(text="▲"), PushButton(text="▼")
        self.left, self.right = PushButton(text="◀"), PushButton(text="▶")
        self.image, self.normalised_image = QLabel(), QLabel()
        self.normalised_image.setVisible(False)
        self.stain_line = TextLabel(visible=False)  # "as read | normalised", or why not
        self.info = TextLabel(value="Click a patch on the slide (or set row and col).")
        index = Container(widgets=[self.row, self.col], layout="horizontal", labels=True)
        steps = Container(widgets=[self.left, self.up, self.down, self.right],
                          layout="horizontal", labels=False)
        super().__init__(widgets=[index, steps, self.stain_line, self.info], labels=False)
        images = QWidget()
        row = QHBoxLayout(images)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.image)
        row.addWidget(self.normalised_image)
        row.addStretch()
        self.native.layout().insertWidget(2, images)
        self.row.changed.connect(self._on_spin)
        self.col.changed.connect(self._on_spin)
        for button, (dr, dc) in ((self.up, (-1, 0)), (self.down, (1, 0)),
                                 (self.left, (0, -1)), (self.right, (0, 1))):
            button.changed.connect(lambda *_, dr=dr, dc=dc: self.step(dr, dc))
        self._spinning = False
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        viewer.layers.events.removed.connect(self._on_removed)
        for key, (dr, dc) in STEP_KEYS.items():
            viewer.bind_key(key, lambda _v, dr=dr, dc=dc: self.step(dr, dc), overwrite=True)

    # --- choosing a patch -----------------------------------------------------------------------
    def state(self) -> InspectState | None:
        """(grid, downsample, slide, level) inspected: the heatmap's (``heatmap_layer``, while it
        is in the viewer over an open slide), else the dock's; None without a grid."""
        layer = self.heatmap_layer
        slide_layer = self.slide_of(layer) \
            if layer is not None and layer in self.viewer.layers else None
        if slide_layer is None:
            self.heatmap_layer = None
            return self.source()
        h = layer.metadata[HEATMAP_META_KEY]
        return h.grid, h.downsample, SlideLayer.from_layer(slide_layer), h.level

    def select(self, row: int, col: int) -> bool:
        """Show patch (row, col) of the current grid; False (and nothing shown) if there is none."""
        state = self.state()
        if state is None or not (0 <= row < state[0].rows and 0 <= col < state[0].cols):
            return False
        grid, downsample, slide, level = state
        self.patch_index, self._grid = (row, col), grid
        self.patch = grid.read_patch(slide.levels[level], row, col)
        self._set_spins(row, col, grid)
        self._draw(slide)
        self._outline(grid, downsample, slide, row, col)
        self.update_values()
        return True

    def step(self, drow: int, dcol: int) -> bool:
        """Move the selection by (drow, dcol) patches; patch (0, 0) when none is shown."""
        if self.patch_index is None:
            return self.select(0, 0)
        return self.select(self.patch_index[0] + drow, self.patch_index[1] + dcol)

    def select_at(self, yx_world: Any) -> bool:
        """Select the patch under a world point: of the heatmap seen there (its cell, see
        :func:`~napari_patchheat._qt.hover.heatmap_cell_at`) when it lies over an open slide,
        else of the dock's grid (see :func:`patch_at`)."""
        cell = heatmap_cell_at(self.viewer, yx_world)
        if cell is not None and self.slide_of(cell.layer) is not None:
            self.heatmap_layer = cell.layer
            return self.select(cell.row, cell.col)
        self.heatmap_layer = None
        state = self.source()
        if state is None:
            return False
        grid, downsample, slide, _ = state
        hit = patch_at(grid, downsample, slide.to_level0(np.asarray(yx_world, float)[-2:]))
        return hit is not None and self.select(*hit)

    def refresh(self) -> None:
        """The grid changed: show the same index on the new grid, or clear."""
        state = self.state()
        if state is not None:
            self.row.max, self.col.max = state[0].rows - 1, state[0].cols - 1
        if self.patch_index is None or not self.select(*self.patch_index):
            self.clear()

    def clear(self) -> None:
        """Show nothing."""
        self.patch_index, self.patch = None, None
        self._show(np.zeros((1, 1, 3), np.uint8))
        self._show_normalised(None, "")
        self.info.value = "Click a patch on the slide (or set row and col)."
        if self.highlight is not None and self.highlight in self.viewer.layers \
                and self.highlight.nshapes:
            self.highlight.data = []

    # --- what is shown --------------------------------------------------------------------------
    def update_values(self) -> None:
        """Rewrite the text: index, level-0 box and the predictions known so far; the grid
        changed (a heatmap replaced in its layer): :meth:`refresh` instead."""
        state = self.state()
        if state is None or self.patch_index is None:
            return
        if state[0] != self._grid:
            return self.refresh()
        grid, downsample, slide, level = state
        row, col = self.patch_index
        box = grid.box(row, col, downsample)
        y0, x0, y1, x1 = box
        ky, kx = grid.size
        lines = [] if self.heatmap_layer is None else [f"heatmap {self.heatmap_layer.name}:"]
        lines += [
            f"patch (row {row}, col {col}) of {grid.rows:,} x {grid.cols:,}, level {level}: "
            f"{ky} x {kx} samples, rate {grid.rate[0]}",
            f"{box_text(box)} (end excluded)",
        ]
        if slide.mpp is not None:
            lines.append(f"= y {y0 * slide.mpp[0]:.1f}–{y1 * slide.mpp[0]:.1f}, "
                         f"x {x0 * slide.mpp[1]:.1f}–{x1 * slide.mpp[1]:.1f} µm")
        known = self._known(grid, level, row, col)
        lines.append(values_text(*known) if known is not None else values_text((), None))
        self.info.value = "\n".join(lines)

    def _known(self, grid: PatchGrid, level: int, row: int, col: int) -> Any:
        """(class names, values) of a computed patch: the inspected heatmap's, else from
        ``values``; None when not computed."""
        if self.heatmap_layer is None:
            return self.values(grid, level, row, col)
        h = self.heatmap_layer.metadata[HEATMAP_META_KEY]
        v = h.values[row, col]
        return None if np.isnan(v).any() else (h.class_names, v)

    def update_highlight_width(self) -> None:
        """Keep the outline HIGHLIGHT_EDGE_SCREEN_PX wide at the current zoom."""
        if (self.highlight is not None and self.highlight in self.viewer.layers
                and self.highlight.nshapes):
            self.highlight.edge_width = [screen_px_to_world(self.viewer, HIGHLIGHT_EDGE_SCREEN_PX)]

    def _outline(self, grid: PatchGrid, downsample: FloatPair, slide: SlideLayer, row: int,
                 col: int) -> None:
        rect = slide.box_to_world(grid.boxes(row, col, downsample))
        layer = self.highlight
        if layer is None or layer not in self.viewer.layers:
            layer = self.highlight = add_outline_layer(
                self.viewer, HIGHLIGHT_LAYER_NAME, HIGHLIGHT_EDGE_COLOR, **slide.unit_kwargs())
        slide.match_units(layer)
        with one_update(layer):
            if layer.nshapes:
                layer.data = []
            add_outlines(layer, rect, screen_px_to_world(self.viewer, HIGHLIGHT_EDGE_SCREEN_PX),
                         HIGHLIGHT_EDGE_COLOR)

    def _draw(self, slide: SlideLayer) -> None:
        """The patch; beside it, normalised, when the dock asks for stain normalisation (each
        pixel by itself: the zoomed patch normalised is the normalised patch zoomed)."""
        assert self.patch is not None
        rgb = display_rgb(self.patch)
        asked, fit, line = self._stain_fit(slide)
        if not asked:
            self._show(zoom_for_display(rgb))
            self._show_normalised(None, "")
            return
        shown = zoom_for_display(rgb, *PAIR_DISPLAY_PX)
        self._show(shown)
        patch = self.patch
        if fit is not None and not (patch.ndim == 3 and patch.shape[2] >= 3
                                    and patch.dtype == np.uint8):
            fit, line = None, "normalised: only RGB patches are stain-normalised."
        self._show_normalised(None if fit is None else normalise_numpy(fit, shown),
                              f"left: as read; right: normalised ({fit.method})"
                              if fit is not None else line)

    def _stain_fit(self, slide: SlideLayer) -> tuple[bool, StainFit | None, str]:
        """(asked, fit, line) of :meth:`StainPreview.fit`: an inspected heatmap's recorded fit
        (what its model saw), else the dock's Model input's."""
        if self.heatmap_layer is not None:
            recorded = self.heatmap_layer.metadata[HEATMAP_META_KEY].extra.get("stain_norm")
            fit = None if recorded is None else StainFit.from_json(recorded)
            return fit is not None, fit, ""
        return (False, None, "") if self.stain is None else self.stain.fit(slide)

    def _show_normalised(self, rgb: np.ndarray | None, line: str) -> None:
        """The normalised patch beside the patch (None: none), and its line ('': hidden)."""
        self.on_screen_normalised = rgb
        self.normalised_image.setVisible(rgb is not None)
        if rgb is not None:
            _set_pixels(self.normalised_image, rgb)
        self.stain_line.value, self.stain_line.visible = line, bool(line)

    def _show(self, rgb: np.ndarray) -> None:
        self.on_screen = _set_pixels(self.image, rgb)

    def _set_spins(self, row: int, col: int, grid: PatchGrid) -> None:
        self._spinning = True
        try:
            self.row.max, self.col.max = grid.rows - 1, grid.cols - 1
            self.row.value, self.col.value = row, col
        finally:
            self._spinning = False

    # --- events ---------------------------------------------------------------------------------
    def redraw(self) -> None:
        """Draw the selected patch again (the stain normalisation asked, or its fit, changed)."""
        state = self.state()
        if self.patch is not None and state is not None:
            self._draw(state[2])

    def _on_spin(self, *_: Any) -> None:
        if not self._spinning:
            self.select(self.row.value, self.col.value)

    def _on_mouse(self, viewer: Any, event: Any) -> Any:
        """A left click without modifiers that does not pan selects the patch under it."""
        if event.button != 1 or event.modifiers or viewer.dims.ndisplay != 2:
            return
        active = viewer.layers.selection.active
        if getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return  # the user is drawing or selecting on a layer
        start = np.asarray(event.position, float)
        yield
        while event.type == "mouse_move":
            yield
        moved = np.abs(np.asarray(event.position, float) - start).max() * camera(viewer).zoom
        if moved <= CLICK_MAX_MOVE_SCREEN_PX:
            self.select_at(event.position)

    def _on_removed(self, event: Any) -> None:
        """The inspected heatmap's layer went: its patch and outline with it."""
        if event.value is self.heatmap_layer:
            self.heatmap_layer = None
            self.clear()

    def detach(self) -> None:
        """Detach from the viewer: mouse callback, keys, outline layer."""
        self.viewer.layers.events.removed.disconnect(self._on_removed)
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        for key in STEP_KEYS:
            self.viewer.bind_key(key, None, overwrite=True)
        remove_layer(self.viewer, self.highlight)
        self.highlight = None


def _set_pixels(label: QLabel, rgb: np.ndarray) -> np.ndarray:
    """Show RGB uint8 ``rgb`` in ``label`` at its size; the (contiguous) pixels shown."""
    pixels = np.ascontiguousarray(rgb)
    h, w = pixels.shape[:2]
    # PyQt6's stub types the pixels as bytes; Qt takes any buffer, here without a copy
    qimage = QImage(pixels.data, w, h, 3 * w,  # type: ignore[call-overload]
                    QImage.Format.Format_RGB888)
    label.setPixmap(QPixmap.fromImage(qimage))  # the pixmap copies the pixels
    label.setFixedSize(w, h)
    return pixels
