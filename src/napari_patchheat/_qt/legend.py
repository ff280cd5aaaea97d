"""The canvas legend: the class, value range, threshold ("show at or above") and name of the
top visible map, a heatmap or an overlap mean, stacked under that layer's colour bar (never
over it), the only map colour bar shown. It follows the layer list (added, removed, moved
layers) and each layer's visibility, name, range and colormap (a threshold is one)."""

from __future__ import annotations

from typing import Any

from napari.components.overlays import TextOverlay

from ..heatmap import CLASS_META_KEY, HEATMAP_META_KEY
from .display_settings import stack_vertically, threshold_of
from .overlap_panel import OVERLAP_META_KEY

LEGEND_OVERLAY_KEY = "patchheat_legend"  # viewer.canvas.overlays key of the legend
MAP_META_KEYS = (HEATMAP_META_KEY, OVERLAP_META_KEY)  # metadata of the layers it describes
LAYER_EVENTS = ("visible", "name", "contrast_limits", "colormap")  # what it follows of a layer


def map_classes(layer: Any) -> tuple[str, ...] | None:
    """The class names of a map layer (a heatmap or an overlap mean); None for other layers."""
    metadata = getattr(layer, "metadata", {})
    for key in MAP_META_KEYS:
        if metadata.get(key) is not None:
            return tuple(metadata[key].class_names)
    return None


def top_visible_map(layers: Any) -> Any:
    """The map layer drawn on top of the others (napari draws the list's last on top) among
    the visible ones; None when none is visible."""
    return next((layer for layer in reversed(list(layers))
                 if layer.visible and map_classes(layer) is not None), None)


class Legend:
    """The legend overlay of ``viewer`` (key LEGEND_OVERLAY_KEY); :attr:`layer` is the map it
    describes. :meth:`update` after a change it does not follow (a class chosen)."""

    def __init__(self, viewer: Any):
        self.viewer = viewer
        self.overlay = TextOverlay(box=True)
        self.overlay.visible = False
        self.layer: Any = None
        self._closed = False
        viewer.canvas.overlays[LEGEND_OVERLAY_KEY] = self.overlay
        events = viewer.layers.events
        events.inserted.connect(self._on_inserted)
        for event in (events.removed, events.moved, events.reordered):
            event.connect(self.update)
        for layer in viewer.layers:
            self._follow(layer)

    def _on_inserted(self, event: Any) -> None:
        self._follow(event.value)
        self.update()

    def _follow(self, layer: Any) -> None:
        for name in LAYER_EVENTS:
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.connect(self.update)

    def update(self, *_: Any) -> None:
        """Describe the top visible map; its colour bar alone is shown (none when no map is)."""
        if self._closed:
            return
        top = self.layer = top_visible_map(self.viewer.layers)
        for layer in self.viewer.layers:
            if map_classes(layer) is not None:
                layer.colorbar.visible = layer is top
        if top is not None:
            lo, hi = (float(v) for v in top.contrast_limits)
            names = map_classes(top) or ("",)
            name = names[min(int(top.metadata.get(CLASS_META_KEY, 0)), len(names) - 1)]
            t = threshold_of(top)
            above = "" if t is None else f", shown ≥ {t:.4g}"
            self.overlay.text = f"{name}: {lo:.4g}–{hi:.4g}{above}\n{top.name}"
            self.overlay.position = top.colorbar.position
            stack_vertically(self.viewer, self.overlay.position)  # bar and legend never overlap
        self.overlay.visible = top is not None

    def shutdown(self) -> None:
        """Drop the legend and stop following the viewer. Safe to call again."""
        if self._closed:
            return
        self._closed = True
        events = self.viewer.layers.events
        events.inserted.disconnect(self._on_inserted)
        for event in (events.removed, events.moved, events.reordered):
            event.disconnect(self.update)
        for layer in self.viewer.layers:
            for name in LAYER_EVENTS:
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.disconnect(self.update)
        self.viewer.canvas.overlays.pop(LEGEND_OVERLAY_KEY, None)
