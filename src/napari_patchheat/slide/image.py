"""Opening a PNG or JPEG as a one-level slide, decoded whole (by Pillow) on its first read.

No Qt, no TensorFlow.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .arrays import LoadedOnce, as_dask
from .errors import SlideError
from .location import SlideURL
from .pyramid import Slide

# Pillow mode -> (mode to convert to or None, channels, dtype)
_PILLOW_MODES = {
    "1": ("L", 1, "uint8"), "L": (None, 1, "uint8"), "LA": (None, 2, "uint8"),
    "P": ("RGBA", 4, "uint8"), "PA": ("RGBA", 4, "uint8"), "RGB": (None, 3, "uint8"),
    "RGBA": (None, 4, "uint8"), "RGBX": ("RGB", 3, "uint8"), "CMYK": ("RGB", 3, "uint8"),
    "YCbCr": ("RGB", 3, "uint8"), "I;16": (None, 1, "uint16"), "I;16B": (None, 1, "uint16"),
    "I;16L": (None, 1, "uint16"),
}  # fmt: skip


def open_image(path: Path | SlideURL, vendor: str, data: bytes | None = None,
               source_key: str | None = None) -> Slide:
    """Open the PNG or JPEG (``vendor`` "png" or "jpeg") at ``path`` as a one-level
    :class:`Slide`; reads its header (and checks a PNG's chunks) now, its pixels on first read.
    A remote one (``path`` a :class:`SlideURL`) is decoded from ``data``, its bytes, whose
    content ``source_key`` identifies (see :class:`Slide`)."""
    from PIL import Image

    try:
        with Image.open(_source(path, data)) as image:
            mode, size = image.mode, image.size
            if vendor == "png":
                image.verify()  # chunk checksums, without decoding: catches truncated files
    except Exception as exc:  # UnidentifiedImageError, DecompressionBombError, truncated data
        raise SlideError(f"Cannot open {path}: Pillow cannot read it ({exc}).", path) from exc
    if mode not in _PILLOW_MODES:
        raise SlideError(
            f"Cannot open {path}: its pixels are Pillow mode {mode!r}; RGB, RGBA, grayscale "
            "and 16-bit grayscale images are supported.",
            path,
        )
    convert, channels, dtype = _PILLOW_MODES[mode]
    shape = (size[1], size[0], channels)
    pixels = LoadedOnce(lambda: _decode(path, data, convert, shape, dtype), shape, dtype)
    return Slide(path, [as_dask(pixels, str(path))], vendor=vendor, close=pixels.close,
                 source_key=source_key)


def _decode(path: Path | SlideURL, data: bytes | None, convert: str | None,
            shape: tuple[int, int, int], dtype: str) -> np.ndarray:
    """The whole image's pixels, (Y, X, C) of ``dtype``, converted to Pillow mode ``convert``
    (from ``data`` where given, else from the file ``path``)."""
    from PIL import Image

    try:
        with Image.open(_source(path, data)) as image:
            pixels = np.asarray(image.convert(convert) if convert else image)
    except Exception as exc:
        raise SlideError(f"Cannot read {path}: {type(exc).__name__}: {exc}.", path) from exc
    return pixels.reshape(shape).astype(dtype, copy=False)


def _source(path: Path | SlideURL, data: bytes | None) -> Path | io.BytesIO:
    """What Pillow reads: ``data`` (a remote image's bytes) as a file, else the file ``path``."""
    return io.BytesIO(data) if data is not None else Path(str(path))
