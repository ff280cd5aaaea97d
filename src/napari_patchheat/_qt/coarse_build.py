"""A huge slide's zoomed-out views in napari: blank until built, built off the GUI thread.

A slide whose computed levels would decode more than ``COARSE_BUILD_MIN_PX`` pixels
(:func:`~napari_patchheat.slide.coarse.needs_build`) is shown with those levels blank (napari
would otherwise decode the whole image on the GUI thread for the first zoomed-out view), while
:func:`~napari_patchheat.slide.coarse.build_coarse_levels` runs on a worker thread with a napari
progress bar (the dock shows it too, with Cancel: ``build_status.py``). Removing the layer (or
closing the viewer) cancels the build; when it is done the layer's data becomes the built
levels. Where the build fails (a full disk, a read-only cache) a warning says so and the layer
gets the lazily computed levels, as before.
"""

from __future__ import annotations

import threading
from typing import Any

import dask.array as da
import numpy as np

from ..slide import CHUNK_TARGET_PX, Slide
from ..slide.coarse import (
    BuildCancelled,
    build_and_use_levels,
    unbuilt_warning,
)

COARSE_PENDING_KEY = "coarse_pending"  # layer.metadata: True while the zoomed-out views build
CANCELLED = "cancelled"  # ... and this once their build was cancelled (they stay blank)
COARSE_POLL_MS = 200  # how often the progress bar follows the build
_BUILDS: set[CoarseBuild] = set()  # running builds (a collected worker crashes Qt)


def is_pending(layer: Any) -> bool:
    """True while ``layer``'s zoomed-out views are being built (they are blank)."""
    return bool(getattr(layer, "metadata", {}).get(COARSE_PENDING_KEY))


def pending_levels(slide: Slide) -> list[da.Array]:
    """``slide``'s stored levels, then blank (black) arrays of its computed levels' shapes."""
    blank = [da.zeros(lv.shape, np.uint8, chunks=(CHUNK_TARGET_PX, CHUNK_TARGET_PX, 3))
             for lv in slide.levels[slide.stored_level_count:]]
    return list(slide.levels[: slide.stored_level_count]) + blank


class CoarseBuild:
    """The build of ``slide``'s zoomed-out views for its layers in ``viewer`` (those whose
    metadata path is the slide's and that are pending)."""

    def __init__(self, viewer: Any, slide: Slide) -> None:
        from napari.qt.threading import create_worker
        from napari.utils import progress
        from qtpy.QtCore import QTimer

        self.viewer, self.slide = viewer, slide
        self.cancel = threading.Event()
        self.done, self.total = 0, 1
        self.bar = progress(total=100, desc=f"{slide.path.name}: building the zoomed-out views")
        self.timer = QTimer()
        self.timer.timeout.connect(self._show_progress)
        self.timer.start(COARSE_POLL_MS)
        self.worker = create_worker(self._build, _ignore_errors=True)
        self.worker.returned.connect(self._built)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._finished)
        viewer.layers.events.removed.connect(self._on_removed)
        _BUILDS.add(self)
        self.worker.start()

    def _build(self) -> Slide:
        """On the worker thread: build, then read the computed levels from the built file."""
        return build_and_use_levels(self.slide, progress=self._progress, cancel=self.cancel)

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    @property
    def percent(self) -> int:
        """How much of the build is done, in %."""
        return 100 * self.done // max(self.total, 1)

    def _show_progress(self) -> None:
        if self.percent > self.bar.n:
            self.bar.update(self.percent - self.bar.n)

    def layers(self) -> list[Any]:
        """The viewer's layers waiting for these zoomed-out views."""
        path = str(self.slide.path)
        return [layer for layer in self.viewer.layers
                if is_pending(layer) and layer.metadata.get("path") == path]

    def _on_removed(self, *_: Any) -> None:
        if not self.layers():
            self.cancel.set()

    def _built(self, slide: Slide) -> None:
        self._show(list(slide.levels))

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, BuildCancelled):  # the layers that remain stay blank zoomed out
            for layer in self.layers():
                layer.metadata[COARSE_PENDING_KEY] = CANCELLED
            return
        from napari.utils.notifications import show_warning

        show_warning(f"PatchHeat: {unbuilt_warning(self.slide.path, exc)}")
        self._show(list(self.slide.levels))

    def _show(self, levels: list[Any]) -> None:
        """Give the waiting layers ``levels``."""
        for layer in self.layers():
            layer.metadata.pop(COARSE_PENDING_KEY, None)
            layer.data = levels

    def _finished(self) -> None:
        self.timer.stop()
        self.bar.close()
        try:
            self.viewer.layers.events.removed.disconnect(self._on_removed)
        except (RuntimeError, TypeError, ValueError):  # the viewer is gone
            pass
        _BUILDS.discard(self)


def start_build(slide: Slide) -> bool:
    """Start building ``slide``'s zoomed-out views for napari's current viewer; False where
    there is no viewer (the layer then gets the lazily computed levels)."""
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return False
    if not any(b.viewer is viewer and b.slide.path == slide.path for b in _BUILDS):
        CoarseBuild(viewer, slide)  # else the running one fills this layer as well
    return True


def running_builds() -> list[CoarseBuild]:
    """The builds still running."""
    return list(_BUILDS)


def build_of(layer: Any) -> CoarseBuild | None:
    """The running build of ``layer``'s zoomed-out views, or None."""
    return next((b for b in _BUILDS if any(x is layer for x in b.layers())), None)
