"""The dock's "Run on all open slides": the tasks of ``patchheat batch``, queued from napari.

The slides are the viewer's image layers read from files (heatmaps left out); the model and the
options are the dock's (``request()``, as Run's), the formats Export's (OME-TIFF by default: File
> Open reopens it); a built-in model on a fluorescence slide gets that slide's warning line. The
batch (:func:`~napari_patchheat.batch.run_batch`) runs on a worker thread against a LocalCluster
of worker processes (``local_cluster_shape``: on 2 cores two of one thread), started by the
first batch (on that thread) and kept for the next, or against the scheduler whose address is
typed in the panel.
TensorFlow runs in the cluster's worker processes only, never in napari's. A QTimer on the GUI
thread shows each slide's line (patches as its workers report them, then ok, skipped or the
failure) and opens each finished heatmap over its slide (``show``): its file read on a worker
thread, one heatmap an event-loop turn. When the dock closes, the batch is cancelled and the
clients and the local cluster are closed off the GUI thread, its worker processes killed if they
outlast ``CLOSE_S``.

The local cluster's scheduler runs in napari's process (on dask's IO-loop thread): its dask
dashboard imports bokeh there, 0.3 s of CPU that held the GIL and stalled the GUI 0.27 s under
load, so the dashboard is the user's choice ("dask dashboard", off by default); a scheduler
typed in the panel shows its own dashboard's link, at no cost here.
"""

from __future__ import annotations

import contextlib
import html
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
)
from qtpy.QtCore import QTimer

from ..export import FORMATS, read_ome_tiff, read_ome_zarr
from ..heatmap import Heatmap
from ..jobs import JobOutputs
from ..manifest import Manifest, SlideRow
from ..slide.location import same_file_key, source_name
from .heatmap_panel import FORMAT_LABELS
from .run_panel import RunRequest, ShowHeatmap
from .slide_layer import SlideLayer, is_slide_candidate
from .threads import Workers
from .widgets import TextLabel

BATCH_POLL_MS = 200  # how often the GUI shows the batch's progress
STOP_S = 1.0  # on close: how long a cancelled batch may take to stop before its client closes
CLOSE_S = 1.0  # ... and the clients and the local cluster each to close (then: killed, < 5 s)
BATCH_DEFAULT_FORMATS = ("ometiff",)  # File > Open reopens them over their slides
READERS: dict[str, Callable[[Any], Heatmap]] = {
    "npz": Heatmap.load_npz, "ometiff": read_ome_tiff, "omezarr": read_ome_zarr}


class BatchPanel(Container):
    """The scheduler address, the output folder, "Run on all open slides", a bar over the
    slides, the dask dashboard's link when the scheduler has one, and a line per slide (see the
    module's docstring)."""

    def __init__(self, viewer: Any, workers: Workers, request: Callable[[], RunRequest],
                 show: ShowHeatmap, on_error: Callable[[str], None]):
        self.viewer, self.workers, self.request = viewer, workers, request
        self.show_heatmap, self.on_error = show, on_error
        self.scheduler = LineEdit(label="scheduler", value="",
                                  tooltip="a dask scheduler's address (tcp://host:8786) or "
                                          "scheduler file; empty: a local cluster")
        self.out = FileEdit(label="output folder", mode=FileDialogMode.EXISTING_DIRECTORY,
                            value=None,
                            tooltip="where each slide's heatmap and batch.csv go; empty: a new "
                                    "temporary folder")
        # Export's formats; a slide's heatmap opens from its .npz, OME-TIFF or OME-Zarr
        self.formats = {f: CheckBox(text=FORMAT_LABELS.get(f, f), value=f in BATCH_DEFAULT_FORMATS)
                        for f in ("npz", *FORMATS)}
        self.with_dashboard = CheckBox(
            text="dask dashboard", value=False,
            tooltip="the local cluster with dask's dashboard (a link under the bar); its start "
                    "imports bokeh in napari's process, a short stall of the viewer")
        self.run_button = PushButton(text="Run on all open slides")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(min=0, max=1, value=0)
        self.info = TextLabel()
        self.dashboard = Label(visible=False)  # a link that opens in the browser
        self.dashboard.native.setOpenExternalLinks(True)
        super().__init__(labels=False, widgets=[
            Container(widgets=[self.scheduler, self.out]),
            Container(widgets=list(self.formats.values()), labels=False),
            self.with_dashboard,
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal",
                      labels=False),
            self.progress, self.dashboard, self.info])
        self.running = False
        self.slide_layers: dict[str, SlideLayer] = {}  # absolute path -> its layer
        self.opened: set[str] = set()  # slides whose heatmap this batch opened (or opens)
        self._to_open: deque[tuple[str, Heatmap]] = deque()  # read, to show one a turn
        self._reading = 0  # heatmap files being read on worker threads
        self._returned = False  # the running batch returned (its heatmaps may still open)
        self._clients: dict[str, Any] = {}  # address ('' for the local cluster) -> Client
        self._cluster: Any = None
        self._local_dashboard = False  # whether the local cluster serves dask's dashboard
        self._lock = threading.Lock()
        self._progress: Any = None  # the batch's last BatchProgress (set on other threads)
        self._dashboard_link = ""  # the running batch's scheduler's (set on the worker thread)
        self._warnings: list[str] = []  # the running batch's per-slide warnings (same)
        self._starting = ""  # the info line until the first progress
        self._cancel = threading.Event()  # the running batch's (run_batch's ``cancel``)
        self._idle = threading.Event()  # set while no batch thread runs
        self._idle.set()
        self._connecting = False  # the batch's thread is making its client (and cluster)
        self.closed = False
        # no Qt parent: Qt deletes a widget's children before its ``destroyed`` reaches the
        # dock's shutdown, which stops this timer
        self._timer = QTimer()
        self._timer.setInterval(BATCH_POLL_MS)
        self._timer.timeout.connect(self.poll)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)

    def open_slides(self) -> dict[str, SlideLayer]:
        """Absolute path -> layer of each image layer read from a slide file."""
        slides: dict[str, SlideLayer] = {}
        for layer in self.viewer.layers:
            if is_slide_candidate(layer):
                slide = SlideLayer.from_layer(layer)
                if slide.path is not None:
                    slides.setdefault(same_file_key(slide.path), slide)
        return slides

    def run(self, *_: Any) -> bool:
        """Queue a batch of the open slides with the dock's model and options; False if it
        cannot start (the reason goes to ``on_error``)."""
        if self.running:
            self.on_error("A batch is in progress: wait for it to finish.")
            return False
        try:
            request = self.request()
        except ValueError as exc:
            self.on_error(str(exc))
            return False
        formats = tuple(f for f, box in self.formats.items() if box.value)
        if not formats:
            self.on_error("Tick at least one format for the batch's heatmaps (OME-TIFF: "
                          "File > Open reopens it over its slide).")
            return False
        self.slide_layers = self.open_slides()
        if not self.slide_layers:
            self.on_error("Open slides from files first: layers without a file cannot go to "
                          "a cluster.")
            return False
        text = str(self.out.value) if self.out.value is not None else ""
        out = Path(text) if text not in ("", ".") else Path(
            tempfile.mkdtemp(prefix="patchheat-batch-"))
        self.running, self.opened, self._progress, self._returned = True, set(), None, False
        with self._lock:
            self._dashboard_link = ""  # this batch's scheduler's, once its client is made
            self._warnings = []
        self._cancel = threading.Event()
        self._idle.clear()
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.progress.max, self.progress.value = len(self.slide_layers), 0
        address = self.scheduler.value.strip()
        self._starting = (f"starting: {len(self.slide_layers)} slides, results in {out}"
                          + ("" if address or self._cluster is not None else
                             "\nstarting a local cluster of worker processes…"))
        self.info.value = self._starting
        self._timer.start()
        self.workers.start(self._run_batch, dict(self.slide_layers), request, out, address,
                           JobOutputs(formats=formats), self._cancel, self.with_dashboard.value,
                           returned=self._finished, errored=self._failed)
        return True

    def cancel(self, *_: Any) -> None:
        """Cancel the running batch: slides not finished stay pending (the next batch resumes
        them from the result cache); the tasks running stop at their next report."""
        if self.running:
            self._cancel.set()
            self.cancel_button.enabled = False
            self.info.value += "\ncancelling…"

    # --- on the worker thread ----------------------------------------------------------------
    def _run_batch(self, slides: dict[str, SlideLayer], request: RunRequest, out: Path,
                   address: str, outputs: JobOutputs, cancel: threading.Event,
                   dashboard: bool) -> Manifest:
        from ..batch import run_batch

        try:
            self._check_fluorescence(slides, request.model)
            with self._lock:
                self._connecting = True
            try:
                client = self._client(address, dashboard)
            finally:
                with self._lock:
                    self._connecting = False
            with self._lock:  # a local cluster without one still names a (dead) link
                self._dashboard_link = (client.dashboard_link or "") if (
                    address or self._local_dashboard) else ""
            return run_batch(list(slides), request.model, request.options, out, client,
                             outputs=outputs, on_progress=self._record, cancel=cancel)
        finally:
            self._idle.set()
            if self.closed:  # the dock closed meanwhile (maybe while the cluster was made)
                self._close_clients()

    def _check_fluorescence(self, slides: dict[str, SlideLayer], model: str) -> None:
        """A warning per fluorescence slide when the model is a built-in (brightfield) one,
        as Run's status line and ``patchheat run`` give."""
        from ..models import is_builtin
        from ..tissue import FLUORESCENCE_MODEL_WARNING, is_fluorescence

        if not is_builtin(model):
            return
        for path, slide in slides.items():
            if is_fluorescence(slide):
                with self._lock:
                    self._warnings.append(f"{source_name(path)}: warning: "
                                          + FLUORESCENCE_MODEL_WARNING.format(model=model))

    def _client(self, address: str, dashboard: bool) -> Any:
        """The client of ``address`` (a scheduler file or address), or of this panel's local
        cluster of worker processes for '' (with a dashboard if ``dashboard``: a cluster
        without one is made again with one); made once, kept for the next batch."""
        if not address and dashboard and self._cluster is not None \
                and not self._local_dashboard:
            self._close_clients(local_only=True)
        if address not in self._clients:
            from ..batch import connect_scheduler
            from ..batch.client import local_cluster, local_cluster_shape, shaped_client
            from ..pipeline import run_threads

            if address:  # asked who it is first: one sentence within SCHEDULER_CONNECT_S
                self._clients[address] = connect_scheduler(address)
            else:  # worker processes: TensorFlow never in napari's
                shape = local_cluster_shape(run_threads(), in_process=False)
                self._cluster = local_cluster(shape, dashboard=dashboard)
                self._local_dashboard = dashboard
                self._clients[address] = shaped_client(self._cluster, shape)
        return self._clients[address]

    def _record(self, progress: Any) -> None:
        with self._lock:
            self._progress = progress

    # --- on the GUI thread -------------------------------------------------------------------
    def poll(self) -> None:
        """Show the batch's last progress and open the heatmaps finished since."""
        if self.closed:
            self._timer.stop()
            return
        with self._lock:
            progress, link, warnings = self._progress, self._dashboard_link, list(self._warnings)
        if link:
            self.dashboard.value = f'<a href="{html.escape(link)}">dask dashboard</a>: ' \
                                   f'{html.escape(link)}'
        self.dashboard.visible = bool(link)
        if progress is not None:
            self._show_rows(progress.manifest.rows, progress)
        elif warnings:
            self.info.value = "\n".join([self._starting, *warnings])

    def _show_rows(self, rows: list[SlideRow], progress: Any = None) -> None:
        with self._lock:
            lines = list(self._warnings)
        for row in rows:
            name = source_name(row.slide)
            if row.status == "pending":
                done, total = progress.slide_patches(row) if progress is not None else (0, 0)
                lines.append(f"{name}: {done:,} / {total:,} patches" if total else
                             f"{name}: queued")
            else:
                lines.append(f"{name}: {row.error or row.status}")
                self._open(row)
        self.progress.value = sum(r.status != "pending" for r in rows)
        self.info.value = "\n".join(lines)

    def _open(self, row: SlideRow) -> None:
        """Open ``row``'s heatmap over its slide, once per batch: its file read on a worker
        thread, then shown on its own event-loop turn (:meth:`_open_next`)."""
        fmt = next((f for f in READERS if f in row.outputs), None)
        if row.slide in self.opened or fmt is None:
            return
        self.opened.add(row.slide)
        slide = self.slide_layers.get(row.slide)
        if slide is not None and slide.layer in self.viewer.layers:
            self._reading += 1
            self.workers.start(READERS[fmt], row.outputs[fmt],
                               returned=lambda heatmap: self._read(row.slide, heatmap),
                               errored=lambda exc: self._read_failed(row.slide, exc))

    def _read(self, slide: str, heatmap: Heatmap) -> None:
        self._reading -= 1
        if self.closed:
            return
        self._to_open.append((slide, heatmap))
        if len(self._to_open) == 1:  # else the one before schedules it
            QTimer.singleShot(0, self._open_next)

    def _read_failed(self, slide: str, exc: Exception) -> None:
        self._reading -= 1
        if not self.closed:
            self.on_error(f"The heatmap of {source_name(slide)} could not be opened: {exc}")
            self._end_when_shown()

    def _open_next(self) -> None:
        """Show the first heatmap read and not shown yet; the next on the next turn: napari
        builds a layer, its colour bar and their shaders in 0.3-0.5 s (1.2 s under load)."""
        if self.closed or not self._to_open:
            return
        slide_key, heatmap = self._to_open[0]
        slide = self.slide_layers.get(slide_key)
        try:
            if slide is not None and slide.layer in self.viewer.layers:
                self.show_heatmap(heatmap, slide, False)
        finally:
            self._to_open.popleft()
            if self._to_open:
                QTimer.singleShot(0, self._open_next)
            else:
                self._end_when_shown()

    def _end_when_shown(self) -> None:
        """End the batch once it returned and its heatmaps are shown."""
        if self._returned and self.running and not self._reading and not self._to_open:
            self._end()

    def _finished(self, manifest: Manifest) -> None:
        self._timer.stop()
        if self.closed:
            return
        self.poll()  # a batch done before the first poll still shows its dashboard link
        self._show_rows(manifest.rows)
        left = self._cancel.is_set() and any(r.status == "pending" for r in manifest.rows)
        self.info.value += f"\n{manifest.summary}" + (
            "; cancelled: the next batch resumes the pending ones" if left else "")
        self._returned = True
        self._end_when_shown()

    def _failed(self, exc: Exception) -> None:
        self._timer.stop()
        if self.closed:  # closing the clients under the batch fails it: nothing to say
            return
        self._end()
        self.on_error(f"The batch failed: {exc}")

    def _end(self) -> None:
        self.running = False
        self.run_button.enabled, self.cancel_button.enabled = True, False

    def shutdown(self) -> None:
        """The dock is gone (its Qt widgets may be deleted already): cancel the batch, stop
        polling, and close the clients and the local cluster off the GUI thread (bounded:
        the batch gets STOP_S to stop, the cluster CLOSE_S to close, then its worker processes
        are killed). Safe to call again."""
        if self.closed:
            return
        self.closed = True
        self._cancel.set()
        self._timer.stop()
        # not a daemon: an exiting napari waits for it (bounded)
        threading.Thread(target=self._close_when_stopped, name="patchheat-close-batch").start()

    def _close_when_stopped(self) -> None:
        self._idle.wait(STOP_S)
        self._close_clients()

    def _close_clients(self, local_only: bool = False) -> None:
        """Close the clients (``local_only``: the local cluster's) and the local cluster (any
        thread; each once), then kill the cluster's worker processes still alive. While the
        batch's thread makes them, it closes them itself once made (``local_only``: it is that
        thread)."""
        with self._lock:
            if self._connecting and not local_only:
                return
            keys = [""] if local_only else list(self._clients)
            clients = [self._clients.pop(k) for k in keys if k in self._clients]
            cluster, self._cluster = self._cluster, None
        pids = [] if cluster is None else [getattr(n, "pid", None)
                                           for n in list(cluster.workers.values())]
        for client in clients:
            with contextlib.suppress(Exception):  # a scheduler gone already: nothing to close
                client.close(timeout=CLOSE_S)
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close(timeout=CLOSE_S)
            _kill(pid for pid in pids if pid is not None)


def _kill(pids: Any) -> None:
    """Kill this process's child processes ``pids`` (and their children) where still alive
    (their nannies reap them)."""
    import psutil  # distributed's dependency

    for pid in pids:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.ppid() != os.getpid():  # reaped, and the number reused since
                continue
            for p in [*proc.children(recursive=True), proc]:
                with contextlib.suppress(psutil.Error):
                    p.kill()
