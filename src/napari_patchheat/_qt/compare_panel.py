"""Compare two heatmaps side by side: napari's grid mode (one camera: the views move together),
each heatmap over its slide in a cell of its own, and their difference A - B in a third cell
when they share a grid (:mod:`napari_patchheat.analysis.compare`), else one sentence why not.

Comparing adds temporary layers at the bottom of the layer list, two per cell: a second layer
of the slide's data (the same arrays: no pixels copied) under a layer of the heatmap's data
(or the difference), and shows only them; napari's grid puts each pair (stride 2) in a cell.
Turning it off removes them and gives every other layer its visibility, and the viewer its grid
settings and selected layer, back; the layers' order never changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container

from ..analysis.compare import difference, symmetric_limits, why_no_difference
from ..heatmap import CLASS_META_KEY, HEATMAP_META_KEY
from .slide_layer import COMPARE_META_KEY, is_heatmap_layer
from .widgets import TextLabel, section

DIFFERENCE_COLORMAP = "PiYG"  # diverging: A above B green, below pink, 0 white
LAYERS_PER_CELL = 2  # the slide, then the heatmap (or the difference) over it


def grid_model(viewer: Any) -> Any:
    """The viewer's grid mode settings (``viewer.canvas.grid`` from napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return getattr(canvas, "grid", None) or viewer.grid


@contextlib.contextmanager
def one_scene_update(viewer: Any) -> Iterator[None]:
    """Layers added, moved or removed with one scene graph update at the end (napari >= 0.6's
    ``batched_update``: each removal alone runs a full ``gc.collect()``, ~0.18 s here)."""
    batched = getattr(viewer.layers, "batched_update", None)
    with batched() if batched is not None else contextlib.nullcontext():
        yield


def copy_layer(viewer: Any, layer: Any, **kwargs: Any) -> Any:
    """A temporary Image layer of ``layer``'s data (no copy), placed and drawn as ``layer``;
    ``kwargs`` override."""
    kw: dict[str, Any] = dict(
        multiscale=layer.multiscale, rgb=layer.rgb, scale=layer.scale, translate=layer.translate,
        contrast_limits=layer.contrast_limits, colormap=layer.colormap, gamma=layer.gamma,
        opacity=layer.opacity, blending=layer.blending, interpolation2d=layer.interpolation2d,
        name=f"{layer.name} (compare)")
    if getattr(layer, "units", None) is not None:  # napari >= 0.6
        kw["units"] = tuple(layer.units)
    kw.update(kwargs)
    return viewer.add_image(kw.pop("data", layer.data), metadata={COMPARE_META_KEY: True}, **kw)


class ComparePanel(Container):
    """Heatmaps ``a`` and ``b`` and the 'Compare side by side' box; ``source_of(layer)`` is the
    slide layer a heatmap layer lies over (or None). ``layers`` holds the temporary layers
    while comparing, ``difference`` A - B (or None) and ``info`` its sentence."""

    def __init__(self, viewer: Any, source_of: Callable[[Any], Any],
                 on_error: Callable[[str], None]):
        self.viewer, self.source_of, self.on_error = viewer, source_of, on_error
        self.a = ComboBox(label="A", choices=self._choices, nullable=True)
        self.b = ComboBox(label="B", choices=self._choices, nullable=True)
        self.toggle = CheckBox(text="Compare side by side", value=False, tooltip=(
            "A and B each over its slide in napari's grid mode, and A - B where they share "
            "a grid; untick to restore the layers"))
        self.info = TextLabel()
        self.layers: list[Any] = []
        self.difference: Any = None
        self._saved: dict[Any, bool] = {}  # layer -> its visibility before comparing
        self._grid: tuple[Any, ...] | None = None  # (enabled, shape, stride) before
        self._active: Any = None
        self._pair: tuple[Any, ...] = ()  # A and B as compared (the combo boxes may change)
        super().__init__(labels=False, widgets=[section("Compare"),
                                                Container(widgets=[self.a, self.b]),
                                                self.toggle, self.info])
        self.toggle.changed.connect(self._on_toggle)

    def _choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in reversed(self.viewer.layers)
                if is_heatmap_layer(layer)]

    def reset_choices(self, *_: Any) -> None:
        """New heatmap choices; A and B default to the top two heatmaps."""
        super().reset_choices()
        heatmaps = [layer for _, layer in self._choices()]
        if self.a.value is None and heatmaps:
            self.a.value = heatmaps[0]
        if self.b.value is None and len(heatmaps) > 1:
            self.b.value = next(h for h in heatmaps if h is not self.a.value)

    @property
    def comparing(self) -> bool:
        return bool(self.layers)

    def _on_toggle(self, on: bool) -> None:
        if on and not self.comparing and not self.start():
            with self.toggle.changed.blocked():
                self.toggle.value = False
        elif not on:
            self.stop()

    # --- on --------------------------------------------------------------------------------
    def start(self) -> bool:
        """Show A and B side by side (and A - B); False with a sentence when it cannot."""
        a, b = self.a.value, self.b.value
        if a is None or b is None or a is b:
            self.on_error("Compare needs two heatmaps: choose A and B.")
            return False
        slides = [self.source_of(a), self.source_of(b)]
        for name, slide in zip("AB", slides):
            if slide is None or slide not in self.viewer.layers:
                self.on_error(f"Compare shows each heatmap over its slide: open {name}'s slide.")
                return False
        ha, hb = a.metadata[HEATMAP_META_KEY], b.metadata[HEATMAP_META_KEY]
        why = why_no_difference(ha, hb)
        if why:
            pairs = [(slides[0], a), (slides[1], b)]
            self.difference = None
        else:
            self.difference = difference(ha, hb, int(a.metadata.get(CLASS_META_KEY, 0)),
                                         int(b.metadata.get(CLASS_META_KEY, 0)))
            pairs = [(slides[0], a), (slides[1], b), (slides[0], None)]
        self.info.value = why or (f"A - B: {a.name} minus {b.name}; green where A is higher, "
                                  "pink where B is")
        self._active, self._pair = self.viewer.layers.selection.active, (a, b)
        self._saved = {layer: bool(layer.visible) for layer in self.viewer.layers}
        layers = self.viewer.layers
        with one_scene_update(self.viewer):
            for slide, heatmap in pairs:
                self.layers.append(copy_layer(self.viewer, slide))
                self.layers.append(copy_layer(self.viewer, heatmap) if heatmap is not None else
                                   copy_layer(self.viewer, a, data=self.difference,
                                              colormap=DIFFERENCE_COLORMAP,
                                              contrast_limits=symmetric_limits(self.difference),
                                              name=f"A - B: {a.name} - {b.name}"))
            for i, layer in enumerate(self.layers):  # at the bottom, pair by pair
                layers.move(layers.index(layer), i)
            for layer in self._saved:
                self._hide(layer)
        grid = grid_model(self.viewer)
        self._grid = (grid.enabled, grid.shape, grid.stride)
        grid.stride, grid.shape, grid.enabled = LAYERS_PER_CELL, (1, len(pairs)), True
        layers.events.inserted.connect(self._on_inserted)
        layers.events.removed.connect(self._on_removed)
        return True

    def _hide(self, layer: Any) -> None:
        """Hide ``layer`` while comparing, and keep it hidden (the grid preview shows its
        layers as it redraws); its wish to be seen is kept for later."""
        layer.visible = False
        layer.events.visible.connect(self._keep_hidden)

    def _keep_hidden(self, event: Any) -> None:
        layer = event.source
        if layer.visible and self.comparing:
            self._saved[layer] = True
            layer.visible = False

    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        if layer not in self.layers:  # a layer added while comparing: shown when it ends
            self._saved[layer] = bool(layer.visible)
            self._hide(layer)

    def _on_removed(self, event: Any) -> None:
        """A temporary layer or A or B removed: comparing ends."""
        layer = event.value
        if self._saved.pop(layer, None) is not None:
            layer.events.visible.disconnect(self._keep_hidden)
        if layer in self.layers or any(layer is x for x in self._pair):
            self.toggle.value = False

    # --- off -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Remove the temporary layers; every other layer's visibility, the grid settings and
        the selected layer as they were. Safe to call again."""
        if not self.comparing:
            return
        layers = self.viewer.layers
        layers.events.inserted.disconnect(self._on_inserted)
        layers.events.removed.disconnect(self._on_removed)
        grid = grid_model(self.viewer)  # first: napari lays out its grid at every change
        if self._grid is not None:
            grid.enabled, grid.shape, grid.stride = self._grid
        temporary, self.layers = self.layers, []
        with one_scene_update(self.viewer):
            for layer in temporary:
                if layer in layers:
                    layers.remove(layer)
        for layer, visible in self._saved.items():
            layer.events.visible.disconnect(self._keep_hidden)
            layer.visible = visible
        self._saved = {}
        if self._active is not None and self._active in layers:
            layers.selection.active = self._active
        self._active, self._pair, self.difference = None, (), None
        self.info.value = ""
