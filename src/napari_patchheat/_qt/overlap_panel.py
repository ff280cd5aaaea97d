"""The dock's smoother map: the overlap-averaged map of the heatmap in use as an Image layer
(cells where its pixels are; :mod:`napari_patchheat.analysis.overlap`), and a display-only
interpolation of the heatmap layer. Neither changes the heatmap's values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from magicgui.widgets import ComboBox, Container, PushButton

from ..analysis import OverlapMap, overlap_map
from ..heatmap import CLASS_META_KEY, HEATMAP_META_KEY
from .slide_layer import SlideLayer
from .widgets import TextLabel

INTERPOLATIONS = ("nearest", "linear", "cubic", "spline36")
OVERLAP_META_KEY = "patchheat_overlap"  # layer metadata of the overlap maps made here


class OverlapPanel(Container):
    """'Overlap-averaged map' adds the map of the heatmap in use (``source()``: its layer and
    slide layer, or None) over the slide; 'interpolation' sets how napari draws that heatmap
    layer (display only)."""

    def __init__(self, viewer: Any, source: Callable[[], Any], on_error: Callable[[str], None]):
        self.viewer, self.source, self.on_error = viewer, source, on_error
        self.interpolation = ComboBox(label="interpolation", choices=list(INTERPOLATIONS),
                                      value="nearest", tooltip="how napari draws the heatmap "
                                      "in use between cell centres (display only)")
        self.map_button = PushButton(text="Overlap-averaged map")
        self.info = TextLabel()
        self.layer: Any = None
        self.map: OverlapMap | None = None
        super().__init__(labels=False, widgets=[Container(widgets=[self.interpolation]),
                                                self.map_button, self.info])
        self.interpolation.changed.connect(self.apply_interpolation)
        self.map_button.changed.connect(self.show_map)

    def apply_interpolation(self, *_: Any) -> None:
        state = self.source()
        if state is not None:
            state[0].interpolation2d = self.interpolation.value

    def show_map(self, *_: Any) -> bool:
        """Add (or replace) the overlap-averaged map of the class shown; False with a sentence
        when there is no heatmap or the grid's cells would be too small."""
        state = self.source()
        if state is None:
            self.on_error("Run or open a heatmap first: there is no map to average.")
            return False
        layer, slide_layer = state
        try:
            self.map = overlap_map(layer.metadata[HEATMAP_META_KEY])
        except ValueError as exc:
            self.on_error(str(exc))
            return False
        slide = SlideLayer.from_layer(slide_layer)
        c = int(layer.metadata.get(CLASS_META_KEY, 0))
        scale, translate = self.map.placement(slide.world_per_px)
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = self.viewer.add_image(
            self.map.values[..., c], name=f"{layer.name} overlap mean", scale=scale,
            translate=tuple(t + o for t, o in zip(translate, slide.world_offset)),
            colormap=layer.colormap, opacity=layer.opacity,
            contrast_limits=tuple(layer.contrast_limits),  # the heatmap's range and threshold
            blending="translucent", interpolation2d=self.interpolation.value,
            metadata={OVERLAP_META_KEY: self.map, CLASS_META_KEY: c}, **slide.unit_kwargs())
        gy, gx = self.map.cell_px
        self.info.value = (f"cells of {gy} x {gx} level px; up to {int(self.map.count.max())} "
                           "patches per cell")
        return True
