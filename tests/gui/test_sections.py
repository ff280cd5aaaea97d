"""The dock's sections: one opened by a click on its title scrolls into view; with every
section open the dock still fits 900 px (it scrolls)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

from napari_patchheat._qt.widget import DOCK_MAX_HEIGHT_PX, REGIONS_SECTION


def shown(widget, box) -> tuple[int, int, int]:
    """(top of ``box`` in the dock's column, first and last px of the column in view)."""
    body, bar = widget.scroll.widget(), widget.scroll.verticalScrollBar()
    top = box.mapTo(body, box.rect().topLeft()).y()
    return top, bar.value(), bar.value() + widget.scroll.viewport().height()


def test_a_section_opened_by_a_click_scrolls_into_view(viewer, widget, qtbot):
    viewer.add_image(np.full((400, 500, 3), 230, np.uint8), rgb=True, name="slide")
    viewer.window._qt_window.resize(1200, 600)  # a short window: the dock scrolls
    box = widget.collapsibles[REGIONS_SECTION]  # the lowest section but one
    qtbot.waitUntil(lambda: shown(widget, box)[0] > shown(widget, box)[2])  # below the fold
    qtbot.mouseClick(box.toggleButton(), Qt.MouseButton.LeftButton)
    assert box.isExpanded()
    qtbot.waitUntil(lambda: shown(widget, box)[1] <= shown(widget, box)[0] < shown(widget, box)[2],
                    timeout=3000)
    top, first, last = shown(widget, box)
    # all of it in view where it fits, else its title at the top
    assert min(top + box.height(), top + last - first) <= last


def test_the_dock_fits_900_px_with_every_section_open(viewer, widget, qtbot):
    viewer.add_image(np.full((400, 500, 3), 230, np.uint8), rgb=True, name="slide")
    window = viewer.window._qt_window
    window.resize(1200, DOCK_MAX_HEIGHT_PX)
    for box in widget.collapsibles.values():
        box.setVisible(True)
        box.expand(animate=False)
    qtbot.wait(100)
    body = widget.scroll.widget()
    assert body.sizeHint().height() > DOCK_MAX_HEIGHT_PX  # it would not fit unscrolled
    assert widget.native.height() <= DOCK_MAX_HEIGHT_PX and window.height() <= DOCK_MAX_HEIGHT_PX
    assert widget.scroll.viewport().height() < body.height()  # it scrolls
    assert widget.native.minimumSizeHint().height() < DOCK_MAX_HEIGHT_PX // 2
