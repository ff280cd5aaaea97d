"""Numbers per region: patches, area, and per class the mean, median, 90th percentile and the
share at or above a threshold; as rows for a table, a CSV and the terminal.

A region's patches are the computed patches it selects (a boolean (rows, cols) mask: a region of
interest's, a heatmap region's, or every computed patch for the whole slide). Its area is that
of the union of their effective level-0 boxes (overlaps counted once), computed exactly on the
mesh of the boxes' edges; in µm² when the slide's pixel size is known, else px².
NumPy only, plus the CSV writer; no Qt, no TensorFlow.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from ..export.tables import text_cell
from ..files import atomic_write
from ..grid import PatchGrid
from ..heatmap import Heatmap
from ..roi import MaskRoi, RoiSource, load_roi, region_patch_masks, roi_patch_mask

PERCENTILE = 90
# a region's patches: bool (rows, cols) over the grid, or (rows, cols) index arrays
Selection = np.ndarray | tuple[np.ndarray, np.ndarray]
STATS = ("mean", "median", f"p{PERCENTILE}", "share_above")
UM2_PER_MM2 = 1e6
MIN_MM2 = 0.01  # areas below are written in µm²


@dataclass(frozen=True)
class RegionStats:
    """One row: ``name``, ``kind`` ("all", "roi" or "region"), computed ``patches``, ``area``
    of their boxes' union and ``region_area`` of the region's polygon (NaN without one), in µm²
    (px² when ``unit`` is "px2"), and ``values[class][stat]``."""

    name: str
    kind: str
    patches: int
    area: float
    region_area: float
    unit: str
    values: dict[str, dict[str, float]]


def _indices(patches: Selection) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(patches, tuple):
        return np.asarray(patches[0], np.int64), np.asarray(patches[1], np.int64)
    rows, cols = np.nonzero(np.asarray(patches, bool))
    return rows, cols


def union_area(grid: PatchGrid, downsample: Sequence[float], patches: Selection) -> float:
    """Exact level-0 area (px²) of the union of the effective boxes of ``patches`` (see
    :data:`Selection`): the boxes' edges cut the plane into a mesh; a mesh cell counts once when
    any box covers it (a 2-D difference array, summed). The mesh spans the patches only."""
    rows, cols = _indices(patches)
    if len(rows) == 0:
        return 0.0
    dy, dx = float(downsample[0]), float(downsample[1])
    (ey, ex) = grid.effective_size
    ty, iy0, iy1 = _mesh(grid.row_starts()[rows] * dy, ey * dy)
    tx, ix0, ix1 = _mesh(grid.col_starts()[cols] * dx, ex * dx)
    ny, nx = len(ty), len(tx)
    corners = np.concatenate([iy0 * nx + ix0, iy1 * nx + ix1, iy0 * nx + ix1, iy1 * nx + ix0])
    signs = np.repeat([1.0, 1.0, -1.0, -1.0], len(rows))
    diff = np.bincount(corners, signs, ny * nx).reshape(ny, nx)
    covered = diff.cumsum(axis=0).cumsum(axis=1)[:-1, :-1] > 0.5
    return float(np.diff(ty) @ covered.astype(np.float64) @ np.diff(tx))


def _mesh(starts: np.ndarray, extent: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted edges of boxes [starts, starts + extent) and each box's first and end edge."""
    edges = np.unique(np.concatenate([starts, starts + extent]))
    return edges, np.searchsorted(edges, starts), np.searchsorted(edges, starts + extent)


def region_stats(heatmap: Heatmap, name: str, kind: str, patches: Selection,
                 threshold: float, geometry: shapely.Geometry | None = None) -> RegionStats:
    """The numbers of the computed patches among ``patches`` (see :data:`Selection`);
    ``geometry`` (level-0 px) is the region's polygon, for its own area."""
    rows, cols = _indices(patches)
    keep = heatmap.computed[rows, cols]
    rows, cols = rows[keep], cols[keep]
    values = heatmap.values[rows, cols].astype(np.float64)  # (n, classes)
    area = union_area(heatmap.grid, heatmap.downsample, (rows, cols))
    region_area = float("nan") if geometry is None else float(shapely.area(geometry))
    unit = "px2"
    if heatmap.mpp is not None:
        area *= heatmap.mpp[0] * heatmap.mpp[1]
        region_area *= heatmap.mpp[0] * heatmap.mpp[1]
        unit = "um2"
    per_class = {}
    for k, cls in enumerate(heatmap.class_names):
        v = values[:, k]
        per_class[cls] = (dict.fromkeys(STATS, float("nan")) if len(v) == 0 else {
            "mean": float(v.mean()), "median": float(np.median(v)),
            f"p{PERCENTILE}": float(np.percentile(v, PERCENTILE)),
            "share_above": float((v >= threshold).mean())})
    return RegionStats(name, kind, len(rows), area, region_area, unit, per_class)


def roi_stats(heatmap: Heatmap, roi: RoiSource, threshold: float) -> list[RegionStats]:
    """One row per region of interest (each feature or shape; a mask image is one row), its
    patches by the default rule of a run (half the box inside)."""
    g, d = heatmap.grid, heatmap.downsample
    shape = heatmap.slide_shape or (g.height * d[0], g.width * d[1])
    loaded = load_roi(roi)
    if isinstance(loaded, MaskRoi):
        return [region_stats(heatmap, "mask", "roi", roi_patch_mask(loaded, g, d, shape),
                             threshold)]
    rows = []
    for region in loaded:  # one at a time: a full-grid mask each
        (mask,) = region_patch_masks([region], g, d, shape)
        rows.append(region_stats(heatmap, region.name, "roi", _indices(mask), threshold,
                                 region.geometry))
    return rows


def format_area(value: float, unit: str) -> str:
    """An area for people, fixed point: mm² (3 decimals) from 0.01 mm², else whole µm²;
    whole px² when ``unit`` is "px2" (no pixel size); empty when NaN (no polygon)."""
    if not math.isfinite(value):
        return ""
    if unit != "um2":
        return f"{value:,.0f} px²"
    if value >= MIN_MM2 * UM2_PER_MM2:
        return f"{value / UM2_PER_MM2:,.3f} mm²"
    return f"{value:,.0f} µm²"


def stats_columns(class_names: Sequence[str], unit: str) -> list[str]:
    """The CSV header: region, kind, patches, region_area_<unit> (the polygon's),
    patch_area_<unit> (the union of the patches' boxes), area_<unit> (the patch area again,
    its former name, kept for the tools that read it), then <class>_<stat> per class."""
    return ["region", "kind", "patches", f"region_area_{unit}", f"patch_area_{unit}",
            f"area_{unit}", *(f"{c}_{s}" for c in class_names for s in STATS)]


def stats_row(row: RegionStats) -> list[object]:
    """One row of :func:`stats_columns`; a number that is not (NaN: no polygon, no patch) is
    an empty cell."""
    numbers = [row.region_area, row.area, row.area,
               *(row.values[c][s] for c in row.values for s in STATS)]
    return [row.name, row.kind, row.patches,
            *("" if isinstance(v, float) and not math.isfinite(v) else v for v in numbers)]


def stats_measurements(row: RegionStats) -> dict[str, float]:
    """A row as QuPath measurements (name -> number)."""
    unit = "µm^2" if row.unit == "um2" else "px^2"
    out = {f"Area {unit}": row.region_area, "Patches": float(row.patches),
           f"Patch area {unit}": row.area}
    for cls, stats in row.values.items():
        out.update({f"{cls} {s.replace('_', ' ')}": v for s, v in stats.items()})
    return out


def write_stats_csv(rows: Sequence[RegionStats], class_names: Sequence[str],
                    path: str | Path) -> Path:
    """One CSV row per region (see :func:`stats_columns`), written atomically; text cells
    (names, class names in the header) neutralised as the export's CSV does
    (export.text_cell: no spreadsheet runs them as formulas)."""
    path = Path(path)
    unit = rows[0].unit if rows else "px2"
    with atomic_write(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([text_cell(c) for c in stats_columns(class_names, unit)])
            writer.writerows([text_cell(str(v)) if isinstance(v, str) else v for v in stats_row(r)]
                             for r in rows)
    return path


def format_stats(rows: Sequence[RegionStats], class_name: str) -> str:
    """A plain-text table of ``rows`` for the terminal: region area (the polygon's), patch area
    (the union of the patches' boxes) and one class's numbers."""
    head = (f"{'region':28s} {'patches':>8s} {'region area':>14s} {'patch area':>14s} "
            f"{'mean':>7s} {'median':>7s} {'p' + str(PERCENTILE):>7s} {'share':>7s}  "
            f"({class_name})")
    lines = [head]
    for r in rows:
        v = r.values[class_name]
        lines.append(f"{r.name[:28]:28s} {r.patches:8d} {format_area(r.region_area, r.unit):>14s}"
                     f" {format_area(r.area, r.unit):>14s} {v['mean']:7.3f} {v['median']:7.3f} "
                     f"{v[f'p{PERCENTILE}']:7.3f} {v['share_above']:7.1%}")
    return "\n".join(lines)
