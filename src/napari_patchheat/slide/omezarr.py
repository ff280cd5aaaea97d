"""OME-Zarr images as slides (to be written)."""

from __future__ import annotations

from pathlib import Path

from .errors import SlideError
from .pyramid import Slide


def open_omezarr(path: Path) -> Slide:
    """Open the OME-Zarr at ``path`` (not yet written)."""
    raise SlideError(f"Cannot open {path}: the OME-Zarr backend is not written yet.", path)
