"""The Run side of the dock: start a run, watch it, cancel it.

What the panel needs comes in as data and callbacks, never from the dock itself: ``request()``
gives the :class:`RunRequest` of the dock's parameters, ``show(heatmap, slide, replace)`` puts
a run's heatmap in a layer, ``on_batch(layer, heatmap)`` says new values arrived and
``on_error(message)`` reports what went wrong. A run goes to this process's warm
worker, a spawned process that holds TensorFlow across runs and starts when the panel does
(:class:`~napari_patchheat.run_watch.RunWatcher`); a layer without a file is first written
to a temporary TIFF of its level on a worker thread. A QTimer on the GUI thread takes the run's
messages: ``Started`` adds the run's own heatmap and layer, each ``Progress`` fills them
(whichever heatmap is in use meanwhile), ``Warned`` is a napari warning, ``Finished`` and
``Failed`` end the run.
No TensorFlow here: it runs in the run's process only.
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, Container, ProgressBar, PushButton
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QTimer

from ..focus import VIEW_ONLY
from ..grid import FloatPair, PatchGrid
from ..heatmap import Heatmap
from ..inference import Progress
from ..options import RunOptions
from ..roi import scaled_roi
from ..run_watch import RunWatcher
from ..runner import (
    Failed,
    Finished,
    RunSpec,
    Started,
    Warned,
    array_to_tiff,
    close_shared_worker,
)
from .run_layers import name_region
from .slide_layer import LayerCache, SlideLayer
from .tf_loading import STARTING_TEXT, TensorFlowLoading
from .threads import Workers
from .view_focus import ViewFocusControl
from .warmup import WarmUp
from .widgets import TextLabel

RUN_POLL_MS = 100  # how often the GUI reads the run's messages (and refreshes the layer)
_OPEN: weakref.WeakSet[RunPanel] = weakref.WeakSet()  # panels not shut down (they share the worker)


@dataclass(frozen=True)
class RunRequest:
    """A run of the dock's parameters: the slide layer, the model (a built-in name or a file),
    the run's options (``options.level`` is a level of the layer's pyramid), the grid they
    give on that level and the name of the region of interest's layer ("": the whole slide)."""

    slide: SlideLayer
    model: str
    options: RunOptions
    grid: PatchGrid
    region: str = ""

    @property
    def level(self) -> int:
        """The pyramid level of the layer the run computes."""
        return self.options.level

    @property
    def downsample(self) -> FloatPair:
        """(y, x) level-0 pixels per pixel of that level."""
        return self.slide.downsamples[self.level]


@dataclass
class ActiveRun:
    """The run of the last Run: its request, whether its heatmap replaces the one in use, and
    once it has Started its own heatmap and layer."""

    request: RunRequest
    replace: bool
    preparing: bool = False  # its layer is being written to a temporary TIFF
    cancelled: bool = False  # cancelled while preparing
    heatmap: Heatmap | None = None
    layer: Any = None
    cached: int = 0  # patches already computed (the cache) when it started
    to_compute: int = 0  # patches it computes

    def show_counts(self, bar: Any, done: int) -> None:
        """The bar counts the cached patches as done: ``cached + done`` of ``cached +
        to_compute``."""
        bar.max = max(self.cached + self.to_compute, self.cached + done, 1)  # a pan adds some
        bar.value = self.cached + done


ShowHeatmap = Callable[[Heatmap, SlideLayer, bool], Any]


class RunPanel(Container):
    """Run, Cancel, the progress bar and the run's text (see the module's docstring).

    ``cache`` holds the temporary TIFFs per slide layer and its data (key ``("tiff", level)``);
    ``workers`` runs the TIFF writing.
    """

    def __init__(self, cache: LayerCache, workers: Workers, request: Callable[[], RunRequest],
                 show: ShowHeatmap, on_batch: Callable[[Any, Heatmap], None],
                 on_error: Callable[[str], None], viewer: Any = None):
        self.cache, self.workers, self.request = cache, workers, request
        self.show_heatmap, self.on_batch, self.on_error = show, on_batch, on_error
        self.handle: RunWatcher | None = None  # the run's process, from start until it ended
        self.active: ActiveRun | None = None
        self.closed = False
        self._tmp: Path | None = None
        self._n_tiffs = 0
        self.replace = CheckBox(text="replace the shown heatmap (else a new layer)", value=False)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=1, value=0)
        self.info = TextLabel()
        self.finished: list[Callable[[Finished], None]] = []  # after each run that completed
        self.view = ViewFocusControl(viewer, self)  # the run mode; the view sent to the run
        buttons = Container(widgets=[self.run_button, self.cancel_button, self.view.mode],
                            layout="horizontal", labels=False)
        super().__init__(labels=False, widgets=[buttons, self.replace, self.progress, self.info])
        # no Qt parent: Qt deletes a widget's children before its ``destroyed`` reaches the
        # dock's shutdown, which stops this timer
        self._timer = QTimer()
        self._timer.setInterval(RUN_POLL_MS)
        self._timer.timeout.connect(self.poll)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        _OPEN.add(self)
        self.loading = TensorFlowLoading(self.progress, self.info, lambda: self.running)
        self.run_button.changed.connect(self.loading.check)  # after run(): says it is queued
        self.loading.watch()  # starts the warm worker
        self.warm = WarmUp(request, lambda: self.running)  # warms the chosen model (warmup.py)

    @property
    def running(self) -> bool:
        """True from Run until the run's process has ended (or the run stopped before it)."""
        return self.handle is not None or (self.active is not None and self.active.preparing)

    # --- the run's spec ----------------------------------------------------------------------
    def spec(self) -> RunSpec:
        """The RunSpec of the dock's parameters; ValueError with a sentence when incomplete.

        A layer without a file is written to a temporary TIFF here, on the calling thread
        (:meth:`run` writes it on a worker thread).
        """
        request = self.request()
        if request.slide.path is not None:
            return _file_spec(request)
        path = self._layer_tiff(request)
        if path is None:
            folder, mpp = self._tiff_folder(request)
            path = array_to_tiff(request.slide.levels[request.level], folder, mpp)
            self._keep_tiff(request, request.slide.layer.data, path)
        return _tiff_spec(request, path)

    def _layer_tiff(self, request: RunRequest) -> Path | None:
        """The temporary TIFF of the request's level of its layer's current data, if written."""
        return self.cache.get(request.slide.layer, ("tiff", request.level))

    def _tiff_folder(self, request: RunRequest) -> tuple[Path, float | None]:
        """A new folder for the temporary TIFF of the request's level, and that level's µm/px."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="patchheat-layers-"))
            atexit.register(shutil.rmtree, self._tmp, True)
        folder = self._tmp / f"{self._n_tiffs}"
        self._n_tiffs += 1
        folder.mkdir()
        mpp = request.slide.mpp
        return folder, None if mpp is None else mpp[1] * request.downsample[1]

    def _keep_tiff(self, request: RunRequest, data: Any, path: Path) -> None:
        if request.slide.layer.data is data:  # else the pixels were replaced while written
            self.cache.set(request.slide.layer, ("tiff", request.level), path)

    # --- starting and stopping -----------------------------------------------------------------
    def run(self, *_: Any) -> bool:
        """Start a run of the dock's parameters in its own process; False if it cannot start."""
        if self.running:
            self.on_error("A run is in progress: cancel it first.")
            return False
        try:
            request = self.request()
            tiff = self._layer_tiff(request) if request.slide.path is None else None
            folder = self._tiff_folder(request) \
                if request.slide.path is None and tiff is None else None
        except (ValueError, OSError) as exc:
            self.on_error(str(exc))
            return False
        self.begin(request)
        if request.slide.path is not None:
            self._launch(_file_spec(request))
        elif tiff is not None:
            self._launch(_tiff_spec(request, tiff))
        else:  # no file behind the layer: write the level as a TIFF off the GUI thread first
            assert folder is not None
            self._write_tiff_then_launch(request, *folder)
        return True

    def begin(self, request: RunRequest) -> ActiveRun:
        """Make ``request`` the active run, whose messages :meth:`handle_messages` applies."""
        self.active = ActiveRun(request, replace=bool(self.replace.value))
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.progress.value = 0
        return self.active

    def _write_tiff_then_launch(self, request: RunRequest, folder: Path,
                                mpp: float | None) -> None:
        run, data = self.active, request.slide.layer.data
        assert run is not None
        run.preparing = True
        self.info.value = "writing the layer to a temporary TIFF…"

        def written(path: Path) -> None:
            self._keep_tiff(request, data, path)
            run.preparing = False
            if self.closed or self.active is not run:
                return
            if run.cancelled:
                self._end("cancelled before the run started")
            else:
                self._launch(_tiff_spec(request, path))

        def failed(exc: Exception) -> None:
            run.preparing = False
            if not self.closed and self.active is run:
                self._end("run failed: could not write the layer to a temporary TIFF")
                self.on_error(f"Could not write the layer to a temporary TIFF ({exc}); free "
                              "some disk space in the temporary folder and run again.")

        self.workers.start(array_to_tiff, request.slide.levels[request.level], folder, mpp,
                           returned=written, errored=failed)

    def _launch(self, spec: RunSpec) -> None:
        """Start ``spec``'s process and watch it."""
        try:
            self.handle = RunWatcher(self.view.spec(spec))
        except RuntimeError as exc:  # another dock's run holds the worker
            self._end("run not started: another run is in progress")
            self.on_error(str(exc))
            return
        except OSError as exc:
            self._end("run failed: the model's process did not start")
            self.on_error(f"The model's process did not start ({exc}); close other programs "
                          "and run again.")
            return
        self.info.value = STARTING_TEXT
        self._timer.start()
        self.view.launched()

    def cancel(self, *_: Any) -> None:
        """Ask the run to stop after its batch in progress; what is computed stays."""
        if self.handle is not None:
            self.handle.cancel()
            self.info.value = "cancelling after the batch in progress…"
        elif self.active is not None and self.active.preparing:
            self.active.cancelled = True
            self.info.value = "cancelling…"

    def shutdown(self) -> None:
        """The dock is gone (its Qt widgets may be deleted already): stop polling, cancel the
        run and, when no other dock is open, end the warm worker off the GUI thread (it exits,
        or is killed after ``runner.CLOSE_SHARED_S``). Safe to call again."""
        if self.closed:
            return
        self.closed = True
        self._timer.stop()
        self.loading.stop()
        self.view.stop()
        self.warm.stop()
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        _OPEN.discard(self)
        if not _OPEN:  # not a daemon: an exiting napari waits for it (bounded)
            threading.Thread(target=close_shared_worker, name="patchheat-close-worker").start()

    # --- the run's messages --------------------------------------------------------------------
    def poll(self) -> None:
        """Take the run's messages (GUI thread, never waits)."""
        if self.handle is None or self.closed:
            self._timer.stop()
            return
        self.handle_messages(self.handle.drain())

    def handle_messages(self, messages: list[Any]) -> None:
        """Apply the active run's messages (GUI thread): batches go into the run's own heatmap
        and layer; then its layer, the progress bar and ``on_batch`` are refreshed once."""
        run, last = self.active, None
        for msg in messages:
            if isinstance(msg, Started):
                self._on_started(msg)
            elif isinstance(msg, Progress) and run is not None and run.heatmap is not None:
                run.heatmap.update(msg.indices, msg.values)
                last = msg
            elif isinstance(msg, Warned):  # e.g. the cache cannot be written: the run goes on
                show_warning(f"PatchHeat: {msg.message}")
            elif isinstance(msg, Finished):
                self._on_finished(msg)
            elif isinstance(msg, Failed):
                self._end(f"run failed: {msg.message}")
                self.on_error(f"The run failed: {msg.message}")
        if last is not None and run is not None and run.heatmap is not None:
            run.show_counts(self.progress, last.done)
            if self.running:
                self.info.value = (f"{run.cached + last.done:,} / {run.cached + last.total:,} "
                                   f"patches, {last.patches_per_s:,.0f} patches/s, "
                                   f"{last.eta_text} left")
            self.on_batch(run.layer, run.heatmap)

    def _on_started(self, msg: Started) -> None:
        run = self.active
        assert run is not None
        request = run.request
        heatmap = Heatmap.from_metadata(msg.metadata, np.array(msg.values, np.float32))
        if heatmap.grid != request.grid:
            if self.handle is not None:
                self.handle.cancel()
            self._end("run stopped: the file's level differs from the layer's")
            self.on_error(f"The slide file's level {request.level} is {heatmap.grid.height} x "
                          f"{heatmap.grid.width} px but the layer's is {request.grid.height} x "
                          f"{request.grid.width} px; open the slide with the napari-patchheat "
                          "reader.")
            return
        slide = request.slide
        if slide.path is None:  # the worker saw one level as a TIFF: put it back on the pyramid
            heatmap.level, heatmap.downsample = request.level, request.downsample
            heatmap.slide_path, heatmap.mpp = "", slide.mpp
            heatmap.slide_shape = slide.level_shape(0)
        name_region(heatmap, request.region)  # its own layer, named after the region
        run.cached, run.to_compute = heatmap.n_computed, msg.total
        run.show_counts(self.progress, 0)
        self.info.value = f"{run.cached:,} patches from the cache, {msg.total:,} to compute"
        run.layer = self.show_heatmap(heatmap, slide, run.replace)
        run.heatmap = heatmap

    def _on_finished(self, msg: Finished) -> None:
        run = self.active
        if msg.cancelled:
            self._end(f"cancelled: {msg.done:,} patches computed by this run; Run resumes")
            return
        text = f"done: {msg.done:,} patches computed by this run"
        if run is not None:
            run.show_counts(self.progress, msg.done)
            text += f", {run.cached:,} from the cache" if run.cached else ""
        if self.view.view_mode == VIEW_ONLY:  # no notification at each pan's run
            self._end(f"this view {text}; pan to compute more")
            return self._call_finished(msg)
        self._end(text)
        name = getattr(run.layer, "name", "the heatmap") if run is not None else "the heatmap"
        show_info(f"PatchHeat: {name} is done ({text.removeprefix('done: ')}).")
        self._call_finished(msg)

    def _call_finished(self, msg: Finished) -> None:
        for callback in self.finished:
            callback(msg)

    def _end(self, text: str) -> None:
        self._timer.stop()
        self.handle = None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.info.value = text


def _file_spec(request: RunRequest) -> RunSpec:
    """The run of a layer read from a file: the worker opens that file at the same level."""
    assert request.slide.path is not None
    return RunSpec(str(request.slide.path), request.model, request.options)


def _tiff_spec(request: RunRequest, tiff: Path) -> RunSpec:
    """The run of a layer without a file: the worker opens its level written as ``tiff``."""
    dy, dx = request.slide.downsamples[request.options.level]
    roi = scaled_roi(request.options.roi, 1 / dy, 1 / dx)  # the TIFF's level 0 is this level
    return RunSpec(str(tiff), request.model,
                   dataclasses.replace(request.options, level=0, roi=roi))
