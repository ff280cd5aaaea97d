"""The regions' table in a pathologist's terms: region area (the polygon's) before patch area
(the union of the patches' boxes), in fixed-point mm² (µm² under 0.01 mm²); few, narrow columns
and at least TABLE_ROWS_SHOWN rows in view at the dock's width (the CSV keeps every number)."""

from __future__ import annotations

import math
from typing import Any

from magicgui.widgets import Table
from qtpy.QtWidgets import QAbstractScrollArea, QHeaderView

from ..analysis import RegionReport, format_area

TABLE_ROWS_SHOWN = 6  # rows in view before the table scrolls (the issue asks for >= 5)
# two-line headers: the columns are as narrow as their numbers
COLUMNS = ("region", "region\narea", "patch\narea", "patches", "mean")
ALL_PATCHES = "all patches"  # the whole slide's row (the CSV's "all computed patches")


def region_table(table: Table) -> Table:
    """``table`` set up once: columns sized to their contents, no row numbers, no sideways
    scrolling, tall enough for TABLE_ROWS_SHOWN rows."""
    native = table.native
    native.verticalHeader().setVisible(False)
    native.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    native.horizontalHeader().setStretchLastSection(True)
    native.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustIgnored)
    native.setWordWrap(False)
    _fit_rows(native)
    return table


def _fit_rows(native: Any) -> None:
    """Room for the header (as its columns now make it) and TABLE_ROWS_SHOWN rows."""
    rows_px = TABLE_ROWS_SHOWN * native.verticalHeader().defaultSectionSize()
    native.setMinimumHeight(native.horizontalHeader().sizeHint().height() + rows_px
                            + 2 * native.frameWidth())


def short_name(name: str, kind: str) -> str:
    """A heatmap region by its number ('#3': the line above names its class and threshold),
    a region of interest by its name, every computed patch as ALL_PATCHES."""
    if kind == "all":
        return ALL_PATCHES
    return name.rsplit(" ", 1)[-1] if kind == "region" else name


def show_report(table: Table, report: RegionReport) -> None:
    """One row per computed-patches / region of interest / region of ``report``."""
    t = report.threshold
    data: list[list[Any]] = []
    for r in report.rows:
        v = r.values[report.class_name]
        data.append([short_name(r.name, r.kind), format_area(r.region_area, r.unit),
                     format_area(r.area, r.unit), r.patches,
                     "" if not math.isfinite(v["mean"]) else f"{v['mean']:.3f}",
                     f"{v['share_above']:.0%}" if math.isfinite(v["share_above"]) else ""])
    # with "index", magicgui reads the dict as rows ("split"), not as columns by name
    table.value = {"data": data, "index": list(range(1, len(data) + 1)),
                   "columns": [*COLUMNS, f">= {t:g}"]}
    _fit_rows(table.native)
