"""Optical density of uint8 RGB, with exactly the conventions of ``skimage.color.rgb2hed``.

RGB is scaled to 0..1 (``x * (1 / 255)``, as ``skimage.util.img_as_float`` does), floored at
``OD_FLOOR`` and mapped to ``OD = log(RGB) / log(OD_FLOOR)`` per channel: 0 for white, 1 at
the floor. The one home of this convention: tissue masks (``tissue``) and the built-in stain
models (``models.stain``) both use it. NumPy only: no scikit-image, no TensorFlow, no Qt.
"""

from __future__ import annotations

import functools

import numpy as np

OD_FLOOR = 1e-6  # RGB (0..1) is floored here before the log; OD is log(RGB) / log(OD_FLOOR)
UINT8_LEVELS = 256


@functools.cache
def od_table() -> np.ndarray:
    """Optical density of each uint8 value 0..255 exactly as rgb2hed computes it: float64 (256,),
    read-only (it is shared)."""
    rgb = np.maximum(np.arange(UINT8_LEVELS) * (1.0 / 255), OD_FLOOR)
    table = np.log(rgb) / np.log(OD_FLOOR)
    table.flags.writeable = False
    return table


@functools.cache
def _od_table_float32() -> np.ndarray:
    table = od_table().astype(np.float32)
    table.flags.writeable = False
    return table


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Per-channel optical density of uint8 RGB as rgb2hed computes it (float32, 0 = white),
    same shape as ``rgb``."""
    return _od_table_float32()[np.asarray(rgb, dtype=np.uint8)]
