"""``SlideError``, the one exception of slide reading (public as ``napari_patchheat.slide``'s)."""

from __future__ import annotations

from pathlib import Path


class SlideError(OSError):
    """A slide that cannot be opened or read. The message names the file and the problem."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
