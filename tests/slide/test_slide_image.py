"""PNG and JPEG files as one-level slides, decoded whole on their first read."""

from __future__ import annotations

import numpy as np

from napari_patchheat.slide import open_slide


def test_png(ihc_png_path):
    from skimage.data import immunohistochemistry

    with open_slide(ihc_png_path) as s:
        assert s.vendor == "png" and s.mpp is None and s.objective_power is None
        assert [lv.shape for lv in s.levels] == [(512, 512, 3)]
        np.testing.assert_array_equal(s.levels[0].compute(), immunohistochemistry())


def test_png_region(ihc_png_path):
    from skimage.data import immunohistochemistry

    with open_slide(ihc_png_path) as s:
        np.testing.assert_array_equal(s.levels[0][10:20, 500:].compute(),
                                      immunohistochemistry()[10:20, 500:])


def test_jpeg_file(tmp_path, real_pixels):
    from PIL import Image

    path = tmp_path / "photo.jpg"
    Image.fromarray(real_pixels[:300, :400]).save(path, quality=90)
    with open_slide(path) as s:
        assert s.vendor == "jpeg" and s.levels[0].shape == (300, 400, 3)
        np.testing.assert_array_equal(s.levels[0].compute(), np.asarray(Image.open(path)))


def test_grayscale_png_is_replicated(tmp_path, real_pixels):
    from PIL import Image

    gray = real_pixels[:200, :300, 1]
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    with open_slide(path) as s:
        assert s.raw_levels[0].shape == (200, 300, 1)
        np.testing.assert_array_equal(s.levels[0].compute(), np.repeat(gray[..., None], 3, 2))
