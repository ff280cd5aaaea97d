"""The regions' table in a pathologist's terms: region area then patch area in mm², at least
five rows in view at the dock's width without sideways scrolling, a minimum size with the
left-out count, the tissue line; the outlines in a colour apart from the grid's."""

from __future__ import annotations

import numpy as np
from gui_helpers import random_heatmap
from napari.utils.colormaps.standardize_color import transform_color
from qtpy.QtWidgets import QApplication

from napari_patchheat._qt.regions_table import TABLE_ROWS_SHOWN
from napari_patchheat._qt.roi_panel import REGION_EDGE_COLOR
from napari_patchheat._qt.slide_layer import SlideLayer
from napari_patchheat._qt.widget import REGIONS_SECTION
from napari_patchheat.analysis.regions import FOUR_CONNECTED
from napari_patchheat.grid_picture import LINE_COLOR


def test_the_regions_table_reads_in_mm2_and_shows_five_rows(viewer, widget, svs_path):
    from scipy import ndimage

    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    svs = SlideLayer.from_layer(viewer.add_image(data, **kwargs))
    heatmap = random_heatmap(svs, 0, 64, 64, classes=("a",), padding="VALID", seed=3)
    widget.display.show_heatmap(heatmap, svs)
    widget.collapsibles[REGIONS_SECTION].expand(animate=False)
    panel = widget.regions
    panel.threshold.value = 0.7
    labels, n = ndimage.label(heatmap.values[..., 0] >= 0.7, structure=FOUR_CONNECTED)
    sizes = np.bincount(labels.ravel())[1:]
    assert (sizes < 3).sum() > 0 and (sizes >= 3).sum() > TABLE_ROWS_SHOWN
    panel.min_cells.value = 3
    assert panel.compute()
    kept = int((sizes >= 3).sum())
    assert len(panel.report.regions) == kept and panel.report.left_out == n - kept
    lines = panel.info.value.replace("\n", " ")
    assert f"{kept} regions ({n - kept} smaller than 3 cells left out)" in lines
    share = (heatmap.values[..., 0][heatmap.computed] >= 0.7).mean()
    assert f"{share:.1%} of tissue at or above 0.7" in lines
    table = panel.table.value
    assert list(table["columns"]) == [
        "region", "region\narea", "patch\narea", "patches", "mean", ">= 0.7"]
    first_region = table["data"][1]
    row = panel.rows[1]
    assert first_region[0] == "#1" and first_region[3] == row.patches
    assert first_region[1] == f"{row.region_area / 1e6:,.3f} mm²"  # svs: µm², 0.25 µm/px
    assert first_region[2] == f"{row.area / 1e6:,.3f} mm²" and "e+" not in str(table["data"])
    QApplication.processEvents()
    native = panel.table.native
    assert native.isVisible() and len(table["data"]) > TABLE_ROWS_SHOWN
    in_view = native.viewport().height() / native.rowHeight(0)
    assert in_view >= 5, f"{in_view:.1f} rows in view"
    assert not native.horizontalScrollBar().isVisible()  # every column at the dock's width
    assert native.width() <= widget.native.width()
    # the outlines: magenta, far from the grid's cyan
    magenta, grid = transform_color(REGION_EDGE_COLOR)[0][:3], transform_color(LINE_COLOR)[0][:3]
    np.testing.assert_allclose(panel.layer.edge_color[0, :3], magenta)  # #1's outer ring
    distance = np.abs(panel.layer.edge_color[:, :3] - grid).max(axis=1)
    assert distance.min() == 1.0  # every outline (and hole) differs from the grid's cyan
