"""The value range and "show at or above" controls of the heatmap in use (the dock's Display
section): a range slider, "auto" (the computed cells' range), "reset" (the class's natural range,
0..1 for probabilities) and a threshold below which cells are transparent. Each change sets the
layer's contrast limits and colormap only (``display_settings``), never its data.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui.widgets import Container, FloatRangeSlider, LineEdit, PushButton
from vispy.visuals.shaders import Function

from ..export.png import natural_range
from .display_settings import colormap_name, show_values, threshold_of
from .widgets import TextLabel


def _canvas(viewer: Any) -> Any:
    """napari's vispy canvas of ``viewer`` (private names: where they change, None, and vispy
    rebuilds the shaders as before)."""
    return getattr(getattr(viewer.window, "_qt_viewer", None), "canvas", None)


def _layer_overlays(canvas: Any, layer: Any) -> list[Any]:
    """The vispy overlays of ``layer`` on ``canvas`` (its colour bar)."""
    return list(getattr(canvas, "_layer_overlay_to_visual", {}).get(layer, {}).values())


def image_visuals(viewer: Any, layer: Any) -> list[Any]:
    """The vispy image visuals that draw ``layer`` in ``viewer``: its tiles and its colour
    bar's gradient (none where the canvas has not made them)."""
    canvas = _canvas(viewer)
    vispy_layer = getattr(canvas, "layer_to_visual", {}).get(layer)
    if vispy_layer is None:
        return []
    visuals = list(getattr(vispy_layer.node, "adopted_children", [vispy_layer.node]))
    for overlay in _layer_overlays(canvas, layer):
        img = getattr(overlay.node, "img", None)
        if img is not None:
            visuals.append(img)
    return visuals


def swap_colour_table(visuals: list[Any]) -> int:
    """Give ``visuals`` their new colormap's colour table without vispy rebuilding their
    shaders: every napari colormap is drawn by the same GLSL (a lookup in a texture, the table),
    yet vispy regenerates, recompiles and relinks a visual's program when its colormap changes
    (45 ms a change in software OpenGL). Only visuals already drawn with such a table are
    touched; returns how many."""
    swapped = 0
    for visual in visuals:
        if not getattr(visual, "_need_colortransform_update", False):
            continue
        try:
            chain = visual.shared_program.frag["color_transform"]
            drawn = chain[3].code  # red_to_luminance, clim, gamma, the colormap's lookup
        except (KeyError, IndexError, TypeError, AttributeError):
            continue
        if visual.cmap.texture_map_data is None or drawn != Function(visual.cmap.glsl_map).code:
            continue
        visual._need_colortransform_update = False
        visual.view_program["texture2D_LUT"] = visual.cmap.texture_lut()
        visual.update()
        swapped += 1
    return swapped


NULL_TRANSFORM = "pass"  # vispy's MeshVisual: the colour transform of a mesh of one colour
_KEPT_MESHES: weakref.WeakSet[Any] = weakref.WeakSet()  # meshes keep_box_programs set up


def box_meshes(viewer: Any, layer: Any, overlays: Any = ()) -> list[Any]:
    """The meshes of the boxes behind ``layer``'s colour bar and behind the canvas
    ``overlays`` (the legend) in ``viewer``: napari draws each box as a vispy Rectangle (none
    where the canvas has not made them)."""
    canvas = _canvas(viewer)
    vispy_overlays = _layer_overlays(canvas, layer)
    for overlay in overlays:
        vispy_overlays += getattr(canvas, "_viewer_overlay_to_visual", {}).get(overlay, [])
    meshes = (getattr(getattr(o, "box", None), "_mesh", None) for o in vispy_overlays)
    return [mesh for mesh in meshes if mesh is not None]


def keep_box_programs(meshes: list[Any]) -> int:
    """Let ``meshes`` of one colour keep their shader programs when resized or recoloured:
    vispy gives a mesh a new colour-transform function at every change of its data, though a
    mesh of one colour always has the same one (``pass``), so it regenerates, compiles and links
    its program each time (~7 ms in software OpenGL, for each box a range change resizes: the
    legend's and the colour bar's). Meshes whose transform is not vispy's ``pass`` are left as
    they are; returns how many meshes were newly set up."""
    kept = 0
    for mesh in meshes:
        if mesh in _KEPT_MESHES:
            continue
        try:
            current = mesh.shared_program.vert["color_transform"]
        except (KeyError, AttributeError, TypeError):
            continue
        if not isinstance(current, Function) or current.name != NULL_TRANSFORM:
            continue
        build = mesh._build_color_transform

        def reuse(colors: np.ndarray, build: Callable[[Any], Any] = build,
                  same: Function = current) -> Any:
            return same if np.ndim(colors) == 1 else build(colors)

        mesh._build_color_transform = reuse
        _KEPT_MESHES.add(mesh)
        kept += 1
    return kept


def computed_range(plane: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the computed (non-NaN) cells; None when none is computed."""
    if not np.isfinite(plane).any():
        return None
    return float(np.nanmin(plane)), float(np.nanmax(plane))


class ValueDisplay:
    """The controls (``widgets``, for the Display section) of the heatmap layer ``show`` gave;
    ``on_applied()`` runs after each change (the legend follows)."""

    def __init__(self, on_applied: Callable[[], None], viewer: Any = None,
                 overlays: Any = ()):
        self.on_applied, self.viewer, self.overlays = on_applied, viewer, overlays
        self.layer: Any = None
        self.value_range = FloatRangeSlider(
            label="value range", min=0.0, max=1.0, value=(0.0, 1.0),
            tooltip="values mapped onto the colormap's ends (contrast limits)")
        self.auto = PushButton(text="auto", tooltip="the range of the computed cells")
        self.reset = PushButton(text="reset", tooltip="the class's natural range (0..1 for "
                                "probabilities)")
        self.threshold = LineEdit(
            label="show at or above", tooltip="cells below this value are transparent and the "
            "slide shows through; empty: every computed cell is shown")
        self.note = TextLabel(visible=False)
        self.widgets = [self.value_range,
                        Container(widgets=[self.auto, self.reset], layout="horizontal",
                                  labels=False, label=""),
                        self.threshold, self.note]
        self.value_range.changed.connect(self.apply)
        self.threshold.changed.connect(self.apply)
        self.auto.changed.connect(self.auto_range)
        self.reset.changed.connect(self.reset_range)

    def show(self, layer: Any) -> None:
        """Set the controls from ``layer`` (the heatmap now in use)."""
        self.layer = layer
        lo, hi = (float(v) for v in layer.contrast_limits)
        t = threshold_of(layer)
        with self.value_range.changed.blocked(), self.threshold.changed.blocked():
            self._set_range(lo, hi)
            self.threshold.value = "" if t is None else f"{t:g}"
        self.note.visible = False

    def _set_range(self, lo: float, hi: float) -> None:
        """The slider at (lo, hi), its ends wide enough for it, the class's natural range and
        the computed cells' range."""
        data = np.asarray(self.layer.data)
        ends = [e for e in ((lo, hi), natural_range(data), computed_range(data)) if e is not None]
        self.value_range.min = min(e[0] for e in ends)
        self.value_range.max = max(e[1] for e in ends)
        self.value_range.value = (lo, hi)

    def _threshold(self) -> float | None:
        text = str(self.threshold.value).strip()
        if not text:
            return None
        return float(text)

    def apply(self, *_: Any) -> None:
        """The range and threshold onto the layer (a threshold that is no number is a note and
        changes nothing)."""
        if self.layer is None:
            return
        try:
            t = self._threshold()
        except ValueError:
            self.note.value = (f"show at or above: {self.threshold.value!r} is not a number; "
                               "type one such as 0.6, or leave it empty to show every cell.")
            self.note.visible = True
            return
        self.note.visible = False
        lo, hi = self.value_range.value
        self._show(colormap_name(self.layer), (lo, hi), t)
        self.on_applied()

    def _show(self, name: str, limits: tuple[float, float], threshold: float | None) -> None:
        """``show_values`` onto the layer, its shaders kept (:func:`swap_colour_table`)."""
        if self.viewer is not None:
            keep_box_programs(box_meshes(self.viewer, self.layer, self.overlays))
        show_values(self.layer, name, limits, threshold)
        if self.viewer is not None:
            swap_colour_table(image_visuals(self.viewer, self.layer))

    def set_colormap(self, name: str) -> None:
        """Show the layer in colormap ``name``, keeping its range and threshold."""
        if self.layer is not None:
            self._show(name, tuple(self.layer.contrast_limits), threshold_of(self.layer))

    def auto_range(self, *_: Any) -> None:
        """The range of the computed cells (nothing computed: unchanged)."""
        if self.layer is not None:
            self._move_to(computed_range(np.asarray(self.layer.data)))

    def reset_range(self, *_: Any) -> None:
        """The class's natural range."""
        if self.layer is not None:
            self._move_to(natural_range(np.asarray(self.layer.data)))

    def _move_to(self, limits: tuple[float, float] | None) -> None:
        if limits is None:
            self.note.value = "no computed cells yet: the range stays as it is."
            self.note.visible = True
            return
        with self.value_range.changed.blocked():
            self._set_range(*limits)
        self.apply()
