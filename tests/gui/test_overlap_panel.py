"""The dock's smoother map: the overlap-averaged map of the heatmap in use, placed where its
cells' pixels are; the display-only interpolation of the heatmap layer."""

from __future__ import annotations

import numpy as np
from gui_helpers import random_heatmap, text

from napari_patchheat._qt.overlap_panel import OVERLAP_META_KEY
from napari_patchheat._qt.slide_layer import SlideLayer


def test_the_overlap_map_is_placed_on_its_pixels_and_the_values_stay(viewer, widget, svs_path):
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    slide = SlideLayer.from_layer(viewer.add_image(data, **kwargs))
    panel = widget.overlap
    assert not panel.show_map() and "Run or open a heatmap first" in text(widget.status)
    heatmap = random_heatmap(slide, 1, 64, 32, classes=("a",), padding="SAME")
    before = heatmap.values.copy()
    hl = widget.display.show_heatmap(heatmap, slide)
    assert panel.show_map()
    layer = panel.layer
    m = layer.metadata[OVERLAP_META_KEY]
    assert m.cell_px == (32, 32) and layer in viewer.layers
    # cell (u, v) covers level-1 px a_0 + 32 u ... : its world centre is theirs
    u, v = 5, 7
    a0 = heatmap.grid.row_starts()[0], heatmap.grid.col_starts()[0]
    (dy, dx), (wy, wx) = slide.downsamples[1], slide.world_per_px
    py = a0[0] + 32 * u + np.arange(32)
    px = a0[1] + 32 * v + np.arange(32)
    centre = ((py * dy + (dy - 1) / 2).mean() * wy, (px * dx + (dx - 1) / 2).mean() * wx)
    np.testing.assert_allclose(layer.data_to_world((u, v)), centre)
    np.testing.assert_allclose(layer.data[u, v], np.nanmean(before[u - 1: u + 1, v - 1: v + 1, 0]),
                               rtol=1e-6)
    np.testing.assert_array_equal(heatmap.values, before)
    panel.interpolation.value = "linear"
    assert hl.interpolation2d == "linear"
    assert panel.show_map() and sum(OVERLAP_META_KEY in x.metadata for x in viewer.layers) == 1
