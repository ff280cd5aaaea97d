"""The dock's sections scroll into view as they open, whether a click on the title opened
one (animated) or the dock did (:meth:`PatchHeatWidget.show_section`).

The scroll area can only scroll to a section once its layout has its opened height: the scroll
waits for superqt's opening animation (its default, 300 ms) and the layout pass after it.
"""

from __future__ import annotations

from collections.abc import Iterable

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QScrollArea
from superqt import QCollapsible

SECTION_OPEN_MS = 400  # superqt's opening animation, and a layout pass after it


def scroll_to(scroll: QScrollArea, box: QCollapsible) -> None:
    """Scroll the least that shows all of ``box``, or its top part (its title first) where it
    is taller than the view."""
    try:
        bar, body, view = scroll.verticalScrollBar(), scroll.widget(), scroll.viewport()
    except RuntimeError:  # the dock was closed meanwhile
        return
    if bar is None or body is None or view is None:
        return
    top = box.mapTo(body, box.rect().topLeft()).y()
    value = max(bar.value(), top + box.height() - view.height())
    bar.setValue(min(value, top))


def reveal_on_open(scroll: QScrollArea, boxes: Iterable[QCollapsible]) -> None:
    """Each of ``boxes`` scrolls into view SECTION_OPEN_MS after it opens."""
    for box in boxes:
        box.toggled.connect(lambda opened, box=box: QTimer.singleShot(
            SECTION_OPEN_MS, lambda: scroll_to(scroll, box)) if opened else None)
