"""The inspector previews stain normalisation: the patch as read and, beside it, normalised with
the run's fit (NumPy, off the GUI thread; TensorFlow never enters this process)."""

from __future__ import annotations

import numpy as np
from gui_helpers import text

from napari_patchheat._qt.inspector import PAIR_DISPLAY_PX, zoom_for_display
from napari_patchheat._qt.stain_preview import FITTING_TEXT
from napari_patchheat.models import normalised
from napari_patchheat.models.normalised import slide_fit
from napari_patchheat.models.stain_norm import normalise_numpy
from napari_patchheat.slide import open_slide

FIT_TIMEOUT_MS = 60_000


def test_the_inspector_shows_the_patch_as_read_and_normalised(viewer, widget, qtbot, svs_path,
                                                               ihc_png_path, tmp_path):
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    widget.level.value = 0
    widget.size.value = widget.stride.value = 100
    inspector, controls = widget.inspector, widget.model_input.controls
    assert inspector.select(5, 8)  # y 500-600, x 800-900: tissue
    patch = inspector.patch
    assert inspector.on_screen_normalised is None and inspector.normalised_image.isHidden()
    assert inspector.stain_line.native.isHidden()

    controls["stain_target"].value = ihc_png_path
    controls["stain_norm"].value = "reinhard"
    # the fit runs on a worker: the GUI is not held while it runs
    assert inspector.on_screen_normalised is None and text(inspector.stain_line) == FITTING_TEXT
    qtbot.waitUntil(lambda: inspector.on_screen_normalised is not None, timeout=FIT_TIMEOUT_MS)
    assert not inspector.normalised_image.isHidden()
    assert "as read" in text(inspector.stain_line) and "normalised" in text(inspector.stain_line)
    np.testing.assert_array_equal(inspector.on_screen, zoom_for_display(patch, *PAIR_DISPLAY_PX))

    normalised._FITTED.clear()  # the run's fit, computed again here, not the inspector's copy
    fit = slide_fit("reinhard", open_slide(svs_path), ihc_png_path, None)
    want = normalise_numpy(fit, patch)
    assert np.abs(want.astype(float) - patch).mean() > 5  # normalising changes the patch
    np.testing.assert_array_equal(inspector.on_screen_normalised,
                                  zoom_for_display(want, *PAIR_DISPLAY_PX))
    shown = inspector.on_screen_normalised.shape[1] + inspector.on_screen.shape[1]
    assert shown <= 2 * PAIR_DISPLAY_PX[1]  # the pair stays within the dock's width

    controls["stain_norm"].value = "none"
    assert inspector.on_screen_normalised is None and inspector.normalised_image.isHidden()
    assert inspector.stain_line.native.isHidden()
    np.testing.assert_array_equal(inspector.on_screen, zoom_for_display(patch))


def test_a_target_that_cannot_be_fitted_is_one_line(viewer, widget, qtbot, svs_path, tmp_path):
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    widget.size.value = widget.stride.value = 100
    inspector, controls = widget.inspector, widget.model_input.controls
    assert inspector.select(2, 3)
    controls["stain_norm"].value = "macenko"  # a built-in model, no target: nothing to fit to
    qtbot.waitUntil(lambda: text(inspector.stain_line) != FITTING_TEXT, timeout=FIT_TIMEOUT_MS)
    line = text(inspector.stain_line)
    assert line.startswith("normalised: ") and "needs a target stain" in line
    assert inspector.on_screen_normalised is None and inspector.normalised_image.isHidden()
    broken = tmp_path / "target.png"
    broken.write_bytes(b"not an image")
    controls["stain_target"].value = broken
    qtbot.waitUntil(lambda: text(inspector.stain_line) != FITTING_TEXT, timeout=FIT_TIMEOUT_MS)
    line = text(inspector.stain_line)
    assert line.startswith("normalised: ") and "target.png" in line, line
    assert inspector.on_screen_normalised is None


def test_an_inspected_heatmap_shows_the_fit_it_recorded(viewer, widget, qtbot):
    """A heatmap's patch is normalised with the fit its run recorded (what its model saw),
    whatever the dock's Model input says; a heatmap without one shows the patch alone."""
    from gui_helpers import random_heatmap

    from napari_patchheat._qt.slide_layer import SlideLayer
    from napari_patchheat.models.stain_norm import StainFit, fit_stain

    image = np.random.default_rng(5).integers(0, 256, (300, 410, 3), dtype=np.uint8)
    slide = SlideLayer.from_layer(viewer.add_image(image, rgb=True, name="slide"))
    fit = StainFit("reinhard", fit_stain("reinhard", image), fit_stain("reinhard", image // 2))
    heatmap = random_heatmap(slide, 0, 30, 20)
    heatmap.extra["stain_norm"] = fit.to_json()
    layer = widget.display.show_heatmap(heatmap, slide)
    inspector = widget.inspector
    inspector.heatmap_layer = layer  # as a click on it does
    assert inspector.select(4, 7)
    want = normalise_numpy(fit, inspector.patch)
    assert np.abs(want.astype(float) - inspector.patch).mean() > 5
    np.testing.assert_array_equal(inspector.on_screen_normalised,
                                  zoom_for_display(want, *PAIR_DISPLAY_PX))
    del heatmap.extra["stain_norm"]
    inspector.redraw()
    assert inspector.on_screen_normalised is None and inspector.normalised_image.isHidden()
