"""Compare: two heatmaps side by side in napari's grid mode, each over its slide, A - B where
they share a grid; turning it off gives the viewer its layers and grid back exactly."""

from __future__ import annotations

import numpy as np
from gui_helpers import random_heatmap, text
from qtpy.QtWidgets import QApplication

from napari_patchheat._qt.canvas import is_outline_layer
from napari_patchheat._qt.compare_panel import DIFFERENCE_COLORMAP, grid_model
from napari_patchheat._qt.slide_layer import SlideLayer, is_slide_candidate


def open_svs(viewer, svs_path):
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    return SlideLayer.from_layer(viewer.add_image(data, **kwargs))


def layout(viewer):
    """What Compare must give back: the layers in order, their visibility, the grid, the
    selected layer."""
    grid = grid_model(viewer)
    return (list(viewer.layers), [layer.visible for layer in viewer.layers],
            (grid.enabled, grid.shape, grid.stride), viewer.layers.selection.active)


def drawn_runs(viewer, qtbot) -> int:
    """How many separate stretches of drawn (not black) pixels the canvas's middle row has."""
    qtbot.wait(200)
    row = viewer.screenshot(canvas_only=True)
    row = row[row.shape[0] // 2, :, :3].max(axis=-1) > 0
    return int(row[0]) + int(np.count_nonzero(row[1:] & ~row[:-1]))


def two_heatmaps(widget, slide, stride_b=64):
    a = widget.display.show_heatmap(random_heatmap(slide, 1, 64, 64, ("x",), seed=0, model="m1"),
                                    slide)
    b = widget.display.show_heatmap(random_heatmap(slide, 1, 64, stride_b, ("x",), seed=1,
                                                   model="m2"), slide)
    b.metadata["patchheat_heatmap"].values[2, 4] = np.nan  # NaN in B only
    return a, b


def test_compare_shows_a_b_and_a_minus_b_each_over_the_slide_and_restores(viewer, widget,
                                                                         svs_path, qtbot):
    slide = open_svs(viewer, svs_path)
    a, b = two_heatmaps(widget, slide)
    viewer.add_points([[10, 10]], name="hidden points", visible=False)
    viewer.layers.selection.active = a
    QApplication.processEvents()
    before = layout(viewer)
    assert before[2] == (False, (-1, -1), 1) and not all(before[1])
    panel = widget.compare
    widget.reset_choices()
    panel.a.value, panel.b.value = a, b
    panel.toggle.value = True
    qtbot.wait(300)  # the grid preview redraws meanwhile: its layers stay hidden
    layers, grid = viewer.layers, grid_model(viewer)
    assert any(is_outline_layer(layer) for layer in layers)  # the grid preview's, hidden
    assert panel.comparing and grid.enabled and grid.stride == 2 and grid.shape == (1, 3)
    assert list(layers)[:6] == panel.layers and grid.actual_shape(layers) == (1, 3)
    for i, layer in enumerate(layers):
        cell = (0, i // 2) if i < 6 else (-1, -1)  # the other layers are hidden: no cell
        assert grid.position(i, layers) == cell and layer.visible == (i < 6)
    for cell in range(3):  # the slide (its arrays, not a copy), then the heatmap over it
        copy = layers[2 * cell]
        assert all(x is y for x, y in zip(copy.data, slide.layer.data))
        assert copy.multiscale and copy.rgb and np.allclose(copy.scale, slide.layer.scale)
        assert not is_slide_candidate(copy) and tuple(copy.units) == tuple(slide.layer.units)
    assert np.shares_memory(layers[1].data, a.data) and np.shares_memory(layers[3].data, b.data)
    assert np.allclose(layers[1].translate, a.translate) and layers[3].colormap.name == "inferno"
    va, vb = a.data, b.data
    want = va - vb
    assert np.nanstd(want) > 0.1 and np.isnan(want[2, 4]) and np.isnan(want[0, 0])
    diff = layers[5]
    np.testing.assert_array_equal(diff.data, want)
    assert diff.colormap.name == DIFFERENCE_COLORMAP and diff.opacity == a.opacity
    m = np.nanmax(np.abs(want))
    np.testing.assert_allclose(diff.contrast_limits, (-m, m))
    assert np.allclose(diff.scale, a.scale) and np.allclose(diff.translate, a.translate)
    assert "A - B" in text(panel.info)
    viewer.reset_view()
    assert drawn_runs(viewer, qtbot) == 3  # three cells side by side on the canvas
    panel.toggle.value = False
    QApplication.processEvents()
    after = layout(viewer)
    assert after[0] == before[0] and all(x is y for x, y in zip(after[0], before[0]))
    assert after[1:] == before[1:] and not panel.layers
    viewer.reset_view()
    assert drawn_runs(viewer, qtbot) == 1


def test_different_grids_are_side_by_side_without_a_difference(viewer, widget, svs_path):
    slide = open_svs(viewer, svs_path)
    a, b = two_heatmaps(widget, slide, stride_b=32)
    before = layout(viewer)
    panel = widget.compare
    widget.reset_choices()
    panel.a.value, panel.b.value = a, b
    panel.toggle.value = True
    assert text(panel.info) == "no difference map: A's stride is 64, B's is 32"
    assert len(panel.layers) == 4 and grid_model(viewer).shape == (1, 2)
    assert grid_model(viewer).actual_shape(viewer.layers) == (1, 2)
    added = viewer.add_points([[5, 5]], name="added meanwhile")
    assert not added.visible  # hidden while comparing: no cell of its own
    viewer.layers.remove(b)  # B gone: comparing ends, the rest as it was
    assert not panel.comparing and not panel.toggle.value
    after = layout(viewer)
    assert after[0] == [x for x in before[0] if x is not b] + [added] and after[2] == before[2]
    assert all(layer.visible for layer in viewer.layers if layer.name != "hidden points")


def test_compare_needs_two_heatmaps(viewer, widget, svs_path, errors):
    slide = open_svs(viewer, svs_path)
    widget.display.show_heatmap(random_heatmap(slide, 1, 64, 64, ("x",)), slide)
    widget.reset_choices()
    widget.compare.toggle.value = True
    assert not widget.compare.toggle.value and not widget.compare.layers
    assert errors == ["PatchHeat: Compare needs two heatmaps: choose A and B."]
