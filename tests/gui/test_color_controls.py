"""The dock's "Show in sRGB (ICC profile)": a slide whose file carries a profile is shown converted
(the layer's levels are the converted ones, as ImageCms converts them) and back; the box is off
for a slide without one; the model's input colours go into the run's options."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageCms

from napari_patchheat._qt.color_controls import NO_PROFILE_TIP, SRGB_TEXT

PLUGIN = "napari-patchheat"


def imagecms_srgb(rgb: np.ndarray, profile: bytes) -> np.ndarray:
    out = ImageCms.profileToProfile(Image.fromarray(rgb), io.BytesIO(profile),
                                    ImageCms.createProfile("sRGB"),
                                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    return np.asarray(out)


def test_the_box_shows_the_slide_in_srgb_and_back(viewer, widget, icc_slide, wide_rgb_profile):
    (layer,) = viewer.open(str(icc_slide), plugin=PLUGIN)
    assert layer.metadata["icc_profile"] == "patchheat test RGB (Adobe RGB primaries, gamma 2.2)"
    box = widget.colors.srgb
    assert box.text == SRGB_TEXT and box.enabled and not box.value
    assert box.tooltip == f"ICC profile: {layer.metadata['icc_profile']}"
    stored = list(layer.data)
    pixels = [np.asarray(level) for level in stored]
    box.value = True
    assert [lv.shape for lv in layer.data] == [lv.shape for lv in stored]
    assert [lv.chunks for lv in layer.data] == [lv.chunks for lv in stored]
    for level, raw in zip(layer.data, pixels):
        reference = imagecms_srgb(raw, wide_rgb_profile)
        assert (reference != raw).any(axis=2).mean() > 0.3  # the profile is not sRGB
        np.testing.assert_array_equal(np.asarray(level), reference)
    # the dock's tissue estimate, runs and exports read the levels as stored
    assert widget.slide is not None and widget.slide.levels[0] is stored[0]
    assert box.value and box.enabled  # the dock followed the new data, still shown in sRGB
    box.value = False
    assert all(a is b for a, b in zip(layer.data, stored))  # the levels as stored, again
    np.testing.assert_array_equal(np.asarray(layer.data[1]), pixels[1])


def test_the_box_is_off_without_a_profile(viewer, widget, svs_path, icc_slide):
    (plain,) = viewer.open(str(svs_path), plugin=PLUGIN)
    assert plain.metadata["icc_profile"] is None
    colors = widget.colors
    assert not colors.srgb.enabled and colors.srgb.tooltip == NO_PROFILE_TIP
    assert not colors.model_input.visible
    (icc,) = viewer.open(str(icc_slide), plugin=PLUGIN)
    widget.image_layer.value = icc
    assert colors.model_input.visible
    colors.srgb.value, colors.model_input.value = True, "srgb"
    widget.image_layer.value = plain  # the controls follow the chosen layer
    assert not colors.srgb.enabled and not colors.srgb.value and not colors.model_input.visible
    assert widget.run_options().color == "as stored"  # no profile: nothing to convert
    widget.image_layer.value = icc
    assert colors.srgb.enabled and colors.srgb.value and widget.run_options().color == "srgb"


def test_a_profile_littlecms_cannot_read_is_said(viewer, widget, errors, slide_writer,
                                                 real_pixels):
    path, _ = slide_writer("junk.tif", real_pixels[:512, :512], levels=1,
                           iccprofile=b"not a profile")
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert "cannot be read by littlecms" in layer.metadata["icc_profile"]
    data = layer.data
    widget.colors.srgb.value = True
    assert errors == [f"PatchHeat: Cannot show {layer.name} in sRGB: its ICC profile (13 bytes) "
                      "cannot be read by littlecms (cannot open profile from string)."]
    assert layer.data is data and not widget.colors.srgb.value


def test_the_model_input_colours_go_to_the_run(viewer, widget, icc_slide):
    viewer.open(str(icc_slide), plugin=PLUGIN)
    assert widget.run_options().color == "as stored"
    widget.colors.model_input.value = "srgb"
    assert widget.run_options().color == "srgb"
    widget.colors.srgb.value = True  # what is shown does not change what the model gets
    widget.colors.model_input.value = "as stored"
    assert widget.run_options().color == "as stored"


def test_the_inspector_shows_the_patch_as_the_model_gets_it(viewer, widget, icc_slide,
                                                            wide_rgb_profile):
    (layer,) = viewer.open(str(icc_slide), plugin=PLUGIN)
    widget.size.value = widget.stride.value = 64
    grid = widget.grid
    stored = grid.read_patch(np.asarray(layer.data[0]), 5, 7)
    converted = imagecms_srgb(np.ascontiguousarray(stored), wide_rgb_profile)
    assert (converted != stored).any()
    for shown in (False, True):
        widget.colors.srgb.value = shown
        for color, expected in [("as stored", stored), ("srgb", converted)]:
            widget.colors.model_input.value = color
            assert widget.inspector.select(5, 7)
            np.testing.assert_array_equal(widget.inspector.patch, expected)
