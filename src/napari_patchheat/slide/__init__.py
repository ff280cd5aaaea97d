"""Whole-slide images as lazy pyramids of dask arrays: ``open_slide(path) -> Slide``."""

from __future__ import annotations

from .errors import SlideError
from .metadata import MPP_PLAUSIBLE_UM
from .pyramid import PYRAMID_TOP_PX, Slide, open_slide, rgb_pyramid, thumbnail_level
from .tiff_level import CHUNK_TARGET_PX

__all__ = [
    "CHUNK_TARGET_PX",
    "MPP_PLAUSIBLE_UM",
    "PYRAMID_TOP_PX",
    "Slide",
    "SlideError",
    "open_slide",
    "rgb_pyramid",
    "thumbnail_level",
]
