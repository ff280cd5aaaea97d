"""The heatmap side of the dock widget: the heatmap layers, how one is shown, and its Export.

A heatmap layer is an Image layer made from :meth:`Heatmap.layer_kwargs` (placed per the
coordinate contract, contrast limits 0..1, NaN transparent) and shifted by the slide layer's
own translate. Class, colormap and opacity change the layer only, never the values. Export
writes the layer's heatmap with :func:`~napari_patchheat.export.export_heatmap`; its positive
threshold (one-output heatmaps) or minimum probability (several classes) classify GeoJSON tiles.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    LineEdit,
    PushButton,
)

from ..export import FORMATS, export_heatmap
from ..grid import PatchGrid
from ..heatmap import CLASS_META_KEY, HEATMAP_META_KEY, Heatmap
from .slide_layer import SlideLayer, is_heatmap_layer, is_slide_candidate
from .widgets import TextLabel, section

COLORMAPS = ("inferno", "viridis", "magma", "plasma", "turbo", "red", "gray")
DEFAULT_OPACITY = 0.6
THUMBNAIL_PX = 2000  # long side of the slide thumbnail the PNG export is blended over
FORMAT_LABELS = {"ometiff": "OME-TIFF", "slide_raster": "slide-aligned TIFF",
                 "png": "PNG overlay", "csv": "CSV", "csv_wsinfer": "CSV (WSInfer columns)",
                 "geojson": "GeoJSON (QuPath)"}
# heatmap.extra keys of the GeoJSON classification (export.ClassRule) and their field labels
CLASS_RULE_FIELDS = {"positive_threshold": "positive threshold",
                     "min_probability": "minimum probability"}


def safe_stem(text: str) -> str:
    """A file-name stem from free text: runs of other characters become '_'."""
    return re.sub(r"[^\w.+-]+", "_", text).strip("._") or "heatmap"


def thumbnail(slide: SlideLayer) -> np.ndarray:
    """The whole slide at about THUMBNAIL_PX on its long side, from the level Slide.thumbnail
    uses (every k-th pixel: layers may hold any dtype; the PNG export resizes it)."""
    from ..slide import thumbnail_level

    level = thumbnail_level([slide.level_shape(i) for i in range(len(slide.levels))],
                            THUMBNAIL_PX)
    k = max(1, max(slide.level_shape(level)) // THUMBNAIL_PX)
    return np.asarray(slide.levels[level][::k, ::k])


class HeatmapPanel(Container):
    """Class, colormap, opacity and Export of the heatmap in use (``heatmap``, ``layer``).

    ``on_error(message)`` reports a failure; ``on_change()`` runs when another heatmap is in
    use or its values changed (the inspector shows predictions from it).
    """

    def __init__(self, viewer: Any, on_error: Callable[[str], None],
                 on_change: Callable[[], None]):
        self.viewer, self.on_error, self.on_change = viewer, on_error, on_change
        self.heatmap: Heatmap | None = None
        self.layer: Any = None
        # heatmap layer -> weak reference to the slide layer under it (neither kept alive here)
        self._sources: weakref.WeakKeyDictionary[Any, weakref.ref[Any]] = \
            weakref.WeakKeyDictionary()
        self.class_name = ComboBox(label="class", choices=[])
        self.colormap = ComboBox(label="colormap", choices=list(COLORMAPS), value=COLORMAPS[0])
        self.opacity = FloatSlider(label="opacity", min=0.0, max=1.0, value=DEFAULT_OPACITY)
        self.export_formats = {f: CheckBox(text=FORMAT_LABELS.get(f, f), value=True)
                               for f in FORMATS}
        self.export_folder = FileEdit(label="folder", mode="d",
                                      value=Path.home() / "patchheat-export")
        self.export_stem = LineEdit(label="file stem", value="heatmap")
        self.positive_threshold = LineEdit(
            label="positive threshold", tooltip="GeoJSON of a one-output model: tiles whose "
            "value is at or above this are classified; empty: no tile is classified")
        self.min_probability = LineEdit(
            label="min probability", tooltip="GeoJSON of a multi-class model: tiles whose top "
            "class is below this are unclassified; empty: every tile gets its top class")
        self.export_button = PushButton(text="Export", enabled=False)
        self.export_info = TextLabel()
        formats = Container(widgets=list(self.export_formats.values()), labels=False,
                            label="formats")
        super().__init__(labels=False, widgets=[
            section("Display"), Container(widgets=[self.class_name, self.colormap, self.opacity]),
            section("Export"), Container(widgets=[formats, self.export_folder, self.export_stem,
                                                  self.positive_threshold, self.min_probability]),
            self.export_button, self.export_info,
        ])
        self.class_name.changed.connect(self.apply_display)
        self.colormap.changed.connect(self.apply_display)
        self.opacity.changed.connect(self.apply_display)
        self.export_button.changed.connect(self.export)

    # --- layers --------------------------------------------------------------------------------
    def source_of(self, layer: Any) -> Any:
        """The slide layer a heatmap layer was made over: the one it was shown over here, else
        (a heatmap read back from a file) an open slide layer of the heatmap's slide file."""
        if layer is None:
            return None
        ref = self._sources.get(layer)
        source = ref() if ref is not None else None
        if source is None and is_heatmap_layer(layer):
            slide_path = layer.metadata[HEATMAP_META_KEY].slide_path
            for other in self.viewer.layers if slide_path else ():
                path = SlideLayer.from_layer(other).path if is_slide_candidate(other) else None
                if path is not None and path.resolve() == Path(slide_path).resolve():
                    self._sources[layer] = weakref.ref(other)
                    return other
        return source

    def _matching_layer(self, heatmap: Heatmap, slide: SlideLayer) -> Any:
        for layer in self.viewer.layers:
            other = layer.metadata.get(HEATMAP_META_KEY) if is_heatmap_layer(layer) else None
            if other is not None and self.source_of(layer) is slide.layer \
                    and other.grid == heatmap.grid and other.level == heatmap.level \
                    and other.model_fingerprint == heatmap.model_fingerprint:
                return layer
        return None

    def show(self, heatmap: Heatmap, slide: SlideLayer, replace: bool = False) -> Any:
        """Show ``heatmap`` over ``slide``: in the layer of the same slide, grid and model (values
        merged, so nothing computed is lost), else in the layer in use (``replace``), else in a
        new layer; a heatmap of another grid never lands in a layer of this one unasked."""
        layer = self._matching_layer(heatmap, slide)
        if layer is not None:
            old = layer.metadata[HEATMAP_META_KEY].values
            keep = np.isnan(heatmap.values) & ~np.isnan(old)
            heatmap.values[keep] = old[keep]
        elif replace and self.layer is not None and self.layer in self.viewer.layers:
            layer = self.layer
        names = heatmap.class_names
        c = names.index(self.class_name.value) if self.class_name.value in names else 0
        kw = heatmap.layer_kwargs(c, slide.world_per_px, self.colormap.value, self.opacity.value)
        kw["translate"] = tuple(np.add(kw["translate"], slide.world_offset))
        kw["name"] = f"{slide.name} {heatmap.model_name} {names[c]}"
        if layer is None:
            layer = self.viewer.add_image(**kw, **slide.unit_kwargs())
            layers = self.viewer.layers
            if slide.layer in layers:  # right above its slide: the grid and outline stay on top
                layers.move(layers.index(layer), layers.index(slide.layer) + 1)
        else:
            layer.metadata = {**layer.metadata, **kw.pop("metadata")}
            layer.data, layer.scale, layer.translate = kw["data"], kw["scale"], kw["translate"]
            layer.name = kw["name"]
        slide.match_units(layer)
        self._sources[layer] = weakref.ref(slide.layer)
        self.adopt(layer)
        return layer

    def adopt(self, layer: Any) -> None:
        """Make ``layer`` the heatmap that class, colormap, opacity and Export apply to."""
        heatmap = layer.metadata[HEATMAP_META_KEY]
        self.layer, self.heatmap = layer, heatmap
        c = int(layer.metadata.get(CLASS_META_KEY, 0))
        with self.class_name.changed.blocked(), self.colormap.changed.blocked(), \
                self.opacity.changed.blocked():
            self.class_name.choices = list(heatmap.class_names)
            self.class_name.value = heatmap.class_names[c]
            if layer.colormap.name in COLORMAPS:
                self.colormap.value = layer.colormap.name
            self.opacity.value = float(layer.opacity)
        self.export_stem.value = safe_stem(layer.name.rsplit(" ", 1)[0])
        one_output = len(heatmap.class_names) == 1
        self.positive_threshold.visible, self.min_probability.visible = one_output, not one_output
        for key in CLASS_RULE_FIELDS:  # a threshold the heatmap records (model card, CLI)
            if heatmap.extra.get(key) is not None:
                getattr(self, key).value = repr(float(heatmap.extra[key]))
        self.export_button.enabled = True
        self.on_change()

    def on_active(self, event: Any) -> None:
        """A heatmap layer selected in the layer list becomes the one in use."""
        layer = event.value
        if layer is not None and is_heatmap_layer(layer) and layer is not self.layer:
            self.adopt(layer)

    def apply_display(self, *_: Any) -> None:
        """Class, colormap, opacity onto the layer in use (never recomputes)."""
        layer, heatmap = self.layer, self.heatmap
        if layer is None or heatmap is None or layer not in self.viewer.layers:
            return
        c = heatmap.class_index(self.class_name.value) if self.class_name.value else 0
        if c != layer.metadata.get(CLASS_META_KEY):
            layer.metadata = {**layer.metadata, CLASS_META_KEY: c}
            layer.name = f"{layer.name.rsplit(' ', 1)[0]} {heatmap.class_names[c]}"
        layer.colormap = self.colormap.value
        layer.opacity = float(self.opacity.value)
        self.refresh_layer()

    def refresh_layer(self, layer: Any = None, heatmap: Heatmap | None = None) -> None:
        """Show a heatmap's current values (after new batches) in its layer: ``layer`` and
        ``heatmap`` (a run's), else the one in use."""
        if layer is None:
            layer, heatmap = self.layer, self.heatmap
        if layer is not None and heatmap is not None and layer in self.viewer.layers:
            layer.data = heatmap.values[..., int(layer.metadata.get(CLASS_META_KEY, 0))]

    def values_at(self, grid: PatchGrid, level: int, row: int, col: int, slide_layer: Any) -> Any:
        """(class names, values) of patch (row, col) when the heatmap in use is of this grid and
        slide layer and has computed it; else None."""
        h = self.heatmap
        if h is None or h.grid != grid or h.level != level \
                or self.source_of(self.layer) is not slide_layer:
            return None
        v = h.values[row, col]
        return None if np.isnan(v).any() else (h.class_names, v)

    # --- export --------------------------------------------------------------------------------
    def export(self, *_: Any) -> dict[str, Path] | None:
        """Write the heatmap in use in the ticked formats; a failure goes to ``on_error``."""
        heatmap, layer = self.heatmap, self.layer
        formats = [f for f, box in self.export_formats.items() if box.value]
        if heatmap is None or layer is None:
            self.on_error("Nothing to export: run a model or select a heatmap layer first.")
            return None
        if not formats:
            self.on_error("Tick at least one export format.")
            return None
        source = self.source_of(layer)
        try:
            thumb = thumbnail(SlideLayer.from_layer(source)) \
                if "png" in formats and source is not None else None
            files = export_heatmap(
                heatmap, Path(self.export_folder.value), self.export_stem.value, formats,
                thumbnail=thumb, class_name=int(layer.metadata.get(CLASS_META_KEY, 0)),
                colormap=self.colormap.value, opacity=float(self.opacity.value),
                **self.class_rule(len(heatmap.class_names)),
            )
        except (OSError, ValueError) as exc:
            self.export_info.value = "export failed (nothing was lost)"
            self.on_error(f"Export failed: {exc}")
            return None
        self.export_info.value = f"exported {len(files)} files to {self.export_folder.value}"
        return files

    def class_rule(self, n_classes: int) -> dict[str, float | None]:
        """The field that applies to a heatmap of ``n_classes`` as an export_heatmap argument:
        ``positive_threshold`` (one class) or ``min_probability``; an empty field is None."""
        key = "positive_threshold" if n_classes == 1 else "min_probability"
        text = str(getattr(self, key).value).strip()
        try:
            return {key: float(text) if text else None}
        except ValueError:
            raise ValueError(f"the {CLASS_RULE_FIELDS[key]} {text!r} is not a number: type one "
                             "such as 0.5, or leave the field empty.") from None
