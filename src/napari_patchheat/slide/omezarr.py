"""OME-Zarr images as slides (to be written)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import SlideError
from .pyramid import Slide


def open_omezarr(path: Path) -> Slide:
    """Open the OME-Zarr at ``path`` (not yet written)."""
    raise SlideError(f"Cannot open {path}: the OME-Zarr backend is not written yet.", path)


def open_omezarr_url(url: str, storage_options: Mapping[str, Any]) -> Slide:
    """Open the OME-Zarr at the fsspec ``url`` (not yet written)."""
    raise SlideError(f"Cannot open {url}: the OME-Zarr backend is not written yet.", url)
