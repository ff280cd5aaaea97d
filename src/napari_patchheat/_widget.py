"""The PatchHeat dock widget: tune the patch grid live, inspect patches, run, watch, export.

With its helpers (``_slide_layer``: the slide behind a layer; ``_preview``: the grid preview;
``_inspector``: the patch inspector; ``_heatmap_panel``: heatmap layers, display and Export;
``_run_watch``: the run's messages) the only code that talks to napari layers and Qt.
TensorFlow never runs in this process: a run goes to a spawned process
(:func:`~napari_patchheat.runner.start_run`) and a QTimer on the GUI thread takes its messages,
fills a :class:`Heatmap` and refreshes its Image layer in place.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, ProgressBar,
                              PushButton, SpinBox)
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QScrollArea

from ._heatmap_panel import HeatmapPanel, section
from ._inspector import PatchInspector, TextLabel
from ._preview import GridPreview
from ._run_watch import RunWatcher
from ._slide_layer import (LayerCache, SlideLayer, is_slide_candidate, tissue_level_mask,
                           tissue_source)
from .grid import PatchGrid
from .heatmap import Heatmap
from .models import BUILTIN_CLASSES, BUILTIN_DESCRIPTIONS, BUILTIN_MODELS, find_card
from .runner import Batch, Failed, Finished, RunSpec, Started, array_to_tiff
from .tissue import choose_mask_level, grid_tissue_fraction

if TYPE_CHECKING:
    import napari

RUN_POLL_MS = 100  # how often the GUI reads the run's messages (and refreshes the layer)
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
        self.grid_error = ""  # why there is no grid, for the status line
        self.run_handle: RunWatcher | None = None
        self._run: dict[str, Any] = {}
        # per slide layer and its data: ("mask", ...) -> (mask, ds), None or "pending";
        # "fraction" -> (key, per-patch tissue fraction); ("tiff", level) -> Path
        self._cache = LayerCache()
        self._tmp: Path | None = None
        self._n_tiffs = 0
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
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                            labels=False)
        self.body = Container(labels=False, widgets=[
            section("Grid"),
            Container(widgets=[self.image_layer, self.level, self.size, self.stride, self.rate,
                               self.padding]),
            self.status, self.show_grid, self.preview_info,
            section("Model"),
            Container(widgets=[self.model, self.model_file, self.batch_size,
                               self.tissue_threshold]),
            self.model_info, self.resize,
            section("Run"),
            buttons, self.replace, self.progress, self.run_info,
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

    # --- running ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True from Run until the run's process has ended (or the run stopped before it)."""
        return self.run_handle is not None or bool(self._run.get("preparing"))

    def run_spec(self) -> RunSpec:
        """The RunSpec of the current parameters; ValueError with a sentence when incomplete.

        A layer without a file is written to a temporary TIFF here, on the calling thread
        (:meth:`run` writes it on a worker thread).
        """
        spec = self._spec_without_tiff()
        if self.slide is not None and self.slide.path is None:
            path = self._layer_tiff(self.level.value)
            if path is None:
                layer, data, level, image, folder, mpp = self._tiff_job()
                path = array_to_tiff(image, folder, mpp)
                self._keep_tiff(layer, data, level, path)
            spec = self._with_tiff(spec, path)
        return spec

    def _spec_without_tiff(self) -> RunSpec:
        """The RunSpec (ValueError when incomplete); a layer without a file gets its slide (a
        TIFF) from :meth:`_with_tiff`."""
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
            slide_path, worker_level = "", 0
        return RunSpec(
            slide=str(slide_path), model=model, level=worker_level, size=self.size.value,
            stride=self.stride.value, rate=self.rate.value, padding=self.padding.value,
            batch_size=self.batch_size.value, tissue_threshold=float(self.tissue_threshold.value),
            resize=bool(self.resize.value), cache_dir=self.cache_dir, use_cache=True,
        )

    @staticmethod
    def _with_tiff(spec: RunSpec, path: Path) -> RunSpec:
        return dataclasses.replace(spec, slide=str(path))

    def _layer_tiff(self, level: int) -> Path | None:
        """The temporary TIFF of ``level`` of the current layer's current data, if written."""
        assert self.slide is not None
        return self._cache.get(self.slide.layer, ("tiff", level))

    def _tiff_job(self) -> tuple[Any, Any, int, Any, Path, float | None]:
        """(layer, its data, level, level image, new folder, µm/px) to write the current level
        of a layer without a file as a TIFF (``array_to_tiff(image, folder, mpp)``)."""
        assert self.slide is not None
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="patchheat-layers-"))
            atexit.register(shutil.rmtree, self._tmp, True)
        folder = self._tmp / f"{self._n_tiffs}"
        self._n_tiffs += 1
        folder.mkdir()
        mpp = None if self.slide.mpp is None else self.slide.mpp[1] * self._downsample()[1]
        layer, level = self.slide.layer, self.level.value
        return layer, layer.data, level, self.slide.levels[level], folder, mpp

    def _keep_tiff(self, layer: Any, data: Any, level: int, path: Path) -> None:
        if layer.data is data:  # else the pixels were replaced while it was written
            self._cache.set(layer, ("tiff", level), path)

    def run(self, *_: Any) -> bool:
        """Start a run of the current parameters in its own process; False if it cannot start."""
        if self.running:
            self._error("A run is in progress: cancel it first.")
            return False
        try:
            spec = self._spec_without_tiff()
            assert self.slide is not None
            tiff = self._layer_tiff(self.level.value) if self.slide.path is None else None
            job = self._tiff_job() if self.slide.path is None and tiff is None else None
        except (ValueError, OSError) as exc:
            self._error(str(exc))
            return False
        self._run = self._run_context()
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.progress.value = 0
        if job is None:
            self._launch(spec if tiff is None else self._with_tiff(spec, tiff))
        else:  # no file behind the layer: write the level as a TIFF off the GUI thread first
            self._write_tiff_then_launch(spec, job)
        return True

    def _run_context(self) -> dict[str, Any]:
        """What a run of the current parameters needs when its messages arrive; its own heatmap
        and layer ("heatmap", "layer") are added when it has Started."""
        assert self.slide is not None and self.grid is not None
        return {"slide": self.slide, "level": self.level.value, "grid": self.grid,
                "downsample": self._downsample(), "file": self.slide.path is not None,
                "replace": bool(self.replace.value)}

    def _write_tiff_then_launch(self, spec: RunSpec, job: tuple[Any, ...]) -> None:
        from napari.qt.threading import create_worker

        layer, data, level, image, folder, mpp = job
        run = self._run
        run["preparing"] = True
        self.run_info.value = "writing the layer to a temporary TIFF…"
        worker = create_worker(array_to_tiff, image, folder, mpp)
        self._workers.add(worker)  # a worker must outlive its thread

        def written(path: Path) -> None:
            self._keep_tiff(layer, data, level, path)
            run["preparing"] = False
            if self._closed or self._run is not run:
                return
            if run.get("cancelled"):
                self._end_run("cancelled before the run started")
            else:
                self._launch(self._with_tiff(spec, path))

        def failed(exc: Exception) -> None:
            run["preparing"] = False
            if not self._closed and self._run is run:
                self._end_run("run failed: could not write the layer to a temporary TIFF")
                self._error(f"Could not write the layer to a temporary TIFF ({exc}); free "
                            "some disk space in the temporary folder and run again.")

        worker.returned.connect(written)
        worker.errored.connect(failed)
        worker.finished.connect(lambda: self._workers.discard(worker))
        worker.start()

    def _launch(self, spec: RunSpec) -> None:
        """Start ``spec``'s process and watch it."""
        try:
            self.run_handle = RunWatcher(spec)
        except OSError as exc:
            self._end_run("run failed: the model's process did not start")
            self._error(f"The model's process did not start ({exc}); close other programs "
                        "and run again.")
            return
        self.run_info.value = "starting the model in its own process…"
        self._timer.start()

    def cancel(self, *_: Any) -> None:
        """Ask the run to stop after its batch in progress; what is computed stays."""
        if self.run_handle is not None:
            self.run_handle.cancel()
            self.run_info.value = "cancelling after the batch in progress…"
        elif self._run.get("preparing"):
            self._run["cancelled"] = True
            self.run_info.value = "cancelling…"

    def poll(self) -> None:
        """Take the run's messages (GUI thread, never waits): fill the heatmap, then refresh its
        layer, the progress bar and the inspector once."""
        if self.run_handle is None:
            self._timer.stop()
            return
        self.handle_messages(self.run_handle.drain())

    def handle_messages(self, messages: list[Any]) -> None:
        """Apply the run's messages (GUI thread): batches go into the run's own heatmap and
        layer, whichever heatmap the panel shows meanwhile."""
        batch = None
        for msg in messages:
            if isinstance(msg, Started):
                self._on_started(msg)
            elif isinstance(msg, Batch) and self._run.get("heatmap") is not None:
                self._run["heatmap"].update(msg.indices, msg.values)
                batch = msg
            elif isinstance(msg, Finished):
                self._end_run(f"{'cancelled' if msg.cancelled else 'done'}: {msg.done:,} patches "
                              "computed by this run" + ("; Run resumes" if msg.cancelled else ""))
            elif isinstance(msg, Failed):
                self._end_run(f"run failed: {msg.message}")
                self._error(f"The run failed: {msg.message}")
        if batch is not None:
            self.progress.max, self.progress.value = max(batch.total, 1), batch.done
            if self.running:
                self.run_info.value = (f"{batch.done:,} / {batch.total:,} patches, "
                                       f"{batch.patches_per_s:,.0f} patches/s")
            self.display.refresh_layer(self._run["layer"], self._run["heatmap"])
            self.inspector.update_values()

    def _on_started(self, msg: Started) -> None:
        run = self._run
        heatmap = Heatmap.from_metadata(msg.metadata, np.array(msg.values, np.float32))
        if heatmap.grid != run["grid"]:
            if self.run_handle is not None:
                self.run_handle.kill()
            self._end_run("run stopped: the file's level differs from the layer's")
            self._error(f"The slide file's level {run['level']} is {heatmap.grid.height} x "
                        f"{heatmap.grid.width} px but the layer's is {run['grid'].height} x "
                        f"{run['grid'].width} px; open the slide with the napari-patchheat reader.")
            return
        slide: SlideLayer = run["slide"]
        if not run["file"]:  # the worker saw one level as a TIFF: put it back on the pyramid
            heatmap.level, heatmap.downsample = run["level"], run["downsample"]
            heatmap.slide_path, heatmap.mpp = "", slide.mpp
            heatmap.slide_shape = slide.level_shape(0)
        self.progress.max, self.progress.value = max(msg.total, 1), 0
        self.run_info.value = f"{msg.total:,} patches to compute"
        run["layer"] = self.show_heatmap(heatmap, slide, replace=run["replace"])
        run["heatmap"] = heatmap

    def _end_run(self, text: str) -> None:
        self._timer.stop()
        self.run_handle = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.run_info.value = text

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
        self.viewer.layers.selection.events.active.disconnect(self.display.on_active)
        self._watch(None)
        try:
            self.preview.remove()
            self.inspector.remove()
        except (RuntimeError, ValueError, KeyError):  # the viewer is closing as well
            pass
