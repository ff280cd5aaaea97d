"""The heatmap side of the dock widget: the heatmap layers, how one is shown, and its Export.

A heatmap layer is an Image layer made from :meth:`Heatmap.layer_kwargs` (placed per the
coordinate contract, contrast limits 0..1, NaN transparent) and shifted by the slide layer's
own translate. A new one goes right above its slide and the heatmaps over it, and is named
``model · slide`` (``· class`` for models of several classes, ``(n)`` for the n-th such layer).
The top visible map (a heatmap or an overlap mean) shows napari's colour bar and a legend (its
class, value range and threshold) on the canvas (:mod:`.legend`); a run inside a region of
interest has a layer of its own (:mod:`.run_layers`). Class, colormap, opacity, value range and
"show at or above" (``display_range``) change the layer only, never the values. Export writes a
copy of the heatmap with :func:`~napari_patchheat.export.export_heatmap` on a worker thread;
its positive threshold (one-output heatmaps) or minimum probability (several classes) classify
GeoJSON tiles.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    LineEdit,
    ProgressBar,
    PushButton,
)
from napari.utils.notifications import show_info

from ..export import FORMATS, ClassRule, export_heatmap
from ..files import safe_name
from ..grid import PatchGrid, as_numpy
from ..heatmap import CLASS_META_KEY, HEATMAP_META_KEY, Heatmap
from ..slide.location import same_file_key
from ..test_time import n_predicted
from .display_range import ValueDisplay
from .display_settings import (
    DISPLAY_EXTRA_KEY,
    colormap_name,
    display_record,
    threshold_of,
)
from .legend import Legend
from .run_layers import region_of, run_title, same_run
from .slide_layer import SlideLayer, is_heatmap_layer, is_slide_candidate
from .threads import Workers
from .widgets import TextLabel, path_of, section

COLORMAPS = ("inferno", "viridis", "magma", "plasma", "turbo", "red", "gray")
DEFAULT_OPACITY = 0.6
THUMBNAIL_PX = 2000  # long side of the slide thumbnail the PNG export is blended over
FORMAT_LABELS = {"ometiff": "OME-TIFF", "omezarr": "OME-Zarr", "slide_raster": "slide-aligned TIFF",
                 "png": "PNG overlay", "csv": "CSV", "csv_wsinfer": "CSV (WSInfer columns)",
                 "geojson": "GeoJSON (QuPath)"}
# heatmap.extra keys of the GeoJSON classification (export.ClassRule) and their field labels
CLASS_RULE_FIELDS = {"positive_threshold": "positive threshold",
                     "min_probability": "minimum probability"}
TITLE_META_KEY = "patchheat_title"  # layer metadata: (model · slide, run number) of its name


def thumbnail(slide: SlideLayer) -> np.ndarray:
    """The whole slide at about THUMBNAIL_PX on its long side, from the level Slide.thumbnail
    uses (every k-th pixel: layers may hold any dtype; the PNG export resizes it)."""
    from ..slide import thumbnail_level

    level = thumbnail_level([slide.level_shape(i) for i in range(len(slide.levels))],
                            THUMBNAIL_PX)
    k = max(1, max(slide.level_shape(level)) // THUMBNAIL_PX)
    return as_numpy(slide.levels[level][::k, ::k])


def write_export(heatmap: Heatmap, folder: Path, stem: str, formats: list[str],
                 slide: SlideLayer | None,
                 **options: Any) -> Generator[str, None, dict[str, Path]]:
    """Write ``heatmap`` in ``formats`` to ``folder``, one format after another, yielding each
    format's name before it is written; return the files (a worker thread's job: the PNG's
    slide thumbnail is read here too). ``options`` go to export_heatmap."""
    files: dict[str, Path] = {}
    for fmt in formats:
        yield fmt
        thumb = thumbnail(slide) if slide is not None and fmt == "png" else None
        files.update(export_heatmap(heatmap, folder, stem, [fmt], thumbnail=thumb, **options))
    return files


class HeatmapPanel(Container):
    """Class, colormap, opacity and Export of the heatmap in use (``heatmap``, ``layer``).

    ``on_error(message)`` reports a failure; ``on_change()`` runs when another heatmap is in
    use or its values changed (the inspector shows predictions from it). Exports run on
    ``workers``; ``exporting`` is True meanwhile and ``exported`` holds the last one's files.
    """

    def __init__(self, viewer: Any, workers: Workers, on_error: Callable[[str], None],
                 on_change: Callable[[], None]):
        self.viewer, self.workers = viewer, workers
        self.on_error, self.on_change = on_error, on_change
        self.heatmap: Heatmap | None = None
        self.layer: Any = None
        self.exporting = False
        self.exported: dict[str, Path] | None = None
        self._closed = False
        # heatmap layer -> weak reference to the slide layer under it (neither kept alive here)
        self._sources: weakref.WeakKeyDictionary[Any, weakref.ref[Any]] = \
            weakref.WeakKeyDictionary()
        # choices from the heatmap in use: napari resets the dock's choices as layers change
        self.class_name = ComboBox(label="class", choices=self._class_choices)
        self.colormap = ComboBox(label="colormap", choices=list(COLORMAPS), value=COLORMAPS[0])
        self.opacity = FloatSlider(label="opacity", min=0.0, max=1.0, value=DEFAULT_OPACITY)
        self.legend = Legend(viewer)  # of the top visible map, not the heatmap in use
        # value range, "show at or above"
        self.values = ValueDisplay(self._update_legend, viewer, (self.legend.overlay,))
        self.export_formats = {f: CheckBox(text=FORMAT_LABELS.get(f, f), value=True)
                               for f in FORMATS}
        self.export_folder = FileEdit(label="folder", mode=FileDialogMode.EXISTING_DIRECTORY,
                                      value=Path.home() / "patchheat-export")
        self.export_stem = LineEdit(label="file stem", value="heatmap")
        self.positive_threshold = LineEdit(
            label="positive threshold", tooltip="GeoJSON of a one-output model: tiles whose "
            "value is at or above this are classified; empty: no tile is classified")
        self.min_probability = LineEdit(
            label="min probability", tooltip="GeoJSON of a multi-class model: tiles whose top "
            "class is below this are unclassified; empty: every tile gets its top class")
        self.export_button = PushButton(text="Export", enabled=False)
        self.export_busy = ProgressBar(min=0, max=1, visible=False)  # formats written
        self.export_info = TextLabel()
        formats = Container(widgets=list(self.export_formats.values()), labels=False,
                            label="formats")
        super().__init__(labels=False, widgets=[
            section("Display"), Container(widgets=[self.class_name, self.colormap, self.opacity,
                                                  *self.values.widgets]),
            section("Export"), Container(widgets=[formats, self.export_folder, self.export_stem,
                                                  self.positive_threshold, self.min_probability]),
            self.export_button, self.export_busy, self.export_info,
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
                if path is not None and same_file_key(path) == same_file_key(slide_path):
                    self._sources[layer] = weakref.ref(other)
                    return other
        return source

    def _matching_layer(self, heatmap: Heatmap, slide: SlideLayer) -> Any:
        for layer in self.viewer.layers:
            other = layer.metadata.get(HEATMAP_META_KEY) if is_heatmap_layer(layer) else None
            if other is not None and self.source_of(layer) is slide.layer \
                    and same_run(other, heatmap):
                return layer
        return None

    def show_heatmap(self, heatmap: Heatmap, slide: SlideLayer, replace: bool = False) -> Any:
        """Show ``heatmap`` over ``slide``: in the layer of the same slide, grid, model and region
        (values merged, so nothing computed is lost; a region's come from the shared cache),
        else in the layer in use of the same region (``replace``), else in a new layer right
        above the slide and its heatmaps; a heatmap of another grid or region never lands in a
        layer of this one unasked. The layer is shown (made visible)."""
        layer = self._matching_layer(heatmap, slide)
        if layer is not None and not region_of(heatmap):
            old = layer.metadata[HEATMAP_META_KEY].values
            keep = np.isnan(heatmap.values) & ~np.isnan(old)
            heatmap.values[keep] = old[keep]
        elif layer is None and replace and self.layer is not None \
                and self.layer in self.viewer.layers and self.heatmap is not None \
                and region_of(self.heatmap) == region_of(heatmap):
            layer = self.layer
        names = heatmap.class_names
        c = names.index(self.class_name.value) if self.class_name.value in names else 0
        kw = heatmap.layer_kwargs(c, slide.world_per_px, self.colormap.value, self.opacity.value)
        kw["translate"] = tuple(np.add(kw["translate"], slide.world_offset))
        base = run_title(heatmap, slide.path.name if slide.path else slide.name)
        title = layer.metadata.get(TITLE_META_KEY) if layer is not None else None
        if title is None or title[0] != base:
            title = (base, self._next_run(base, layer))
        kw["metadata"][TITLE_META_KEY] = title
        kw["name"] = heatmap.layer_name(c, *title)
        if layer is None:
            layer = self.viewer.add_image(**kw, **slide.unit_kwargs())
            self._place(layer, slide.layer)
        else:
            layer.metadata = {**layer.metadata, **kw.pop("metadata")}
            layer.data, layer.scale, layer.translate = kw["data"], kw["scale"], kw["translate"]
            layer.name, layer.visible = kw["name"], True
        slide.match_units(layer)
        self._sources[layer] = weakref.ref(slide.layer)
        self.adopt(layer)
        return layer

    def _next_run(self, base: str, layer: Any) -> int:
        """1 + the highest run number of the heatmap layers named ``base`` (other than
        ``layer``); 1 when there is none."""
        runs = [other.metadata[TITLE_META_KEY][1] for other in self.viewer.layers
                if other is not layer and other.metadata.get(TITLE_META_KEY, ("",))[0] == base]
        return max(runs, default=0) + 1

    def _place(self, layer: Any, slide_layer: Any) -> None:
        """Move a new heatmap layer right above the highest of its slide layer and the heatmaps
        over that slide: a new run is never hidden under an earlier one."""
        layers = self.viewer.layers
        below = [i for i, other in enumerate(layers) if other is not layer and (
            other is slide_layer or (is_heatmap_layer(other)
                                     and self.source_of(other) is slide_layer))]
        if below:
            layers.move(layers.index(layer), max(below) + 1)

    def adopt(self, layer: Any) -> None:
        """Make ``layer`` the heatmap that class, colormap, opacity and Export apply to."""
        heatmap = layer.metadata[HEATMAP_META_KEY]
        self.layer, self.heatmap = layer, heatmap
        c = int(layer.metadata.get(CLASS_META_KEY, 0))
        with self.class_name.changed.blocked(), self.colormap.changed.blocked(), \
                self.opacity.changed.blocked():
            self.class_name.reset_choices()
            self.class_name.value = heatmap.class_names[c]
            if colormap_name(layer) in COLORMAPS:
                self.colormap.value = colormap_name(layer)
            self.opacity.value = float(layer.opacity)
        self.values.show(layer)
        self.export_stem.value = safe_name(self._file_title(layer))
        one_output = n_predicted(heatmap.class_names) == 1  # sd channels are no classes
        self.positive_threshold.visible, self.min_probability.visible = one_output, not one_output
        for key in CLASS_RULE_FIELDS:  # a threshold the heatmap records (model card, CLI)
            if heatmap.extra.get(key) is not None:
                getattr(self, key).value = repr(float(heatmap.extra[key]))
        self.export_button.enabled = not self.exporting
        self._update_legend()
        self.on_change()

    def _class_choices(self, _widget: Any = None) -> list[str]:
        return list(self.heatmap.class_names) if self.heatmap is not None else []

    def _file_title(self, layer: Any) -> str:
        """The layer's name without its class: 'dab · CMU-1 (2)', also for layers named
        elsewhere (a heatmap read back from a file: its model and slide file)."""
        heatmap = layer.metadata[HEATMAP_META_KEY]
        base, run = layer.metadata.get(TITLE_META_KEY) or (
            heatmap.title(), 1)
        return base if run == 1 else f"{base} ({run})"

    def _update_legend(self, *_: Any) -> None:
        """The legend and colour bar: of the top visible map (:class:`.legend.Legend`)."""
        self.legend.update()

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
            title = layer.metadata.get(TITLE_META_KEY)
            if title is not None:  # named here (a layer read from a file keeps its name)
                layer.name = heatmap.layer_name(c, *title)
        self.values.set_colormap(self.colormap.value)
        layer.opacity = float(self.opacity.value)
        self.refresh_layer()
        self._update_legend()

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
    def export(self, *_: Any) -> bool:
        """Start writing the heatmap in use, as it is now, in the ticked formats on a worker
        thread; False (and ``on_error``) when it cannot start. A failure goes to ``on_error``."""
        heatmap, layer = self.heatmap, self.layer
        formats = [f for f, box in self.export_formats.items() if box.value]
        if self.exporting:
            self.on_error("An export is still running: wait for it to finish.")
            return False
        if heatmap is None or layer is None:
            self.on_error("Nothing to export: run a model or select a heatmap layer first.")
            return False
        if not formats:
            self.on_error("Tick at least one export format.")
            return False
        try:
            rule = self.class_rule(heatmap.class_names)
        except ValueError as exc:
            self.on_error(f"Export failed: {exc}")
            return False
        source = self.source_of(layer)
        folder = path_of(self.export_folder)
        as_now = dataclasses.replace(  # runs may fill it meanwhile; the file keeps the display
            heatmap, values=heatmap.values.copy(),
            extra={**heatmap.extra, DISPLAY_EXTRA_KEY: display_record(layer)})
        job = functools.partial(
            write_export, as_now, folder, str(self.export_stem.value), formats,
            SlideLayer.from_layer(source) if source is not None else None,
            class_name=int(layer.metadata.get(CLASS_META_KEY, 0)),
            colormap=self.colormap.value, opacity=float(self.opacity.value),
            value_range=tuple(float(v) for v in layer.contrast_limits),
            show_at_or_above=threshold_of(layer),
            positive_threshold=rule.positive_threshold, min_probability=rule.min_probability)
        self.exported = None
        self.export_busy.max, self.export_busy.value = len(formats), 0
        self._set_exporting(True, f"exporting to {folder}…")
        self.workers.start(job, returned=functools.partial(self._exported, folder),
                           errored=self._export_failed,
                           yielded=functools.partial(self._exporting, formats, folder))
        return True

    def _exporting(self, formats: list[str], folder: Path, fmt: str) -> None:
        """Progress: ``fmt`` is being written, the formats before it are done."""
        if self._closed or not self.exporting:
            return
        done = formats.index(fmt)
        self.export_busy.value = done
        self.export_info.value = (f"exporting {FORMAT_LABELS.get(fmt, fmt)} ({done + 1} of "
                                  f"{len(formats)}) to {folder}…")

    def _set_exporting(self, running: bool, text: str) -> None:
        self.exporting = running
        self.export_button.enabled = not running and self.heatmap is not None
        self.export_busy.visible = running
        self.export_info.value = text

    def _exported(self, folder: Path, files: dict[str, Path]) -> None:
        self.exported, self.exporting = files, False
        if self._closed:
            return
        self._set_exporting(False, f"exported {len(files)} files to {folder}")
        show_info(f"PatchHeat: exported {len(files)} files to {folder}")

    def _export_failed(self, exc: Exception) -> None:
        self.exported, self.exporting = None, False
        if self._closed:
            return
        self._set_exporting(False, "export failed (nothing was lost)")
        self.on_error(f"Export failed: {exc}")

    def class_rule(self, class_names: tuple[str, ...]) -> ClassRule:
        """The export.ClassRule of a heatmap of ``class_names`` from the field that applies to
        it: ``positive_threshold`` (one class) or ``min_probability``; an empty field is none."""
        key = "positive_threshold" if n_predicted(class_names) == 1 else "min_probability"
        text = str(getattr(self, key).value).strip()
        try:
            value = float(text) if text else None
        except ValueError:
            raise ValueError(f"the {CLASS_RULE_FIELDS[key]} {text!r} is not a number: type one "
                             "such as 0.5, or leave the field empty.") from None
        return ClassRule(class_names, **{key: value})

    def shutdown(self) -> None:
        """The dock is gone: drop the legend and stop following the viewer (an export still
        running finishes its files, and says nothing). Safe to call again."""
        if self._closed:
            return
        self._closed = True
        self.legend.shutdown()
