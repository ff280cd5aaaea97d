"""Colour: a slide's pixels converted from its ICC profile to sRGB (Pillow's ImageCms, littlecms).

A scanner writes its own RGB and may embed the ICC profile that says what those numbers mean.
``Slide.levels`` stay as the scanner wrote them (models learnt from such pixels); this module
converts them for who asks: napari's "Show in sRGB" and a run with ``RunOptions(color="srgb")``.

The rendering intent is relative colorimetric: colours inside sRGB keep their measured values
(white of the glass maps to sRGB white), those outside are clipped to its edge. Perceptual
would compress every colour by the profile maker's own gamut mapping (tables that differ
from scanner to scanner); for the matrix-and-curves profiles most scanners embed, littlecms
gives both intents the same result. No Qt, no TensorFlow.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np

SRGB_INTENT = "relative colorimetric"  # ImageCms.Intent.RELATIVE_COLORIMETRIC (see above)
PROFILE_CACHE_SIZE = 8  # transforms kept (one per profile; a slide's is built once)
CONVERT_ROWS = 256  # a region read for a run is converted in bands of this many rows, in parallel


def _open_profile(icc_profile: bytes) -> Any:
    """The ImageCmsProfile of ``icc_profile``; a ValueError saying why littlecms refused it."""
    from PIL import ImageCms

    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError) as exc:
        raise ValueError(f"its ICC profile ({len(icc_profile)} bytes) cannot be read by "
                         f"littlecms ({exc})") from None


def icc_description(icc_profile: bytes | None) -> str | None:
    """The profile's own description ("Aperio ScanScope..."), or a phrase saying it cannot be
    read (never raises: for display); None for no profile."""
    from PIL import ImageCms

    if icc_profile is None:
        return None
    try:
        text = ImageCms.getProfileDescription(_open_profile(icc_profile)).strip()
    except ValueError as exc:
        return str(exc)
    return text or "an ICC profile without a description"


class SrgbTransform:
    """Converts RGB uint8 arrays (H, W, 3) to sRGB: ``transform(rgb)`` is a new array. Safe to
    call from many threads at once (littlecms copies its state per call; Pillow releases the
    GIL while it converts). ``token`` names the profile (for dask's task names)."""

    def __init__(self, transform: Any, token: str):
        self._transform, self.token = transform, token

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        if rgb.size == 0:
            return np.array(rgb, np.uint8)
        image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
        return np.asarray(self._transform.apply(image))

    def __dask_tokenize__(self) -> str:
        return self.token


@functools.lru_cache(maxsize=PROFILE_CACHE_SIZE)
def srgb_transform(icc_profile: bytes) -> SrgbTransform:
    """The :class:`SrgbTransform` from ``icc_profile`` to sRGB (relative colorimetric,
    :data:`SRGB_INTENT`), built once per profile. A ValueError where the profile cannot be
    read or does not take RGB."""
    from PIL import ImageCms

    source = _open_profile(icc_profile)
    try:
        transform = ImageCms.buildTransform(
            source, ImageCms.createProfile("sRGB"), "RGB", "RGB",
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except ImageCms.PyCMSError as exc:
        space = source.profile.xcolor_space.strip() or "unknown"
        raise ValueError(f"its ICC profile (colour space {space}) does not convert RGB to sRGB "
                         f"({exc})") from None
    return SrgbTransform(transform, hashlib.sha1(icc_profile).hexdigest()[:16])


def as_srgb(level: da.Array, transform: SrgbTransform) -> da.Array:
    """``level`` (dask, Y X 3 uint8) converted by ``transform`` chunk by chunk, lazily: same
    shape and chunks; reading a region converts only its chunks."""
    return da.map_blocks(transform, level, dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8),
                         name=f"srgb-{transform.token}-{level.name}")


def srgb_reader(reader: Any, transform: SrgbTransform) -> Any:
    """``reader`` (a level as ``Slide.reader`` gives it: a tile reader or a dask level) whose
    reads come converted by ``transform``: each region once, when it is read."""
    if isinstance(reader, da.Array):
        return as_srgb(reader, transform)
    return _ConvertedReads(reader, transform)


class _ConvertedReads:
    """A tile reader (``read_tiles``) whose regions are converted after decoding; keys take
    the two spatial axes (slices) and optionally the colour axis, applied after converting."""

    def __init__(self, reader: Any, transform: SrgbTransform):
        self.reader, self.transform = reader, transform
        self.shape, self.dtype, self.ndim = reader.shape, reader.dtype, 3

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read_tiles(key)

    def read_tiles(self, key: Any, map_fn: Callable[..., Any] = map,
                   needed: Any = None) -> np.ndarray:
        """``reader.read_tiles`` of the spatial part of ``key``, converted in bands of
        ``CONVERT_ROWS`` through ``map_fn`` (an executor's map: on its threads), then the rest
        of ``key`` (pixels of tiles ``needed`` leaves out are undefined, as there)."""
        key = key if isinstance(key, tuple) else (key,)
        rgb = self.reader.read_tiles(key[:2], map_fn, needed)
        out = np.empty_like(rgb)
        starts = range(0, rgb.shape[0], CONVERT_ROWS)
        for y, band in zip(starts, map_fn(lambda y: self.transform(rgb[y:y + CONVERT_ROWS]),
                                          starts)):
            out[y:y + len(band)] = band
        return out[(slice(None), slice(None), *key[2:])]
