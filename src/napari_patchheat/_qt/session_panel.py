"""The "Save session..." and "Open session..." row on top of the dock, there before any
heatmap (see ``session_io.py``).

Opening a session whose slide moved asks once where it is (a file dialog; another missing
slide of the same name in the folder chosen is found without asking) and restores the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.widgets import Container, PushButton

from ..files import WriteError
from ..session import SESSION_SUFFIX, SessionError
from ..slide import SlideError
from .session_io import attach_dock, detach_dock, missing_slides, open_session, save_session

SESSION_FILTER = f"napari-patchheat session (*{SESSION_SUFFIX})"


def ask_file(save: bool, caption: str, name_filter: str) -> str:
    """A file chosen in Qt's dialog ('' when cancelled)."""
    from qtpy.QtWidgets import QFileDialog

    ask = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
    return str(ask(None, caption, "", name_filter)[0])


class SessionPanel(Container):
    """A row of two buttons saving the viewer (and the dock's parameters) as a session and
    opening one."""

    def __init__(self, viewer: Any, dock: Any, on_error: Callable[[str], None]):
        self.save_button = PushButton(text="Save session...")
        self.open_button = PushButton(text="Open session...")
        super().__init__(layout="horizontal", labels=False,
                         widgets=[self.save_button, self.open_button])
        self.margins = (0, 0, 0, 0)
        self.viewer, self.dock, self.on_error = viewer, dock, on_error
        self.save_button.changed.connect(self.save)
        self.open_button.changed.connect(self.open)

    def attach(self) -> None:
        """Make the (built) dock the viewer's for sessions, taking the parameters and region
        numbers of a session opened before it (``patchheat open SESSION``), until it closes."""
        viewer, dock = self.viewer, self.dock
        attach_dock(viewer, dock)
        self.native.destroyed.connect(lambda *_: detach_dock(viewer, dock))

    def save(self, *_: Any) -> Path | None:
        """Ask where, save the session there; its path (None when cancelled or it failed)."""
        path = ask_file(True, "Save session", SESSION_FILTER)
        if not path:
            return None
        if not path.lower().endswith(SESSION_SUFFIX):
            path += SESSION_SUFFIX
        try:
            return save_session(self.viewer, path, dock=self.dock)
        except WriteError as exc:
            self.on_error(str(exc))  # the folder, why and what to do
            return None

    def open(self, *_: Any) -> list[Any] | None:
        """Ask for a session and open it, asking once where each moved slide is; the layers
        added (None when cancelled or it failed)."""
        path = ask_file(False, "Open session", SESSION_FILTER)
        if not path:
            return None
        try:
            slide_paths: dict[str, str] = {}
            for ref in missing_slides(path):
                found = [p for p in (os.path.join(os.path.dirname(new), os.path.basename(ref))
                                     for new in slide_paths.values()) if os.path.exists(p)]
                where = found[0] if found else ask_file(
                    False, f"Where is the slide {os.path.basename(ref)} now?", "")
                if not where:
                    return None
                slide_paths[ref] = where
            return open_session(path, self.viewer, slide_paths, dock=self.dock)
        except (SessionError, SlideError) as exc:
            self.on_error(str(exc))
            return None
