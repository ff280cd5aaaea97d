"""Optical density: the one table that tissue masks and the built-in stain models share."""

from __future__ import annotations

import numpy as np
from skimage import color, data
from skimage.util import img_as_float

from napari_patchheat.density import OD_FLOOR, od_table, optical_density


def test_od_table_is_rgb2heds_bit_for_bit():
    """The same float64 values as rgb2hed's own steps (img_as_float, floor, log ratio)."""
    rgb = np.maximum(img_as_float(np.arange(256, dtype=np.uint8)), OD_FLOOR)
    np.testing.assert_array_equal(od_table(), np.log(rgb) / np.log(OD_FLOOR))


def test_od_table_is_shared_read_only():
    assert od_table() is od_table() and not od_table().flags.writeable


def test_optical_density_is_rgb2heds():
    values = np.arange(256, dtype=np.uint8)
    expected = np.log(np.maximum(values / 255.0, 1e-6)) / np.log(1e-6)
    np.testing.assert_allclose(optical_density(values), expected, rtol=1e-6)


def test_optical_density_of_an_image_through_rgb2heds_matrix_is_rgb2hed():
    rgb = data.immunohistochemistry()
    od = optical_density(rgb)
    assert od.dtype == np.float32 and od.shape == rgb.shape
    hed = np.maximum(od.astype(np.float64) @ color.hed_from_rgb, 0)
    np.testing.assert_allclose(hed, color.rgb2hed(rgb), rtol=0, atol=2e-6)
