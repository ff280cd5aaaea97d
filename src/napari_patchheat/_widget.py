"""The PatchHeat dock widget: tune the patch grid live, inspect patches, run, watch, export.

With its helpers (``_slide_layer``: the slide behind a layer; ``_preview``: the grid preview;
``_inspector``: the patch inspector; ``_heatmap_panel``: heatmap layers, display and Export;
``_run_control``: Run, Cancel and the run's progress; ``_run_watch``: the run's messages) the
only code that talks to napari layers and Qt. TensorFlow never runs in this process: a run goes
to a spawned process (:func:`~napari_patchheat.runner.start_run`) and a QTimer on the GUI thread
takes its messages, fills a :class:`Heatmap` and refreshes its Image layer in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea

from ._heatmap_panel import HeatmapPanel, section
from ._inspector import PatchInspector, TextLabel
from ._preview import GridPreview
from ._run_control import RunControl
from ._slide_layer import (LayerCache, SlideLayer, is_slide_candidate, tissue_level_mask,
                           tissue_source)
from .grid import PatchGrid
from .heatmap import Heatmap
from .models import BUILTIN_CLASSES, BUILTIN_DESCRIPTIONS, BUILTIN_MODELS, find_card
from .tissue import choose_mask_level, grid_tissue_fraction

if TYPE_CHECKING:
    import napari

MODEL_FILE_CHOICE = "Keras file…"
DEFAULT_SIZE_PX = 224
TISSUE_SHOWN_FRACTION = 0.5  # with threshold 0, "x% tissue" counts patches at least this full
TISSUE_STATUS_MAX_PATCHES = 4_000_000  # above this the status line skips the tissue estimate
DOCK_MIN_WIDTH_PX = 460  # fits TEXT_WRAP_CHARS characters of label text


def grid_status(grid: PatchGrid, tissue: np.ndarray | None, threshold: float) -> str:
    """'412 x 388 = 159,856 patches, 41% tissue, 65,541 to run' (tissue: per-patch fraction)."""
    text = f"{grid.rows:,} x {grid.cols:,} = {grid.n_patches:,} patches"
    if tissue is None:
        return text
    keep = tissue >= (threshold if threshold > 0 else TISSUE_SHOWN_FRACTION)
    text += f", {keep.mean():.0%} tissue"
    return text + (f", {int(keep.sum()):,} to run" if threshold > 0 else "")


def _of_run(name: str) -> property:
    """A widget property that reads and sets ``widget.run_control.<name>``."""
    return property(lambda self: getattr(self.run_control, name),
                    lambda self, value: setattr(self.run_control, name, value))


class PatchHeatWidget(Container):
    """The dock widget. Its parts are attributes; tests set values and call handlers directly."""

    run_handle = _of_run("handle")  # the run's process (a RunWatcher) until it ended, else None
    _run = _of_run("context")  # what the last run's messages need
    running = _of_run("running")  # True from Run until the run's process has ended

    def __init__(self, viewer: napari.viewer.Viewer):
        # napari hands plugin widgets a PublicOnlyProxy whose attributes are new proxies at each
        # access; layer identity matters here (which heatmap lies over which slide layer), so
        # work on the viewer itself (through its public API only)
        viewer = getattr(viewer, "__wrapped__", viewer)
        self.viewer = viewer
        self.cache_dir: str | None = None  # None: the runner's default cache
        self.slide: SlideLayer | None = None
        self.grid: PatchGrid | None = None
        self.grid_error = ""  # why there is no grid, for the status line
        # per slide layer and its data: ("mask", ...) -> (mask, ds), None or "pending";
        # "fraction" -> (key, per-patch tissue fraction); ("tiff", level) -> Path
        self._cache = LayerCache()
        self._watched: Any = None  # the slide layer whose data events we follow
        self._workers: set[Any] = set()
        self._closed = False

        # --- parameters
        self.image_layer = ComboBox(label="image", choices=self._slide_choices)
        self.level = ComboBox(label="level", choices=self._level_choices)
        self.size = SpinBox(label="patch size", min=1, max=16384, value=DEFAULT_SIZE_PX)
        self.stride = SpinBox(label="stride", min=1, max=16384, value=DEFAULT_SIZE_PX)
        self.rate = SpinBox(label="rate", min=1, max=256, value=1)
        self.padding = ComboBox(label="padding", choices=["VALID", "SAME"], value="VALID")
        self.model = ComboBox(label="model", choices=[*BUILTIN_MODELS, MODEL_FILE_CHOICE])
        self.model_file = FileEdit(label="model file", mode="r", filter="*.keras *.h5",
                                   visible=False)
        self.model_info = TextLabel()
        self.resize = CheckBox(text="resize patches to the model's input size", value=False)
        self.mixed_precision = CheckBox(text="mixed precision (float16, for GPUs)", value=False,
                                        visible=False)
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=32)
        self.tissue_threshold = FloatSpinBox(label="tissue threshold", min=0.0, max=1.0,
                                             step=0.05, value=0.0)
        self.status = TextLabel()
        self.show_grid = CheckBox(text="show the patch grid", value=True)
        self.preview_info = TextLabel()
        # --- run (its parts are attributes here too)
        r = self.run_control = RunControl(self, self._cache, self._workers, self._error)
        self.replace, self.run_button, self.cancel_button, self.progress, self.run_info = \
            r.replace, r.run_button, r.cancel_button, r.progress, r.info
        self.run, self.cancel, self.run_spec, self.poll = r.run, r.cancel, r.spec, r.poll
        self.handle_messages, self._run_context = r.handle_messages, r.new_context
        # --- display and export of the heatmap in use (its parts are attributes here too)
        d = self.display = HeatmapPanel(viewer, self._error, self._on_heatmap_changed)
        self.class_name, self.colormap, self.opacity = d.class_name, d.colormap, d.opacity
        self.export_formats, self.export_folder = d.export_formats, d.export_folder
        self.export_stem, self.export_button, self.export_info = \
            d.export_stem, d.export_button, d.export_info
        self.show_heatmap, self.export = d.show, d.export

        self.inspector = PatchInspector(viewer, self._inspect_source, self._patch_values)
        self.preview = GridPreview(viewer, self._preview_source)
        self.preview.redrawn.append(self._after_preview)
        self.body = Container(labels=False, widgets=[
            section("Grid"),
            Container(widgets=[self.image_layer, self.level, self.size, self.stride, self.rate,
                               self.padding]),
            self.status, self.show_grid, self.preview_info,
            section("Model"),
            Container(widgets=[self.model, self.model_file, self.batch_size,
                               self.tissue_threshold]),
            self.model_info, self.resize, self.mixed_precision,
            section("Run"),
            r.buttons, self.replace, self.progress, self.run_info,
            self.display,
            section("Patch inspector"),
            self.inspector,
        ])
        # napari docks ``self.native``: scroll the body inside it, as wide as its widest line
        super().__init__(labels=False)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(self.body.native)
        scroll.setMinimumWidth(max(DOCK_MIN_WIDTH_PX, self.body.native.minimumSizeHint().width()
                                   + scroll.verticalScrollBar().sizeHint().width()))
        self.native.layout().addWidget(scroll)
        self.native.layout().setContentsMargins(0, 0, 0, 0)

        for w in (self.size, self.stride, self.rate, self.padding, self.level,
                  self.tissue_threshold, self.model, self.model_file, self.resize):
            w.changed.connect(self._on_params)
        self.image_layer.changed.connect(self._on_layer)
        self.show_grid.changed.connect(self._on_show_grid)
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        viewer.layers.selection.events.active.connect(self.display.on_active)
        self.native.destroyed.connect(self._shutdown)
        self._on_layer()

    # --- choices ---------------------------------------------------------------------------------
    def _slide_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self.viewer.layers if is_slide_candidate(layer)]

    def _level_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        if self.slide is None:
            return []
        return [(self.slide.level_label(i), i) for i in range(len(self.slide.levels))]

    def _on_layers_changed(self, *_: Any) -> None:
        current = self.image_layer.value
        self.image_layer.reset_choices()
        if current is not None and current not in self.viewer.layers:
            self._on_layer()
        elif current is None and self.image_layer.value is not None:
            self._on_layer()

    def _on_layer(self, *_: Any) -> None:
        """A slide layer was chosen (or its data replaced): read its pyramid, list its levels."""
        layer = self.image_layer.value
        self._watch(layer)
        self.slide = SlideLayer.from_layer(layer) if layer is not None else None
        self.level.reset_choices()
        self._on_params()

    def _watch(self, layer: Any) -> None:
        """Follow ``layer.data = ...`` on the chosen slide layer (its pyramid is read again)."""
        if layer is self._watched:
            return
        if self._watched is not None:
            self._watched.events.data.disconnect(self._on_layer)
        self._watched = layer
        if layer is not None:
            layer.events.data.connect(self._on_layer)

    def _mask_key(self) -> tuple[Any, int, tuple[Any, ...], Any] | None:
        """(tissue source, grid level in it, mask key, slide layer) of the current parameters:
        the mask the run reads (see tissue_source); None without a grid."""
        if self.slide is None or self.grid is None:
            return None
        source, level = tissue_source(self.slide, self.level.value)
        mask_level = choose_mask_level(source, self.grid, source.downsamples[level])
        origin = "file" if self.slide.path is not None else ("level", self.level.value)
        return source, level, ("mask", origin, mask_level), self.slide.layer

    def _start_tissue_mask(self, source: Any, key: tuple[Any, ...], layer: Any) -> None:
        from napari.qt.threading import create_worker

        self._cache.set(layer, key, "pending")
        data = layer.data
        worker = create_worker(tissue_level_mask, source, key[-1])
        self._workers.add(worker)  # a worker must outlive its thread

        def store(result: Any) -> None:
            if layer.data is data:  # else the layer's pixels were replaced meanwhile
                self._cache.set(layer, key, result)
            if not self._closed:
                self._on_params()

        worker.returned.connect(store)
        worker.errored.connect(lambda exc: store(None))
        worker.finished.connect(lambda: self._workers.discard(worker))
        worker.start()

    @property
    def tissue_ready(self) -> bool:
        """True once the tissue mask of the current parameters is known (or known impossible)."""
        k = self._mask_key()
        if k is None or self.grid is None:
            return False
        if self.grid.n_patches > TISSUE_STATUS_MAX_PATCHES:  # not estimated
            return True
        return not isinstance(self._cache.get(k[3], k[2], "missing"), str)  # not "pending"

    # --- parameters -> grid, status, preview, inspector ------------------------------------------
    def model_spec(self) -> str:
        """The model as the runner takes it: a built-in name or a file path ('' if none chosen)."""
        if self.model.value != MODEL_FILE_CHOICE:
            return str(self.model.value)
        path = Path(self.model_file.value)
        return str(path) if str(self.model_file.value) not in ("", ".") and path.exists() else ""

    def _model_text(self) -> tuple[str, str]:
        """(classes line, warning for the status line)."""
        name = self.model.value
        if name != MODEL_FILE_CHOICE:
            return f"{', '.join(BUILTIN_CLASSES[name])}: {BUILTIN_DESCRIPTIONS[name]}", ""
        spec = self.model_spec()
        if not spec:
            return "choose a Keras model file (.keras, .h5)", "choose a model file"
        try:
            card = find_card(Path(spec))
        except ValueError as exc:
            return str(exc), "the model card is invalid"
        text = ", ".join(card.class_names) if card.class_names else "from the model (no card)"
        warn = ""
        if card.input_size and card.input_size != (self.size.value, self.size.value) \
                and not self.resize.value:
            warn = (f"the model takes {card.input_size[0]} x {card.input_size[1]} px patches: "
                    "set the patch size or tick resize")
        return text, warn

    def _on_params(self, *_: Any) -> None:
        """Any parameter changed: new grid, status line, preview (debounced), inspector."""
        self.model_file.visible = self.model.value == MODEL_FILE_CHOICE
        self.mixed_precision.visible = self.model_file.visible  # built-ins compute in float32
        self.model_info.value, warn = self._model_text()
        self.grid, self.grid_error = None, "Open a slide (an image layer) to start."
        if self.slide is not None and self.level.value is not None:
            h, w = self.slide.level_shape(self.level.value)
            try:
                self.grid = PatchGrid(h, w, self.size.value, self.stride.value, self.rate.value,
                                      self.padding.value)
            except ValueError as exc:
                self.grid_error = str(exc)
            else:
                self.grid_error = ""
        if self.grid is None:
            self.status.value = self.grid_error
        else:
            line = grid_status(self.grid, self._tissue_fraction(), self.tissue_threshold.value)
            self.status.value = f"{line}; {warn}" if warn else line
        self.preview.schedule()
        self.inspector.refresh()

    def _tissue_fraction(self) -> np.ndarray | None:
        """Per-patch tissue fraction of the current grid as the run computes it
        (:func:`~napari_patchheat.tissue.patch_tissue_fraction`); None until its mask is read
        (on a worker thread) or where it is not estimated."""
        k = self._mask_key()
        if k is None or self.grid is None or self.grid.n_patches > TISSUE_STATUS_MAX_PATCHES:
            return None
        source, level, key, layer = k
        mask = self._cache.get(layer, key, "missing")
        if isinstance(mask, str) and mask == "missing":
            self._start_tissue_mask(source, key, layer)
            return None
        if not isinstance(mask, tuple):
            return None
        ds = source.downsamples[level]
        cached = self._cache.get(layer, "fraction")
        if cached is not None and cached[0] == (key, self.grid, ds):
            return cached[1]
        fraction = grid_tissue_fraction(mask[0], mask[1], self.grid, ds)
        self._cache.set(layer, "fraction", ((key, self.grid, ds), fraction))
        return fraction

    def downsample(self) -> tuple[float, float]:
        """(y, x) level-0 pixels per pixel of the chosen level."""
        assert self.slide is not None and self.level.value is not None
        return self.slide.downsamples[self.level.value]

    def _preview_source(self) -> Any:
        if self.grid is None or self.slide is None:
            return None
        return self.grid, self.downsample(), self.slide

    def _inspect_source(self) -> Any:
        if self.grid is None or self.slide is None:
            return None
        return self.grid, self.downsample(), self.slide, self.level.value

    def _patch_values(self, grid: PatchGrid, level: int, row: int, col: int) -> Any:
        return self.display.values_at(grid, level, row, col, getattr(self.slide, "layer", None))

    @property
    def heatmap(self) -> Heatmap | None:
        """The heatmap in use (the last run's, or the heatmap layer selected)."""
        return self.display.heatmap

    @property
    def heatmap_layer(self) -> Any:
        """The layer of the heatmap in use."""
        return self.display.layer

    def _on_heatmap_changed(self) -> None:
        self.inspector.update_values()

    def _on_show_grid(self, *_: Any) -> None:
        self.preview.enabled = bool(self.show_grid.value)
        self.preview.update_now()

    def _after_preview(self) -> None:
        self.preview_info.value = self.preview.message
        self.inspector.update_highlight_width()

    # --- errors and teardown ---------------------------------------------------------------------
    def _error(self, message: str) -> None:
        self.status.value = message
        show_error(f"PatchHeat: {message}")

    def _shutdown(self, *_: Any) -> None:
        """The dock widget is gone: end the run, drop the preview and the outline."""
        self._closed = True
        self.run_control.shutdown()
        self.viewer.layers.events.inserted.disconnect(self._on_layers_changed)
        self.viewer.layers.events.removed.disconnect(self._on_layers_changed)
        self.viewer.layers.selection.events.active.disconnect(self.display.on_active)
        self._watch(None)
        try:
            self.preview.remove()
            self.inspector.remove()
        except (RuntimeError, ValueError, KeyError):  # the viewer is closing as well
            pass
