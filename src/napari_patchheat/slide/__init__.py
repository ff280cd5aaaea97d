"""Whole-slide images as lazy pyramids of dask arrays: ``open_slide(path) -> Slide``.

TIFF slides (Aperio SVS, OME-TIFF with SubIFDs, multi-page pyramids, Hamamatsu NDPI, Leica SCN,
Ventana BIF, plain tiled or striped TIFF) are read tile by tile: a read decodes only the file's
tiles (or NDPI strips) it touches, with tifffile's own decoders, straight from the file (no zarr
layer: a zarr 3 store costs ~0.5 ms per chunk and ties tifffile and zarr versions together).
MIRAX, VMS/VMU and SVSLIDE are read by OpenSlide 4, region by region; DICOM WSI (a folder of
``.dcm`` files, or one of them) by wsidicom, frame by frame (by OpenSlide when asked). PNG and
JPEG are decoded whole, once, on first read. Nothing here imports Qt or TensorFlow.

Modules: ``opening`` (``open_slide``: which reader a file goes to), ``pyramid`` (``Slide``, the
RGB rule, computed levels), ``tiff`` (opening a TIFF), ``tiff_level`` (its tile reader),
``tile_cache`` (tiles shared by neighbouring reads), ``openslide_reader`` (OpenSlide's
formats), ``dicom`` (DICOM WSI through wsidicom), ``omezarr`` (OME-Zarr), ``image`` (PNG,
JPEG), ``metadata`` (µm/px, objective power), ``color`` (ICC profile -> sRGB), ``arrays``
(readers as dask arrays), ``errors`` (``SlideError``), ``formats`` (suffixes, magic numbers,
what the plugin reads), ``location`` (a path or a ``SlideURL``), ``remote`` (URLs through
fsspec).
"""

from __future__ import annotations

from .arrays import CHUNK_TARGET_PX
from .errors import SlideError
from .formats import SLIDE_SUFFIXES
from .metadata import MPP_PLAUSIBLE_UM
from .opening import BACKENDS, open_slide
from .openslide_reader import OpenSlideLevelWarning
from .pyramid import PYRAMID_TOP_PX, Slide, rgb_pyramid, thumbnail_level

__all__ = [
    "BACKENDS",
    "CHUNK_TARGET_PX",
    "MPP_PLAUSIBLE_UM",
    "OpenSlideLevelWarning",
    "PYRAMID_TOP_PX",
    "SLIDE_SUFFIXES",
    "Slide",
    "SlideError",
    "open_slide",
    "rgb_pyramid",
    "thumbnail_level",
]
