"""What the canvas shows, sent to the dock's run as the user pans and zooms (focus.py): the run
computes the patches in view first, or in "this view" mode only those, and a pan after such a
run has finished runs the new view (the cache keeps what was done, so only new patches cost).
A pan that reaches the run only after it has walked its view to the end (the run says which
view it completed) runs when that run's end arrives; a view that shows no patch outside the
last one sent (a zoom in) runs nothing.

The view goes to the run as a rectangle of the run's level, in level pixels (the coordinate
contract of docs/design.md: world -> level-0 pixel edges -> / the level's downsample), at most
once per ``VIEW_SEND_MS`` while the camera moves (the first move at once).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox
from qtpy.QtCore import QTimer

from ..focus import VIEW_FIRST, VIEW_ONLY, Rect, view_patches
from ..grid import PatchGrid
from ..runner import Finished, RunSpec
from .canvas import camera, view_rect_world
from .preview import world_rect_to_level0

if TYPE_CHECKING:
    from .run_panel import RunPanel, RunRequest

VIEW_SEND_MS = 150  # at most one view sent to the run per this many ms while the camera moves
RUN_MODES = {"whole slide, view first": VIEW_FIRST, "this view (pans extend)": VIEW_ONLY}


def level_view(viewer: Any, request: RunRequest) -> Rect:
    """The rectangle the canvas shows, in level pixels of the request's level."""
    y0, x0, y1, x1 = world_rect_to_level0(request.slide, view_rect_world(viewer))
    dy, dx = request.downsample
    return y0 / dy, x0 / dx, y1 / dy, x1 / dx


class ViewFocusControl:
    """The run mode (``mode``, a ComboBox for the Run section) and the camera watch that sends
    the view to ``panel``'s run; ``viewer`` None (no canvas) sends nothing."""

    def __init__(self, viewer: Any, panel: RunPanel):
        self.viewer, self.panel = viewer, panel
        self.mode = ComboBox(choices=list(RUN_MODES), value=next(iter(RUN_MODES)),
                             tooltip="Whole slide: what is in view first, then around it, "
                             "then the rest. This view: only what is in view; a pan computes "
                             "the new view.")
        self.sent: Rect | None = None  # the last view sent to a run
        self.follow = False  # a "this view" run has finished: a pan runs the new view
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(VIEW_SEND_MS)
        self._timer.timeout.connect(self._send_moved)
        self._moved = False  # the camera moved since the last view sent
        self._events = [] if viewer is None else [camera(viewer).events.center,
                                                  camera(viewer).events.zoom]
        for event in self._events:
            event.connect(self.schedule)
        panel.finished.append(self._on_finished)

    @property
    def view_mode(self) -> str:
        """The chosen mode (focus.VIEW_MODES)."""
        return RUN_MODES[self.mode.value]

    def spec(self, spec: RunSpec) -> RunSpec:
        """``spec`` in the chosen mode (reading order where there is no canvas)."""
        return dataclasses.replace(spec, view_mode=self.view_mode if self._events else "")

    def launched(self) -> None:
        """A run was submitted: give it the view now (it reads its first block after)."""
        self.follow = False
        self.send_now()

    def schedule(self, *_: Any) -> None:
        """The camera moved: send the view now, or, within VIEW_SEND_MS of the last one sent,
        when that time is up (moves meanwhile coalesce)."""
        if self._timer.isActive():
            self._moved = True
            return
        self.send_now()
        self._timer.start()

    def _send_moved(self) -> None:
        if self._moved:
            self._moved = False
            self.send_now()
            self._timer.start()

    def send_now(self) -> None:
        """Send the view to the run in progress, or, after a finished "this view" run, run
        the new view."""
        panel, active = self.panel, self.panel.active
        if self.viewer is None or panel.closed or active is None:
            return
        view = level_view(self.viewer, active.request)
        if panel.handle is not None:
            panel.handle.set_view(view)
            self.sent = view
        elif self.follow and self.view_mode == VIEW_ONLY and not panel.running \
                and self._shows_more(view, active.request.grid):
            # the cache holds what was done: only the new patches are computed; a run that
            # cannot start (parameters changed meanwhile) said why once: pans stop following
            if not panel.run():
                self.follow = False

    def _shows_more(self, view: Rect, grid: PatchGrid) -> bool:
        """True if ``view`` shows patches of ``grid`` outside the last view sent."""
        if self.sent is None:
            return True
        rows, cols = view_patches(grid, view)
        done_rows, done_cols = view_patches(grid, self.sent)
        return len(rows) > 0 and len(cols) > 0 and not (
            done_rows.start <= rows.start and rows.stop <= done_rows.stop
            and done_cols.start <= cols.start and cols.stop <= done_cols.stop)

    def _on_finished(self, msg: Finished) -> None:
        self.follow = self.view_mode == VIEW_ONLY
        if self.follow and msg.view is not None:  # what the run did; a later view runs next
            self.sent = msg.view
            QTimer.singleShot(0, self.send_now)  # after the run's last messages are applied

    def stop(self) -> None:
        """Stop watching the camera (the dock is closing)."""
        self._timer.stop()
        for event in self._events:
            event.disconnect(self.schedule)
        self._events = []
