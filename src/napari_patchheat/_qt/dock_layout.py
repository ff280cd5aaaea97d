"""The dock's column: a row of buttons on top (sessions: there before any heatmap), then the
collapsible sections, in one scroll area as wide as the column's widest line."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from magicgui.widgets import Container
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget
from superqt import QCollapsible

from .sections import reveal_on_open

TOP_ROW_MARGINS_PX = (4, 2, 4, 2)  # left, top, right, bottom of the row above the sections


def scrolled_column(top: Container, sections: Mapping[str, Container], opened: Collection[str],
                    min_width_px: int) -> tuple[QScrollArea, dict[str, QCollapsible]]:
    """``top`` and a collapsible box per section (open if its title is in ``opened``) in a
    scroll area at least ``min_width_px`` wide that never scrolls sideways; (scroll area,
    {title: box}). Each box scrolls into view as it opens."""
    body = QWidget()
    column = QVBoxLayout(body)
    column.setContentsMargins(2, 2, 2, 2)
    column.setSpacing(0)
    top.native.layout().setContentsMargins(*TOP_ROW_MARGINS_PX)
    column.addWidget(top.native)
    boxes: dict[str, QCollapsible] = {}
    for title, content in sections.items():
        box = boxes[title] = QCollapsible(title)
        box_layout = box.layout()
        assert box_layout is not None  # QCollapsible lays out its title and content
        box_layout.setContentsMargins(0, 0, 0, 0)
        box_layout.setSpacing(0)  # no gap under a title (a closed one too): the dock fits
        content.native.layout().setContentsMargins(4, 0, 4, 4)
        box.addWidget(content.native)
        if title in opened:
            box.expand(animate=False)
        column.addWidget(box)
    column.addStretch()
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(body)
    reveal_on_open(scroll, boxes.values())  # sections.py
    scroll_bar = scroll.verticalScrollBar()
    assert scroll_bar is not None  # a QScrollArea always has its scroll bars
    scroll.setMinimumWidth(max(min_width_px, body.minimumSizeHint().width()
                               + scroll_bar.sizeHint().width()))
    return scroll, boxes
