"""The heatmap under the cursor: which cell, and what napari's status bar says about it.

napari computes its status from the selected layer only, on a thread of its own, and sets
``viewer.status``. :class:`HoverStatus` adds the heatmap part after each of those and after
each cursor move (napari's status thread may be off), so the status bar names the patch under
the cursor, its level-0 box and every class's value whichever layer is selected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..heatmap import HEATMAP_META_KEY, Heatmap
from .slide_layer import is_heatmap_layer

SKIPPED_TEXT = "skipped (below the tissue threshold)"
STATUS_SEPARATOR = "  |  "  # between napari's own status and the heatmap's
NAPARI_IDLE_STATUS = ("", "Ready")  # napari's status when the cursor is over no layer


@dataclass(frozen=True)
class HeatmapCell:
    """Cell (row, col) of the heatmap shown by ``layer``: patch (row, col) of its grid."""

    layer: Any
    heatmap: Heatmap
    row: int
    col: int

    @property
    def values(self) -> np.ndarray:
        """The cell's value for each class (NaN where not computed)."""
        return self.heatmap.values[self.row, self.col]


def cell_of(layer: Any, yx_world: Any) -> tuple[int, int] | None:
    """(row, col) of the cell of heatmap layer ``layer`` under a world point (the cell drawn
    there: the patch whose centre is nearest); None outside its grid."""
    heatmap: Heatmap = layer.metadata[HEATMAP_META_KEY]
    i, j = np.round(layer.world_to_data(np.asarray(yx_world, float))[-2:])
    if not (0 <= i < heatmap.grid.rows and 0 <= j < heatmap.grid.cols):
        return None
    return int(i), int(j)


def heatmap_cell_at(viewer: Any, yx_world: Any) -> HeatmapCell | None:
    """The heatmap cell under a world point, as seen: of the visible heatmap layers there, the
    top one with a value there, else the top one whose grid covers the point; None if none."""
    covering = None
    for layer in reversed(list(viewer.layers)):
        if not is_heatmap_layer(layer) or not layer.visible or layer.opacity == 0:
            continue
        hit = cell_of(layer, yx_world)
        if hit is None:
            continue
        cell = HeatmapCell(layer, layer.metadata[HEATMAP_META_KEY], *hit)
        if not np.isnan(cell.values).any():
            return cell
        covering = covering or cell
    return covering


def box_text(box: Any) -> str:
    """'level-0 y y0–y1, x x0–x1 px' of a level-0 box (y0, x0, y1, x1)."""
    y0, x0, y1, x1 = box
    return f"level-0 y {y0:g}–{y1:g}, x {x0:g}–{x1:g} px"


def values_text(class_names: Any, values: Any) -> str:
    """'<class> <value>, ...' of a patch's values; 'not computed yet' where any is NaN. The
    status bar and the inspector say it alike."""
    if values is None or np.isnan(values).any():
        return "not computed yet"
    return ", ".join(f"{n} {v:.4g}" for n, v in zip(class_names, values))


def cell_text(cell: HeatmapCell, skipped: bool = False) -> str:
    """'<layer>: patch (row r, col c), level-0 y y0–y1, x x0–x1 px: <class> <value>, ...';
    SKIPPED_TEXT in place of the values of a patch the run's tissue threshold ``skipped``."""
    h = cell.heatmap
    box = h.grid.box(cell.row, cell.col, h.downsample)
    values = SKIPPED_TEXT if skipped else values_text(h.class_names, cell.values)
    return f"{cell.layer.name}: patch (row {cell.row}, col {cell.col}), {box_text(box)}: {values}"


def with_heatmap(status: Any, text: str) -> Any:
    """napari's status (a string, or its dict whose 'coordinates' the status bar shows) with
    ``text`` added at the end."""
    if isinstance(status, dict):
        return {**status, "coordinates": f"{status.get('coordinates', '')}"
                                          f"{STATUS_SEPARATOR}{text}"}
    return text if status in NAPARI_IDLE_STATUS else f"{status}{STATUS_SEPARATOR}{text}"


class HoverStatus:
    """Adds the heatmap cell under the cursor to ``viewer.status`` (see the module).
    ``skipped(cell)`` says whether the tissue threshold skipped a cell not computed."""

    def __init__(self, viewer: Any, skipped: Callable[[HeatmapCell], bool] = lambda _: False):
        self.viewer, self.skipped = viewer, skipped
        self._napari_status: Any = viewer.status  # napari's own, without the heatmap part
        self._shown: Any = None  # the status set here last
        # after napari's own listeners (the status bar's among them)
        viewer.events.status.connect(self._on_status, position="last")
        viewer.cursor.events.position.connect(self.update, position="last")

    def text_at(self, yx_world: Any) -> str:
        """The heatmap part of the status at a world point; '' off every heatmap."""
        cell = heatmap_cell_at(self.viewer, yx_world)
        if cell is None:
            return ""
        return cell_text(cell, bool(np.isnan(cell.values).any()) and self.skipped(cell))

    def update(self, *_: Any) -> None:
        """Set the status for the cursor's position: napari's own plus the heatmap part."""
        text = self.text_at(self.viewer.cursor.position)
        status = with_heatmap(self._napari_status, text) if text else self._napari_status
        if status != self.viewer.status:
            self._shown = self.viewer.status = status

    def _on_status(self, event: Any) -> None:
        # napari may emit a change after its setter returns (its models batch events), so a
        # status set here is known by its value
        if event.value != self._shown:  # napari set its own status: add the heatmap part
            self._napari_status = event.value
            self.update()

    def remove(self) -> None:
        """Stop adding to the status."""
        self.viewer.events.status.disconnect(self._on_status)
        self.viewer.cursor.events.position.disconnect(self.update)
