"""The Run side of the dock widget: start a run of the widget's parameters, watch it, cancel it.

A run goes to a spawned process (:class:`~napari_patchheat._run_watch.RunWatcher`); a layer
without a file is first written to a temporary TIFF of its level on a worker thread. A QTimer
on the GUI thread takes the run's messages: ``Started`` adds the run's own heatmap and layer,
each ``Batch`` fills them (whichever heatmap the panel shows meanwhile), ``Finished`` and
``Failed`` end the run. No TensorFlow here: it runs in the run's process only.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from magicgui.widgets import CheckBox, Container, ProgressBar, PushButton
from qtpy.QtCore import QTimer

from ._inspector import TextLabel
from ._run_watch import RunWatcher
from ._slide_layer import LayerCache, SlideLayer
from .heatmap import Heatmap
from .models import is_builtin
from .runner import Batch, Failed, Finished, RunSpec, Started, array_to_tiff

if TYPE_CHECKING:
    from ._widget import PatchHeatWidget

RUN_POLL_MS = 100  # how often the GUI reads the run's messages (and refreshes the layer)


class RunControl:
    """Run, Cancel, the progress bar and the run's text for the parameters of ``widget``.

    Reads the parameters from the widget's public parts; ``cache`` holds the temporary TIFFs
    per slide layer and its data (key ``("tiff", level)``), ``workers`` keeps worker threads
    alive until they finish, ``on_error(message)`` reports what went wrong.
    """

    def __init__(self, widget: PatchHeatWidget, cache: LayerCache, workers: set[Any],
                 on_error: Callable[[str], None]):
        self.widget, self.cache, self.workers, self.on_error = widget, cache, workers, on_error
        self.handle: RunWatcher | None = None  # the run's process, from start until it ended
        # the run of the last Run: what its messages need ("slide", "level", "grid",
        # "downsample", "file", "replace"), then its "heatmap" and "layer" once it has Started
        self.context: dict[str, Any] = {}
        self.closed = False
        self._tmp: Path | None = None
        self._n_tiffs = 0
        self.replace = CheckBox(text="replace the shown heatmap (else a new layer)", value=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.buttons = Container(widgets=[self.run_button, self.cancel_button],
                                 layout="horizontal", labels=False)
        self.progress = ProgressBar(min=0, max=1, value=0)
        self.info = TextLabel()
        self._timer = QTimer(self.buttons.native)
        self._timer.setInterval(RUN_POLL_MS)
        self._timer.timeout.connect(self.poll)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        """True from Run until the run's process has ended (or the run stopped before it)."""
        return self.handle is not None or bool(self.context.get("preparing"))

    # --- the run's spec ----------------------------------------------------------------------
    def spec(self) -> RunSpec:
        """The RunSpec of the current parameters; ValueError with a sentence when incomplete.

        A layer without a file is written to a temporary TIFF here, on the calling thread
        (:meth:`run` writes it on a worker thread).
        """
        w = self.widget
        spec = self._spec_without_tiff()
        if w.slide is not None and w.slide.path is None:
            path = self._layer_tiff(w.level.value)
            if path is None:
                layer, data, level, image, folder, mpp = self._tiff_job()
                path = array_to_tiff(image, folder, mpp)
                self._keep_tiff(layer, data, level, path)
            spec = self._with_tiff(spec, path)
        return spec

    def _spec_without_tiff(self) -> RunSpec:
        """The RunSpec (ValueError when incomplete); a layer without a file gets its slide (a
        TIFF) from :meth:`_with_tiff`."""
        w = self.widget
        if w.slide is None:
            raise ValueError("Open a slide first: no image layer is chosen.")
        if w.grid is None:
            raise ValueError(w.grid_error)
        model = w.model_spec()
        if not model:
            raise ValueError("Choose a model: a built-in one or an existing Keras file.")
        level = w.level.value
        slide_path, worker_level = w.slide.path, level
        if slide_path is None:  # no file behind the layer: hand the level over as a TIFF
            slide_path, worker_level = "", 0
        return RunSpec(
            slide=str(slide_path), model=model, level=worker_level, size=w.size.value,
            stride=w.stride.value, rate=w.rate.value, padding=w.padding.value,
            batch_size=w.batch_size.value, tissue_threshold=float(w.tissue_threshold.value),
            resize=bool(w.resize.value), cache_dir=w.cache_dir, use_cache=True,
            mixed_precision=bool(w.mixed_precision.value) and not is_builtin(model),
        )

    @staticmethod
    def _with_tiff(spec: RunSpec, path: Path) -> RunSpec:
        return dataclasses.replace(spec, slide=str(path))

    def _layer_tiff(self, level: int) -> Path | None:
        """The temporary TIFF of ``level`` of the current layer's current data, if written."""
        assert self.widget.slide is not None
        return self.cache.get(self.widget.slide.layer, ("tiff", level))

    def _tiff_job(self) -> tuple[Any, Any, int, Any, Path, float | None]:
        """(layer, its data, level, level image, new folder, µm/px) to write the current level
        of a layer without a file as a TIFF (``array_to_tiff(image, folder, mpp)``)."""
        slide = self.widget.slide
        assert slide is not None
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="patchheat-layers-"))
            atexit.register(shutil.rmtree, self._tmp, True)
        folder = self._tmp / f"{self._n_tiffs}"
        self._n_tiffs += 1
        folder.mkdir()
        mpp = None if slide.mpp is None else slide.mpp[1] * self.widget.downsample()[1]
        layer, level = slide.layer, self.widget.level.value
        return layer, layer.data, level, slide.levels[level], folder, mpp

    def _keep_tiff(self, layer: Any, data: Any, level: int, path: Path) -> None:
        if layer.data is data:  # else the pixels were replaced while it was written
            self.cache.set(layer, ("tiff", level), path)

    # --- starting and stopping -----------------------------------------------------------------
    def run(self, *_: Any) -> bool:
        """Start a run of the current parameters in its own process; False if it cannot start."""
        if self.running:
            self.on_error("A run is in progress: cancel it first.")
            return False
        slide = self.widget.slide
        try:
            spec = self._spec_without_tiff()
            assert slide is not None
            tiff = self._layer_tiff(self.widget.level.value) if slide.path is None else None
            job = self._tiff_job() if slide.path is None and tiff is None else None
        except (ValueError, OSError) as exc:
            self.on_error(str(exc))
            return False
        self.context = self.new_context()
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.progress.value = 0
        if job is None:
            self._launch(spec if tiff is None else self._with_tiff(spec, tiff))
        else:  # no file behind the layer: write the level as a TIFF off the GUI thread first
            self._write_tiff_then_launch(spec, job)
        return True

    def new_context(self) -> dict[str, Any]:
        """What a run of the current parameters needs when its messages arrive; its own heatmap
        and layer ("heatmap", "layer") are added when it has Started."""
        w = self.widget
        assert w.slide is not None and w.grid is not None
        return {"slide": w.slide, "level": w.level.value, "grid": w.grid,
                "downsample": self.widget.downsample(), "file": w.slide.path is not None,
                "replace": bool(self.replace.value)}

    def _write_tiff_then_launch(self, spec: RunSpec, job: tuple[Any, ...]) -> None:
        from napari.qt.threading import create_worker

        layer, data, level, image, folder, mpp = job
        run = self.context
        run["preparing"] = True
        self.info.value = "writing the layer to a temporary TIFF…"
        worker = create_worker(array_to_tiff, image, folder, mpp)
        self.workers.add(worker)  # a worker must outlive its thread

        def written(path: Path) -> None:
            self._keep_tiff(layer, data, level, path)
            run["preparing"] = False
            if self.closed or self.context is not run:
                return
            if run.get("cancelled"):
                self._end("cancelled before the run started")
            else:
                self._launch(self._with_tiff(spec, path))

        def failed(exc: Exception) -> None:
            run["preparing"] = False
            if not self.closed and self.context is run:
                self._end("run failed: could not write the layer to a temporary TIFF")
                self.on_error(f"Could not write the layer to a temporary TIFF ({exc}); free "
                              "some disk space in the temporary folder and run again.")

        worker.returned.connect(written)
        worker.errored.connect(failed)
        worker.finished.connect(lambda: self.workers.discard(worker))
        worker.start()

    def _launch(self, spec: RunSpec) -> None:
        """Start ``spec``'s process and watch it."""
        try:
            self.handle = RunWatcher(spec)
        except OSError as exc:
            self._end("run failed: the model's process did not start")
            self.on_error(f"The model's process did not start ({exc}); close other programs "
                          "and run again.")
            return
        self.info.value = "starting the model in its own process…"
        self._timer.start()

    def cancel(self, *_: Any) -> None:
        """Ask the run to stop after its batch in progress; what is computed stays."""
        if self.handle is not None:
            self.handle.cancel()
            self.info.value = "cancelling after the batch in progress…"
        elif self.context.get("preparing"):
            self.context["cancelled"] = True
            self.info.value = "cancelling…"

    def shutdown(self) -> None:
        """The dock widget is gone: stop polling and end the run's process."""
        self.closed = True
        self._timer.stop()
        if self.handle is not None:
            self.handle.kill()
            self.handle = None

    # --- the run's messages --------------------------------------------------------------------
    def poll(self) -> None:
        """Take the run's messages (GUI thread, never waits): fill the heatmap, then refresh its
        layer, the progress bar and the inspector once."""
        if self.handle is None:
            self._timer.stop()
            return
        self.handle_messages(self.handle.drain())

    def handle_messages(self, messages: list[Any]) -> None:
        """Apply the run's messages (GUI thread): batches go into the run's own heatmap and
        layer, whichever heatmap the panel shows meanwhile."""
        batch = None
        for msg in messages:
            if isinstance(msg, Started):
                self._on_started(msg)
            elif isinstance(msg, Batch) and self.context.get("heatmap") is not None:
                self.context["heatmap"].update(msg.indices, msg.values)
                batch = msg
            elif isinstance(msg, Finished):
                self._end(f"{'cancelled' if msg.cancelled else 'done'}: {msg.done:,} patches "
                          "computed by this run" + ("; Run resumes" if msg.cancelled else ""))
            elif isinstance(msg, Failed):
                self._end(f"run failed: {msg.message}")
                self.on_error(f"The run failed: {msg.message}")
        if batch is not None:
            self.progress.max, self.progress.value = max(batch.total, 1), batch.done
            if self.running:
                self.info.value = (f"{batch.done:,} / {batch.total:,} patches, "
                                   f"{batch.patches_per_s:,.0f} patches/s")
            self.widget.display.refresh_layer(self.context["layer"], self.context["heatmap"])
            self.widget.inspector.update_values()

    def _on_started(self, msg: Started) -> None:
        run = self.context
        heatmap = Heatmap.from_metadata(msg.metadata, np.array(msg.values, np.float32))
        if heatmap.grid != run["grid"]:
            if self.handle is not None:
                self.handle.kill()
            self._end("run stopped: the file's level differs from the layer's")
            self.on_error(f"The slide file's level {run['level']} is {heatmap.grid.height} x "
                          f"{heatmap.grid.width} px but the layer's is {run['grid'].height} x "
                          f"{run['grid'].width} px; open the slide with the napari-patchheat "
                          "reader.")
            return
        slide: SlideLayer = run["slide"]
        if not run["file"]:  # the worker saw one level as a TIFF: put it back on the pyramid
            heatmap.level, heatmap.downsample = run["level"], run["downsample"]
            heatmap.slide_path, heatmap.mpp = "", slide.mpp
            heatmap.slide_shape = slide.level_shape(0)
        self.progress.max, self.progress.value = max(msg.total, 1), 0
        self.info.value = f"{msg.total:,} patches to compute"
        run["layer"] = self.widget.show_heatmap(heatmap, slide, replace=run["replace"])
        run["heatmap"] = heatmap

    def _end(self, text: str) -> None:
        self._timer.stop()
        self.handle = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.info.value = text
