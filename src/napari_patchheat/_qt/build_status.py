"""The dock's line for a huge slide whose zoomed-out views are being built: progress, Cancel."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container, PushButton

from .coarse_build import COARSE_POLL_MS, build_of, is_pending
from .widgets import TextLabel


class BuildStatus(Container):
    """The dock's line for a slide layer whose zoomed-out views are being built: progress and
    a Cancel button; after a cancel, what to do. Hidden for every other layer."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.info = TextLabel()
        self.cancel_button = PushButton(text="Cancel")
        super().__init__(layout="horizontal", labels=False,
                         widgets=[self.info, self.cancel_button], visible=False)
        self.layer: Any = None
        self.closed = False
        self.timer = QTimer()  # no Qt parent: stopped by shutdown, never deleted under it
        self.timer.timeout.connect(self.refresh)
        self.cancel_button.changed.connect(self.cancel)

    def follow(self, layer: Any) -> None:
        """Show the build of ``layer`` (None: no layer)."""
        self.layer = layer
        self.refresh()

    def refresh(self) -> None:
        """Update the line from the build (every COARSE_POLL_MS while one runs)."""
        if self.closed:
            self.timer.stop()
            return
        build = build_of(self.layer) if self.layer is not None else None
        self.visible = self.layer is not None and is_pending(self.layer)
        self.cancel_button.visible = build is not None
        if build is not None:
            self.info.value = f"building the zoomed-out views: {build.percent}%"
            if not self.timer.isActive():
                self.timer.start(COARSE_POLL_MS)
            return
        self.timer.stop()
        if self.visible:
            self.info.value = ("the zoomed-out views were not built (cancelled): they stay "
                               "blank; open the slide again to build them")

    def cancel(self, *_: Any) -> None:
        """Stop the build of the followed layer's zoomed-out views."""
        build = build_of(self.layer)
        if build is not None:
            build.cancel.set()

    def shutdown(self) -> None:
        """Stop following (the dock is closing; its Qt widgets may be deleted already); the
        build goes on (closing the viewer removes its layers, which cancels it)."""
        self.closed = True
        self.timer.stop()
