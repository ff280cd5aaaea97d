"""Many slides: a slide opened after another goes beside it; its heatmaps and grid follow it,
and the grid preview's layer names the slide it belongs to."""

from __future__ import annotations

import numpy as np
from gui_helpers import random_heatmap

from napari_patchheat._qt.placement import PLACEMENT_GAP_FRACTION, place_beside_others


def _open(viewer, path):
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(path))[0]
    return viewer.add_image(data, **kwargs)


def _extent(layer) -> np.ndarray:
    return np.asarray(layer.extent.world, float)[:, -2:]


def test_second_slide_goes_beside_the_first_with_its_heatmap_and_grid(viewer, widget, qtbot,
                                                                      svs_path, ihc_png_path):
    first = _open(viewer, svs_path)
    np.testing.assert_allclose(first.translate, [0, 0])  # the first stays where it is
    second = _open(viewer, ihc_png_path)
    a, b = _extent(first), _extent(second)
    width = max(a[1, 1] - a[0, 1], b[1, 1] - b[0, 1])
    assert width > 100
    # right of the first, a gap apart, tops aligned: no overlap
    np.testing.assert_allclose(b[0, 1] - a[1, 1], PLACEMENT_GAP_FRACTION * width)
    np.testing.assert_allclose(b[0, 0], a[0, 0])
    assert not place_beside_others(viewer, second)  # placed once: left alone after
    # an array added in Python keeps the place it was given
    plain = viewer.add_image(np.zeros((50, 50), np.uint8), name="array")
    np.testing.assert_allclose(plain.translate, [0, 0])

    widget.image_layer.value = second
    slide = widget.slide
    assert slide.layer is second and slide.world_offset[1] > a[1, 1]
    widget.size.value, widget.stride.value = 64, 64
    widget.preview.update_now()
    names = [layer.name for layer in (widget.preview.layer, widget.preview.lines_layer)
             if layer is not None]
    assert names and all(n.endswith(f" · {second.name}") for n in names)
    shown = [layer for layer in (widget.preview.layer, widget.preview.lines_layer)
             if layer is not None and layer.visible and widget.preview.picture.in_view]
    assert shown and all(_extent(layer)[0, 1] > a[1, 1] for layer in shown)  # over the 2nd

    heatmap = random_heatmap(slide, 0, 64, 64)
    layer = widget.display.show_heatmap(heatmap, slide, replace=False)
    h = _extent(layer)
    assert np.all(h[0] >= b[0] - 1e-6) and np.all(h[1] <= b[1] + 64 * np.array(
        slide.world_per_px))  # over the second slide (SAME padding: up to a patch past it)
    assert h[0, 1] > a[1, 1]  # not over the first

    widget.image_layer.value = first  # the grid goes back to the first slide, and says so
    widget.preview.update_now()
    assert widget.preview.layer.name == f"grid · {first.name}" or \
        widget.preview.lines_layer.name == f"grid lines · {first.name}"
