"""Helpers the slide tests share: tifffile's own decoding as the reference, and error checks.

Imported by name (``from slide_checks import ...``): pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_patchheat.slide import Slide, SlideError, open_slide


def tifffile_level(path: Path, level: int) -> np.ndarray:
    """tifffile's own decoding of a whole stored level (the reference)."""
    with tifffile.TiffFile(path) as tif:
        levels = sorted(tif.series[0].levels, key=lambda s: -s.shape[0] * s.shape[1])
        return levels[level].asarray()


def check_regions(slide: Slide, path: Path, level: int = 0, n: int = 6, seed: int = 0) -> None:
    """Random regions of ``level`` (tile-unaligned, some at the edges) equal tifffile's crops."""
    ref = tifffile_level(path, level)
    if ref.ndim == 2:
        ref = ref[..., None]
    h, w = ref.shape[:2]
    rng = np.random.default_rng(seed)
    raw = slide.raw_levels[level]
    for _ in range(n):
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        y1, x1 = int(rng.integers(y0 + 1, h + 1)), int(rng.integers(x0 + 1, w + 1))
        np.testing.assert_array_equal(raw[y0:y1, x0:x1].compute(), ref[y0:y1, x0:x1])
    np.testing.assert_array_equal(raw[h - 7 :, w - 300 :].compute(), ref[h - 7 :, w - 300 :])


def expect_error(path: Path, *words: str) -> SlideError:
    """``open_slide(path)`` raises a SlideError (an OSError) naming the file and ``words``."""
    with pytest.raises(SlideError) as info:
        open_slide(path)
    message = str(info.value)
    assert str(path) in message, message
    for word in words:
        assert word in message.replace(str(path), "<path>"), message
    assert info.value.path == str(path)
    assert isinstance(info.value, OSError)
    return info.value
