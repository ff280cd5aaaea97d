"""``SlideError``, the one exception of slide reading (re-exported by, and named for, ``slide``).

It lives here so that the readers (``tiff_level``) can raise it without importing
``pyramid``, which imports them.
"""

from __future__ import annotations

from pathlib import Path


class SlideError(OSError):
    """A slide that cannot be opened or read. The message names the file and the problem."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


SlideError.__module__ = "napari_patchheat.slide"  # its public home, in reprs and tracebacks
