"""``SlideError``, the one exception of slide reading (public as ``napari_patchheat.slide``'s)."""

from __future__ import annotations


class SlideError(OSError):
    """A slide that cannot be opened or read. The message names the file and the problem."""

    def __init__(self, message: str, path: object = None) -> None:
        """``path``: the file, folder or URL (kept as ``str(path)``), or None."""
        super().__init__(message)
        self.path = None if path is None else str(path)
