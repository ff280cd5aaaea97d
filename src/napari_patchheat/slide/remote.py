"""Slides in object storage or on web servers, through fsspec (to be written)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import SlideError
from .pyramid import Slide

URL_SCHEMES = ("s3://", "gs://", "az://", "abfs://", "http://", "https://")


def is_url(path: str | Path) -> bool:
    """True for an fsspec URL this package opens remotely (``s3://``, ``https://``, ...)."""
    return isinstance(path, str) and path.lower().startswith(URL_SCHEMES)


def open_remote(url: str, backend: str, storage_options: Mapping[str, Any]) -> Slide:
    """Open the slide at ``url`` (not yet written)."""
    raise SlideError(f"Cannot open {url}: remote slides are not supported yet.", url)
