"""Slides read by OpenSlide (to be written)."""

from __future__ import annotations

from pathlib import Path

from .errors import SlideError
from .pyramid import Slide


def open_openslide(path: Path) -> Slide:
    """Open ``path`` with OpenSlide (not yet written)."""
    raise SlideError(f"Cannot open {path}: the OpenSlide backend is not written yet.", path)
