"""The PatchHeat dock widget: tune the patch grid live, inspect patches, run, watch, export.

It holds the grid and model parameters and composes its panels (run, display and export, batch,
inspector, preview, regions, ...), each an interface of data and callbacks. TensorFlow never
runs in this process: a run goes to a spawned process whose messages fill a :class:`Heatmap`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.types import FileDialogMode
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QApplication

from ..grid import FloatPair, PatchGrid
from ..heatmap import Heatmap
from ..models import BUILTIN_CLASSES, BUILTIN_DESCRIPTIONS, BUILTIN_MODELS, find_card, is_builtin
from ..options import DEFAULT_BATCH_SIZE, INTERACTIVE_TISSUE_THRESHOLD, MODEL_INPUT, RunOptions
from ..tissue import FLUORESCENCE_MODEL_WARNING, grid_status
from .batch_panel import BatchPanel
from .build_status import BuildStatus
from .color_controls import ColorControls
from .compare_panel import ComparePanel
from .dock_layout import scrolled_column
from .heatmap_panel import HeatmapPanel
from .hover import HoverStatus
from .inspector import PatchInspector
from .model_input import ModelInputPanel
from .overlap_panel import OverlapPanel
from .placement import follow_new_slides
from .preview import GridPreview
from .roi_panel import RegionChoice, RegionsPanel
from .run_panel import RunPanel, RunRequest
from .session_panel import SessionPanel
from .shortcuts import dock_shortcuts
from .slide_arrival import SlideArrival
from .slide_layer import LayerCache, SlideLayer, is_slide_candidate
from .stain_preview import StainPreview
from .threads import Workers
from .tissue_estimate import TissueEstimate
from .warmup import DEFAULT_SIZE_PX
from .widgets import TextLabel, path_of, run_all

if TYPE_CHECKING:
    import napari

MODEL_FILE_CHOICE = "Keras file…"
DOCK_MIN_WIDTH_PX = 460  # fits TEXT_WRAP_CHARS characters of label text
DOCK_MAX_HEIGHT_PX = 900  # the dock's sections, as they first open, fit a laptop's screen
FORM_MARGINS_PX = (9, 3, 9, 3)  # left, top, right, bottom of the Grid's and Model's forms
DISPLAY_SECTION, INSPECTOR_SECTION = "Display and export", "Patch inspector"
REGIONS_SECTION, OVERLAP_SECTION = "Regions and numbers", "Smoother map"
BATCH_SECTION = "All open slides"  # closed; shown while slides read from files are open
NO_SLIDE = "Open a slide (an image layer) to start."


class PatchHeatWidget(Container):
    """The dock widget. Its parts are attributes; tests set values and call handlers directly."""

    def __init__(self, viewer: napari.viewer.Viewer):
        # napari hands plugin widgets a PublicOnlyProxy whose attributes are new proxies at each
        # access; layer identity matters here (which heatmap lies over which slide layer), so
        # work on the viewer itself (through its public API only)
        viewer = getattr(viewer, "__wrapped__", viewer)
        self.viewer = viewer
        self.cache_dir: str | None = None  # None: the runner's default cache
        self.slide: SlideLayer | None = None
        self.grid: PatchGrid | None = None
        self.grid_error = NO_SLIDE  # why there is no grid, for the status line
        self.workers = Workers()
        self._layer_cache = LayerCache()  # masks and temporary TIFFs per slide layer and data
        self._watched: Any = None  # the slide layer whose data events we follow
        self._opened_for: Any = None  # the heatmap layer the display section was opened for
        self._inspected: tuple[int, int] | None = None  # the patch the inspector was opened on
        self._closed = False
        self._error_shown = False  # the status line shows an error (kept until a change)
        self._build_parameters()
        self._build_panels()
        self._lay_out()
        self._connect()
        self._on_layer()
        self.sessions.attach()  # a session opened before the dock gives it its parameters

    # --- build, lay out, connect -----------------------------------------------------------------
    def _build_parameters(self) -> None:
        self.image_layer = ComboBox(label="image", choices=self._slide_choices)
        self.level = ComboBox(label="level", choices=self._level_choices)
        self.size = SpinBox(label="patch size", min=1, max=16384, value=DEFAULT_SIZE_PX)
        self.stride = SpinBox(label="stride", min=1, max=16384, value=DEFAULT_SIZE_PX)
        self.rate = SpinBox(label="rate", min=1, max=256, value=1)
        self.padding = ComboBox(label="padding", choices=["VALID", "SAME"], value="VALID")
        self.model = ComboBox(label="model", choices=[*BUILTIN_MODELS, MODEL_FILE_CHOICE])
        self.model_file = FileEdit(label="model file", mode=FileDialogMode.EXISTING_FILE,
                                   filter="*.keras *.h5", visible=False)
        self.model_info = TextLabel()
        self.resize = CheckBox(text="resize patches to the model's input size", value=False)
        self.mixed_precision = CheckBox(text="mixed precision (float16, for GPUs)", value=False,
                                        visible=False)
        self.batch_auto = CheckBox(text="auto", value=True, tooltip="patches per model call "
                                   "chosen from the measured cost of the model and of reading")
        self.batch_size = SpinBox(min=1, max=4096, value=DEFAULT_BATCH_SIZE, enabled=False)
        self.tissue_threshold = FloatSpinBox(label="tissue threshold", min=0.0, max=1.0,
                                             step=0.05, value=INTERACTIVE_TISSUE_THRESHOLD)
        self.status = TextLabel()
        self.build_status = BuildStatus()  # a huge slide's zoomed-out views being built
        self.show_grid = CheckBox(text="show the patch grid", value=True)
        self.colors = ColorControls(self._error)  # show in sRGB; the model's input colours
        self.preview_info = TextLabel()
        self.region = RegionChoice(self.viewer, self._on_params)
        self.inside: Any = None  # bool (rows, cols): the grid's patches inside the region

    def _build_panels(self) -> None:
        viewer = self.viewer
        self.tissue = TissueEstimate(self._layer_cache, self.workers, self._on_tissue_ready)
        self.run_panel = RunPanel(self._layer_cache, self.workers, self.run_request,
                                  self._show_run_heatmap, self._on_batch, self._error, viewer)
        self.display = HeatmapPanel(viewer, self.workers, self._error, self._on_heatmap_changed)
        self.batch_panel = BatchPanel(viewer, self.workers, self.run_request,
                                      self._show_run_heatmap, self._error)
        self.model_input = ModelInputPanel()
        stain = StainPreview(self.workers, self.model_input.run_fields, self._card_spec,
                             lambda: None if self._closed else self.inspector.redraw())
        self.inspector = PatchInspector(viewer, self._inspect_source, self._patch_values,
                                        self.display.source_of, stain)
        self.hover = HoverStatus(viewer, lambda c: self.tissue.below_threshold(self.slide, c))
        self.arrival = SlideArrival(viewer)  # scale bar on, napari's own reader's hint
        self.preview = GridPreview(viewer, self._preview_source)
        self.preview.redrawn.append(self._after_preview)
        self.regions = RegionsPanel(viewer, self._regions_source, self._roi, self._error,
                                    self._export_destination)
        self.overlap = OverlapPanel(viewer, self._regions_source, self._error)
        self.compare = ComparePanel(viewer, self.display.source_of, self._error)
        self.sessions = SessionPanel(viewer, self, self._error)

    def _lay_out(self) -> None:
        """The session buttons, then collapsible sections in one scrolled column
        (dock_layout.py): Grid, Model and Run open, the others closed until there is a heatmap
        or a selected patch (so the dock fits DOCK_MAX_HEIGHT_PX). napari docks ``self.native``,
        and a magicgui scrollable Container's ``native`` lacks the scroll area: made here."""
        grid_form = Container(widgets=[self.image_layer, self.level, self.size, self.stride,
                                       self.rate, self.padding])
        batch_row: list[Any] = [self.batch_auto, self.batch_size]
        batch = Container(widgets=batch_row, layout="horizontal", labels=False,
                          label="batch size")
        model_form = Container(widgets=[self.model, self.model_file, batch,
                                        self.tissue_threshold, self.colors.model_input])
        for form in (grid_form, model_form):  # a form's rows need no room above and below
            form.native.layout().setContentsMargins(*FORM_MARGINS_PX)
        self.sections: dict[str, Container] = {
            "Grid": Container(labels=False, widgets=[
                grid_form, self.region, self.status, self.build_status,
                self.colors.row(self.show_grid), self.preview_info]),
            "Model": Container(labels=False, widgets=[
                model_form, self.model_info, self.resize, self.mixed_precision]),
            MODEL_INPUT: self.model_input,
            "Run": self.run_panel,
            BATCH_SECTION: self.batch_panel,
            DISPLAY_SECTION: Container(labels=False, widgets=[self.display, self.compare]),
            INSPECTOR_SECTION: self.inspector,
            REGIONS_SECTION: self.regions,
            OVERLAP_SECTION: self.overlap,
        }
        super().__init__(labels=False)
        self.scroll, self.collapsibles = scrolled_column(
            self.sessions, self.sections, ("Grid", "Model", "Run"), DOCK_MIN_WIDTH_PX)
        self.native.layout().addWidget(self.scroll)
        self.native.layout().setContentsMargins(0, 0, 0, 0)

    def show_section(self, title: str) -> None:
        """Open section ``title`` (if closed) and scroll it into view."""
        box = self.collapsibles[title]
        if not box.isExpanded():
            box.expand(animate=False)
        self.scroll.ensureWidgetVisible(box)

    def reset_choices(self, *_: Any) -> None:
        """Refresh every combo box's choices (napari calls this when layers are added, removed,
        reordered or renamed); the sections sit in a scroll area, outside this Container."""
        for content in self.sections.values():
            content.reset_choices()

    def _connect(self) -> None:
        for w in (self.size, self.stride, self.rate, self.padding, self.level,
                  self.tissue_threshold, self.model, self.model_file, self.resize):
            w.changed.connect(self._on_params)
        self.run_panel.finished.append(lambda _: self.preview.step_aside())  # back on a new grid
        self.image_layer.changed.connect(self._on_layer)
        self.model_input.changed.connect(lambda *_: self.inspector.redraw())
        self.inspector.row.changed.connect(self._on_patch_selected)
        self.inspector.col.changed.connect(self._on_patch_selected)
        self.show_grid.changed.connect(self._on_show_grid)
        self.batch_auto.changed.connect(lambda auto: setattr(self.batch_size, "enabled", not auto))
        self._placing = follow_new_slides(self.viewer)  # first: the dock reads it placed
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.viewer.layers.selection.events.active.connect(self.display.on_active)
        self._show_batch_section()
        # the dock's widgets are deleted when the viewer closes; a quitting napari may never
        # delete them, so its aboutToQuit ends the runs and processes as well
        self.native.destroyed.connect(self._shutdown)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._shutdown)
        self.shortcuts = dock_shortcuts(self, *map(self.collapsibles.get, (
            DISPLAY_SECTION, INSPECTOR_SECTION)))  # Shift+R Run, ... (shortcuts.py)

    # --- choices -------------------------------------------------------------------------------
    def _slide_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self.viewer.layers if is_slide_candidate(layer)]

    def _level_choices(self, _widget: Any = None) -> list[tuple[str, int]]:
        if self.slide is None:
            return []
        return [(self.slide.level_label(i), i) for i in range(len(self.slide.levels))]

    def _show_batch_section(self) -> None:
        """"All open slides" is there while a slide read from a file is open."""
        self.collapsibles[BATCH_SECTION].setVisible(bool(self.batch_panel.open_slides()))

    def _on_layers_changed(self, *_: Any) -> None:
        self._show_batch_section()
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
        self.slide = None if layer is None else SlideLayer.from_layer(layer)
        if self.slide is not None:  # its levels as stored, whichever colours the layer shows
            self.slide = self.colors.as_stored(self.slide)
        self.build_status.follow(layer)
        self.colors.follow(layer)
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

    # --- parameters -> grid, status, preview, inspector ------------------------------------------
    def model_spec(self) -> str:
        """The model as the runner takes it: a built-in name or a file path ('' if none chosen)."""
        if self.model.value != MODEL_FILE_CHOICE:
            return str(self.model.value)
        path = path_of(self.model_file)
        return str(path) if str(self.model_file.value) not in ("", ".") and path.exists() else ""

    def run_options(self) -> RunOptions:
        """The RunOptions of the parameters (level of the layer's pyramid); ValueError if bad."""
        mixed = bool(self.mixed_precision.value) and not is_builtin(self.model_spec())
        return RunOptions(
            level=self.level.value, size=self.size.value, stride=self.stride.value,
            rate=self.rate.value, padding=self.padding.value,
            batch_size=None if self.batch_auto.value else self.batch_size.value,
            tissue_threshold=float(self.tissue_threshold.value),
            resize=bool(self.resize.value) and not is_builtin(self.model_spec()),
            mixed_precision=mixed, cache_dir=self.cache_dir, color=self.colors.model_color(),
            roi=self._roi(self.slide) if self.slide is not None else None,
            roi_min_fraction=float(self.region.min_fraction.value),
            roi_centre=bool(self.region.centre.value), **self.model_input.run_fields(),
        )

    def run_request(self) -> RunRequest:
        """What Run starts: the RunRequest of the parameters; ValueError with a sentence when
        they are incomplete."""
        if self.slide is None:
            raise ValueError("Open a slide first: no image layer is chosen.")
        if self.grid is None:
            raise ValueError(self.grid_error)
        model = self.model_spec()
        if not model:
            raise ValueError("Choose a model: a built-in one or an existing Keras file.")
        return RunRequest(self.slide, model, self.run_options(), self.grid,
                          self.region.region_name)

    def _card_spec(self) -> str | None:
        """The model file whose card may give the stain target; None for a built-in."""
        spec = self.model_spec()
        return None if not spec or is_builtin(spec) else spec

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

    def _make_grid(self) -> None:
        """The grid of the parameters on the chosen level, or why there is none."""
        self.grid, self.grid_error = None, NO_SLIDE
        if self.slide is None or self.level.value is None:
            return
        h, w = self.slide.level_shape(self.level.value)
        try:
            self.grid = PatchGrid(h, w, self.size.value, self.stride.value, self.rate.value,
                                  self.padding.value)
        except ValueError as exc:
            self.grid_error = str(exc)
        else:
            self.grid_error = ""

    def _on_params(self, *_: Any, keep_error: bool = False) -> None:
        """Any parameter changed: new grid, status line, preview (debounced), inspector.
        ``keep_error``: an error shown in the status line stays (a background result came)."""
        # built-ins take patches of any size and compute in float32: no resize, no float16
        uses_file = self.model.value == MODEL_FILE_CHOICE  # (not .visible: a closed section)
        self.model_file.visible = self.resize.visible = self.mixed_precision.visible = uses_file
        self.model_info.value, warn = self._model_text()
        self._make_grid()
        self._inside_region()
        if not (keep_error and self._error_shown):
            self._show_status(warn)
        self.preview.schedule()
        self.inspector.refresh()

    def _show_status(self, warn: str) -> None:
        """The status line: the grid (its tissue share, what runs) or why there is none;
        ``warn``: the model's warning, if any."""
        self._error_shown = False
        if self.grid is None or self.slide is None:
            self.status.value = self.grid_error
        else:
            tissue = self.tissue.fraction(self.slide, self.level.value, self.grid)
            line = grid_status(self.grid, tissue, self.tissue_threshold.value, self.inside)
            warn = warn or self._fluorescence_warning()
            if self.slide.channel_names:
                line += f"; channels: {', '.join(self.slide.channel_names)}"
            self.status.value = f"{line}; {warn}" if warn else line

    def _inside_region(self) -> None:
        """The grid's patches inside the chosen region (None: the whole slide), for the status
        line and the preview; a region without patches is the grid's error."""
        self.inside = None
        if self.grid is not None and self.slide is not None:
            try:
                self.inside = self.region.patch_mask(self.grid, self.downsample(), self.slide)
            except ValueError as exc:
                self.grid, self.grid_error = None, str(exc)
        self.preview.inside = self.inside

    def _roi(self, slide: SlideLayer) -> Any:
        """The region of interest of a run on ``slide`` (level-0 px), or None."""
        return self.region.roi(slide)

    def _export_destination(self) -> tuple[Path, str]:
        """The Export section's folder and file stem."""
        return path_of(self.display.export_folder), str(self.display.export_stem.value)

    def _regions_source(self) -> Any:
        layer = self.display.layer
        if layer is None or layer not in self.viewer.layers:
            return None
        source = self.display.source_of(layer)
        return None if source is None else (layer, source)

    def _fluorescence_warning(self) -> str:
        """The warning for a built-in (brightfield) model on a fluorescence slide, else ''."""
        model = self.model_spec()
        if self.slide is None or not is_builtin(model) \
                or not self.tissue.fluorescence(self.slide, self.level.value):
            return ""
        return FLUORESCENCE_MODEL_WARNING.format(model=model)

    @property
    def tissue_ready(self) -> bool:
        """True once the status line's tissue estimate of the grid is known (or skipped)."""
        if self.slide is None or self.grid is None:
            return False
        return self.tissue.ready(self.slide, self.level.value, self.grid)

    def _on_tissue_ready(self) -> None:
        if not self._closed:
            self._on_params(keep_error=True)

    def downsample(self) -> FloatPair:
        """(y, x) level-0 pixels per pixel of the chosen level."""
        assert self.slide is not None and self.level.value is not None
        return self.slide.downsamples[self.level.value]

    # --- what the panels ask for ----------------------------------------------------------------
    def _preview_source(self) -> Any:
        if self.grid is None or self.slide is None:
            return None
        return self.grid, self.downsample(), self.slide

    def _inspect_source(self) -> Any:
        if self.grid is None or self.slide is None:
            return None
        return self.grid, self.downsample(), self.colors.model_view(self.slide), self.level.value

    def _patch_values(self, grid: PatchGrid, level: int, row: int, col: int) -> Any:
        return self.display.values_at(grid, level, row, col, getattr(self.slide, "layer", None))

    def _show_run_heatmap(self, heatmap: Heatmap, slide: SlideLayer, replace: bool) -> Any:
        return self.display.show_heatmap(heatmap, slide, replace=replace)

    def _on_batch(self, layer: Any, heatmap: Heatmap) -> None:
        self.display.refresh_layer(layer, heatmap)
        self.inspector.update_values()

    def _on_heatmap_changed(self) -> None:
        if self.display.layer is not self._opened_for:  # a new heatmap: show its display
            self._opened_for = self.display.layer
            self.show_section(DISPLAY_SECTION)
        self.inspector.update_values()

    def _on_patch_selected(self, *_: Any) -> None:
        """A patch was selected (click, keys, buttons): open the inspector on it, once per
        patch (a new grid keeps the selection without reopening)."""
        if (self.inspector.patch_index is not None
                and self.inspector.patch_index != self._inspected):
            self._inspected = self.inspector.patch_index
            self.show_section(INSPECTOR_SECTION)

    def _on_show_grid(self, *_: Any) -> None:
        self.preview.enabled = bool(self.show_grid.value)
        self.preview.update_now()

    def _after_preview(self) -> None:
        self.preview_info.value = self.preview.message
        self.inspector.update_highlight_width()

    # --- errors and teardown ---------------------------------------------------------------------
    def _error(self, message: str) -> None:
        self.status.value, self._error_shown = message, True
        show_error(f"PatchHeat: {message}")

    def _shutdown(self, *_: Any) -> None:
        """The dock widget is gone (its Qt widgets deleted when ``destroyed`` calls this) or
        napari quits: stop the panels' timers and threads, end the run, the batch and their
        processes, drop the preview and the outline. Once; never raises into napari."""
        if self._closed:
            return
        self._closed = True
        app = QApplication.instance()
        with contextlib.suppress(TypeError, RuntimeError, AttributeError):
            app.aboutToQuit.disconnect(self._shutdown)  # type: ignore[union-attr]
        steps = [self.run_panel.shutdown, self.batch_panel.shutdown, self.build_status.shutdown,
                 self.compare.stop, self._disconnect_viewer, lambda: self._watch(None),
                 self.display.shutdown, self.hover.remove, self.preview.remove,
                 self.inspector.detach, self.shortcuts.remove, self.arrival.remove]
        run_all(steps)

    def _disconnect_viewer(self) -> None:
        self.viewer.layers.events.inserted.disconnect(self._placing)
        self.viewer.layers.events.inserted.disconnect(self._on_layers_changed)
        self.viewer.layers.events.removed.disconnect(self._on_layers_changed)
        self.viewer.layers.selection.events.active.disconnect(self.display.on_active)
