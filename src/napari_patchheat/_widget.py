"""The PatchHeat dock widget: tune the patch grid live, inspect patches, run, watch, export.

The only module (with its helpers ``_preview``, ``_inspector``, ``_slide_layer``) that talks to
napari layers and Qt. TensorFlow never runs in this process: a run goes to
:func:`~napari_patchheat.runner.start_run` (a spawned process) and its messages are read by a
QTimer on the GUI thread, which fills a :class:`Heatmap` and refreshes its Image layer in place.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, FloatSlider,
                              FloatSpinBox, Label, LineEdit, ProgressBar, PushButton, SpinBox)
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QScrollArea

from ._inspector import PatchInspector, TextLabel
from ._preview import GridPreview
from ._slide_layer import SlideLayer, is_heatmap_layer, is_slide_candidate, tissue_estimate
from .export import FORMATS, export_heatmap
from .grid import PatchGrid
from .heatmap import Heatmap
from .models import BUILTIN_CLASSES, BUILTIN_DESCRIPTIONS, BUILTIN_MODELS, find_card
from .runner import Batch, Failed, Finished, RunHandle, RunSpec, Started, array_to_tiff, start_run
from .tissue import grid_tissue_fraction

RUN_POLL_MS = 100  # how often the GUI reads the run's messages (and refreshes the layer)
MODEL_FILE_CHOICE = "Keras file…"
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "turbo", "red", "gray")
DEFAULT_OPACITY = 0.6
DEFAULT_SIZE_PX = 224
TISSUE_SHOWN_FRACTION = 0.5  # with threshold 0, "x% tissue" counts patches at least this full
TISSUE_STATUS_MAX_PATCHES = 4_000_000  # above this the status line skips the tissue estimate
DOCK_MIN_WIDTH_PX = 460  # fits TEXT_WRAP_CHARS characters of label text
THUMBNAIL_PX = 2000  # long side of the slide thumbnail the PNG export is blended over
FORMAT_LABELS = {"ometiff": "OME-TIFF", "slide_raster": "slide-aligned TIFF",
                 "png": "PNG overlay", "csv": "CSV", "geojson": "GeoJSON (QuPath)"}


def grid_status(grid: PatchGrid, tissue: np.ndarray | None, threshold: float) -> str:
    """'412 x 388 = 159,856 patches, 41% tissue, 65,541 to run' (tissue: per-patch fraction)."""
    text = f"{grid.rows:,} x {grid.cols:,} = {grid.n_patches:,} patches"
    if tissue is None:
        return text
    keep = tissue >= (threshold if threshold > 0 else TISSUE_SHOWN_FRACTION)
    text += f", {keep.mean():.0%} tissue"
    return text + (f", {int(keep.sum()):,} to run" if threshold > 0 else "")


def _section(title: str) -> Label:
    return Label(value=f"<b>{title}</b>")


def safe_stem(text: str) -> str:
    """A file-name stem from free text: runs of other characters become '_'."""
    return re.sub(r"[^\w.+-]+", "_", text).strip("._") or "heatmap"


class PatchHeatWidget(Container):
    """The dock widget. Its parts are attributes; tests set values and call handlers directly."""

    def __init__(self, viewer: Any):
        self.viewer = viewer
        self.cache_dir: str | None = None  # None: the runner's default cache
        self.slide: SlideLayer | None = None
        self.grid: PatchGrid | None = None
        self.grid_error = ""  # why there is no grid, for the status line
        self.heatmap: Heatmap | None = None
        self.heatmap_layer: Any = None
        self.run_handle: RunHandle | None = None
        self._run: dict[str, Any] = {}
        self._tissue: dict[int, Any] = {}  # id(slide layer) -> (mask, ds), None, or "pending"
        self._sources: dict[int, Any] = {}  # id(heatmap layer) -> its slide layer
        self._tiffs: dict[tuple[int, int], Path] = {}
        self._tmp: Path | None = None
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
        self.batch_size = SpinBox(label="batch size", min=1, max=4096, value=32)
        self.tissue_threshold = FloatSpinBox(label="tissue threshold", min=0.0, max=1.0,
                                             step=0.05, value=0.0)
        self.status = TextLabel()
        self.show_grid = CheckBox(text="show the patch grid", value=True)
        self.preview_info = TextLabel()
        # --- run
        self.replace = CheckBox(text="replace the shown heatmap (else a new layer)", value=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=1, value=0)
        self.run_info = TextLabel()
        # --- display
        self.class_name = ComboBox(label="class", choices=[])
        self.colormap = ComboBox(label="colormap", choices=list(COLORMAPS), value=COLORMAPS[0])
        self.opacity = FloatSlider(label="opacity", min=0.0, max=1.0, value=DEFAULT_OPACITY)
        # --- export
        self.export_formats = {f: CheckBox(text=FORMAT_LABELS.get(f, f), value=True) for f in FORMATS}
        self.export_folder = FileEdit(label="folder", mode="d",
                                      value=Path.home() / "patchheat-export")
        self.export_stem = LineEdit(label="file stem", value="heatmap")
        self.export_button = PushButton(text="Export", enabled=False)

        self.inspector = PatchInspector(viewer, self._inspect_source, self._patch_values)
        self.preview = GridPreview(viewer, self._preview_source)
        self.preview.redrawn.append(self._after_preview)
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                            labels=False)
        formats = Container(widgets=list(self.export_formats.values()), labels=False,
                            label="formats")
        self.body = Container(labels=False, widgets=[
            _section("Grid"),
            Container(widgets=[self.image_layer, self.level, self.size, self.stride, self.rate,
                               self.padding]),
            self.status, self.show_grid, self.preview_info,
            _section("Model"),
            Container(widgets=[self.model, self.model_file, self.batch_size,
                               self.tissue_threshold]),
            self.model_info, self.resize,
            _section("Run"),
            buttons, self.replace, self.progress, self.run_info,
            _section("Display"),
            Container(widgets=[self.class_name, self.colormap, self.opacity]),
            _section("Export"),
            Container(widgets=[formats, self.export_folder, self.export_stem]),
            self.export_button,
            _section("Patch inspector"),
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
        self._timer = QTimer(self.native)
        self._timer.setInterval(RUN_POLL_MS)
        self._timer.timeout.connect(self.poll)

        for w in (self.size, self.stride, self.rate, self.padding, self.level,
                  self.tissue_threshold, self.model, self.model_file, self.resize):
            w.changed.connect(self._on_params)
        self.image_layer.changed.connect(self._on_layer)
        self.show_grid.changed.connect(self._on_show_grid)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.class_name.changed.connect(self._apply_display)
        self.colormap.changed.connect(self._apply_display)
        self.opacity.changed.connect(self._apply_display)
        self.export_button.changed.connect(self.export)
        viewer.layers.events.inserted.connect(self._on_layers_changed)
        viewer.layers.events.removed.connect(self._on_layers_changed)
        viewer.layers.selection.events.active.connect(self._on_active)
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
        """A slide layer was chosen: read its pyramid, list its levels, estimate its tissue."""
        layer = self.image_layer.value
        self.slide = SlideLayer.from_layer(layer) if layer is not None else None
        self.level.reset_choices()
        if self.slide is not None:
            self._start_tissue_estimate(self.slide)
        self._on_params()

    def _start_tissue_estimate(self, slide: SlideLayer) -> None:
        key = id(slide.layer)
        if key in self._tissue:
            return
        from napari.qt.threading import create_worker

        self._tissue[key] = "pending"
        worker = create_worker(tissue_estimate, slide)
        self._workers.add(worker)  # a worker must outlive its thread

        def done(result: Any, key: int = key) -> None:
            self._tissue[key] = result
            if not self._closed:
                self._on_params()

        def failed(exc: Exception, key: int = key) -> None:
            self._tissue[key] = None

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(lambda: self._workers.discard(worker))
        worker.start()

    @property
    def tissue_ready(self) -> bool:
        """True once the tissue estimate of the current slide is known (or known impossible)."""
        return self.slide is not None and self._tissue.get(id(self.slide.layer)) != "pending"

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
        est = self._tissue.get(id(self.slide.layer)) if self.slide is not None else None
        if not isinstance(est, tuple) or self.grid is None \
                or self.grid.n_patches > TISSUE_STATUS_MAX_PATCHES:
            return None
        mask, mask_ds = est
        return grid_tissue_fraction(mask, mask_ds, self.grid, self._downsample())

    def _downsample(self) -> tuple[float, float]:
        assert self.slide is not None and self.level.value is not None
        return self.slide.downsamples[self.level.value]

    def _preview_source(self) -> Any:
        if self.grid is None or self.slide is None:
            return None
        return self.grid, self._downsample(), self.slide

    def _inspect_source(self) -> Any:
        if self.grid is None or self.slide is None:
            return None
        return self.grid, self._downsample(), self.slide, self.level.value

    def _patch_values(self, grid: PatchGrid, level: int, row: int, col: int) -> Any:
        h = self.heatmap
        if h is None or h.grid != grid or h.level != level \
                or self._sources.get(id(self.heatmap_layer)) is not getattr(self.slide, "layer", None):
            return None
        v = h.values[row, col]
        return None if np.isnan(v).any() else (h.class_names, v)

    def _on_show_grid(self, *_: Any) -> None:
        self.preview.enabled = bool(self.show_grid.value)
        self.preview.update_now()

    def _after_preview(self) -> None:
        self.preview_info.value = self.preview.message
        self.inspector.update_highlight_width()

    # --- running ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while a run's process has not ended."""
        return self.run_handle is not None

    def run_spec(self) -> RunSpec:
        """The RunSpec of the current parameters; ValueError with a sentence when incomplete."""
        if self.slide is None:
            raise ValueError("Open a slide first: no image layer is chosen.")
        if self.grid is None:
            raise ValueError(self.grid_error)
        model = self.model_spec()
        if not model:
            raise ValueError("Choose a model: a built-in one or an existing Keras file.")
        level = self.level.value
        slide_path, worker_level = self.slide.path, level
        if slide_path is None:  # no file behind the layer: hand the level over as a TIFF
            slide_path, worker_level = self._layer_tiff(level), 0
        return RunSpec(
            slide=str(slide_path), model=model, level=worker_level, size=self.size.value,
            stride=self.stride.value, rate=self.rate.value, padding=self.padding.value,
            batch_size=self.batch_size.value, tissue_threshold=float(self.tissue_threshold.value),
            resize=bool(self.resize.value), cache_dir=self.cache_dir, use_cache=True,
        )

    def _layer_tiff(self, level: int) -> Path:
        assert self.slide is not None
        key = (id(self.slide.layer), level)
        if key not in self._tiffs:
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="patchheat-layers-"))
                atexit.register(shutil.rmtree, self._tmp, True)
            folder = self._tmp / f"{len(self._tiffs)}"
            folder.mkdir()
            mpp = None if self.slide.mpp is None else self.slide.mpp[1] * self._downsample()[1]
            self._tiffs[key] = array_to_tiff(self.slide.levels[level], folder, mpp)
        return self._tiffs[key]

    def run(self, *_: Any) -> bool:
        """Start a run of the current parameters in its own process; False if it cannot start."""
        if self.running:
            self._error("A run is in progress: cancel it first.")
            return False
        try:
            spec = self.run_spec()
        except (ValueError, OSError) as exc:
            self._error(str(exc))
            return False
        assert self.slide is not None and self.grid is not None
        self._run = {"slide": self.slide, "level": self.level.value, "grid": self.grid,
                     "downsample": self._downsample(), "file": self.slide.path is not None,
                     "replace": bool(self.replace.value)}
        self.run_handle = start_run(spec)
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.progress.value = 0
        self.run_info.value = "starting the model in its own process…"
        self._timer.start()
        return True

    def cancel(self, *_: Any) -> None:
        """Ask the run to stop after its batch in progress; what is computed stays."""
        if self.run_handle is not None:
            self.run_handle.cancel()
            self.run_info.value = "cancelling after the batch in progress…"

    def poll(self) -> None:
        """Read the run's messages (GUI thread): fill the heatmap, refresh its layer once."""
        if self.run_handle is None:
            self._timer.stop()
            return
        changed = False
        for msg in self.run_handle.poll():
            if isinstance(msg, Started):
                changed = self._on_started(msg) or changed
            elif isinstance(msg, Batch) and self.heatmap is not None:
                self.heatmap.update(msg.indices, msg.values)
                self.progress.max, self.progress.value = max(msg.total, 1), msg.done
                self.run_info.value = (f"{msg.done:,} / {msg.total:,} patches, "
                                       f"{msg.patches_per_s:,.0f} patches/s")
                changed = True
            elif isinstance(msg, Finished):
                self._end_run(f"{'cancelled' if msg.cancelled else 'done'}: {msg.done:,} patches "
                              "computed by this run" + ("; Run resumes" if msg.cancelled else ""))
            elif isinstance(msg, Failed):
                self._end_run(f"run failed: {msg.message}")
                self._error(f"The run failed: {msg.message}")
        if changed:
            self._apply_display()
            self.inspector.update_values()

    def _on_started(self, msg: Started) -> bool:
        run = self._run
        heatmap = Heatmap.from_metadata(msg.metadata, np.array(msg.values, np.float32))
        if heatmap.grid != run["grid"]:
            if self.run_handle is not None:
                self.run_handle.kill()
            self._end_run("run stopped: the file's level differs from the layer's")
            self._error(f"The slide file's level {run['level']} is {heatmap.grid.height} x "
                        f"{heatmap.grid.width} px but the layer's is {run['grid'].height} x "
                        f"{run['grid'].width} px; open the slide with the napari-patchheat reader.")
            return False
        slide: SlideLayer = run["slide"]
        if not run["file"]:  # the worker saw one level as a TIFF: put it back on the pyramid
            heatmap.level, heatmap.downsample = run["level"], run["downsample"]
            heatmap.slide_path, heatmap.mpp = "", slide.mpp
            heatmap.slide_shape = slide.level_shape(0)
        self.progress.max, self.progress.value = max(msg.total, 1), 0
        self.run_info.value = f"{msg.total:,} patches to compute"
        self.show_heatmap(heatmap, slide, replace=run["replace"])
        return True

    def _end_run(self, text: str) -> None:
        self._timer.stop()
        self.run_handle = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.run_info.value = text

    # --- the heatmap layer -----------------------------------------------------------------------
    def _matching_layer(self, heatmap: Heatmap, slide: SlideLayer) -> Any:
        for layer in self.viewer.layers:
            other = layer.metadata.get("patchheat_heatmap") if is_heatmap_layer(layer) else None
            if other is not None and self._sources.get(id(layer)) is slide.layer \
                    and other.grid == heatmap.grid and other.level == heatmap.level \
                    and other.model_fingerprint == heatmap.model_fingerprint:
                return layer
        return None

    def show_heatmap(self, heatmap: Heatmap, slide: SlideLayer, replace: bool = False) -> Any:
        """Show ``heatmap`` over ``slide``: in the layer of the same grid and model (values
        merged: nothing computed is lost), else in the shown layer (``replace``), else a new one."""
        layer = self._matching_layer(heatmap, slide)
        if layer is not None:
            old = layer.metadata["patchheat_heatmap"].values
            keep = np.isnan(heatmap.values) & ~np.isnan(old)
            heatmap.values[keep] = old[keep]
        elif replace and self.heatmap_layer is not None and self.heatmap_layer in self.viewer.layers:
            layer = self.heatmap_layer
        c = 0 if self.class_name.value not in heatmap.class_names else \
            heatmap.class_names.index(self.class_name.value)
        kw = heatmap.layer_kwargs(c, slide.world_per_px, self.colormap.value, self.opacity.value)
        kw["translate"] = tuple(np.add(kw["translate"], slide.world_offset))
        kw["name"] = f"{slide.name} {heatmap.model_name} {heatmap.class_names[c]}"
        if layer is None:
            layer = self.viewer.add_image(**kw)
        else:
            layer.metadata = {**layer.metadata, **kw.pop("metadata")}
            layer.data, layer.scale, layer.translate = kw["data"], kw["scale"], kw["translate"]
            layer.name = kw["name"]
        self._sources[id(layer)] = slide.layer
        self._adopt(layer)
        return layer

    def _adopt(self, layer: Any) -> None:
        """Make ``layer`` the heatmap the class, colormap, opacity and Export apply to."""
        heatmap = layer.metadata["patchheat_heatmap"]
        self.heatmap_layer, self.heatmap = layer, heatmap
        c = int(layer.metadata.get("patchheat_class", 0))
        with self.class_name.changed.blocked(), self.colormap.changed.blocked(), \
                self.opacity.changed.blocked():
            self.class_name.choices = list(heatmap.class_names)
            self.class_name.value = heatmap.class_names[c]
            if layer.colormap.name in COLORMAPS:
                self.colormap.value = layer.colormap.name
            self.opacity.value = float(layer.opacity)
        self.export_stem.value = safe_stem(layer.name.rsplit(" ", 1)[0])
        self.export_button.enabled = True
        self.inspector.update_values()

    def _on_active(self, event: Any) -> None:
        layer = event.value
        if layer is not None and is_heatmap_layer(layer) and layer is not self.heatmap_layer:
            self._adopt(layer)

    def _apply_display(self, *_: Any) -> None:
        """Class, colormap, opacity onto the heatmap layer (never recomputes)."""
        layer, heatmap = self.heatmap_layer, self.heatmap
        if layer is None or heatmap is None or layer not in self.viewer.layers:
            return
        c = heatmap.class_index(self.class_name.value) if self.class_name.value else 0
        if c != layer.metadata.get("patchheat_class"):
            layer.metadata = {**layer.metadata, "patchheat_class": c}
            layer.name = f"{layer.name.rsplit(' ', 1)[0]} {heatmap.class_names[c]}"
        layer.data = heatmap.values[..., c]
        layer.colormap = self.colormap.value
        layer.opacity = float(self.opacity.value)
        layer.refresh()

    # --- export ----------------------------------------------------------------------------------
    def export(self, *_: Any) -> dict[str, Path] | None:
        """Write the shown heatmap in the ticked formats; errors go to a notification."""
        heatmap, layer = self.heatmap, self.heatmap_layer
        formats = [f for f, box in self.export_formats.items() if box.value]
        if heatmap is None or layer is None:
            self._error("Nothing to export: run a model or select a heatmap layer first.")
            return None
        if not formats:
            self._error("Tick at least one export format.")
            return None
        source = self._sources.get(id(layer))
        try:
            thumb = self._thumbnail(source) if "png" in formats and source is not None else None
            files = export_heatmap(
                heatmap, Path(self.export_folder.value), self.export_stem.value, formats,
                thumbnail=thumb, class_name=int(layer.metadata.get("patchheat_class", 0)),
                colormap=self.colormap.value, opacity=float(self.opacity.value),
            )
        except (OSError, ValueError) as exc:
            self._error(f"Export failed: {exc}")
            return None
        self.run_info.value = f"exported {len(files)} files to {self.export_folder.value}"
        show_info(f"PatchHeat: exported {', '.join(p.name for p in files.values())}")
        return files

    @staticmethod
    def _thumbnail(layer: Any) -> np.ndarray:
        """The whole slide at about THUMBNAIL_PX on its long side, from a low-resolution level."""
        slide = SlideLayer.from_layer(layer)
        sizes = [max(slide.level_shape(i)) for i in range(len(slide.levels))]
        level = max((i for i, s in enumerate(sizes) if s >= THUMBNAIL_PX), default=0)
        k = max(1, sizes[level] // THUMBNAIL_PX)
        return np.asarray(slide.levels[level][::k, ::k])

    # --- errors and teardown ---------------------------------------------------------------------
    def _error(self, message: str) -> None:
        self.status.value = message
        show_error(f"PatchHeat: {message}")

    def _shutdown(self, *_: Any) -> None:
        """The dock widget is gone: end the run, drop the preview and the outline."""
        self._closed = True
        self._timer.stop()
        if self.run_handle is not None:
            self.run_handle.kill()
            self.run_handle = None
        self.viewer.layers.events.inserted.disconnect(self._on_layers_changed)
        self.viewer.layers.events.removed.disconnect(self._on_layers_changed)
        self.viewer.layers.selection.events.active.disconnect(self._on_active)
        try:
            self.preview.remove()
            self.inspector.remove()
        except (RuntimeError, ValueError, KeyError):  # the viewer is closing as well
            pass
