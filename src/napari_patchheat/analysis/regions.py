"""From a heatmap to regions: threshold a class (optionally smoothed first) into polygons in
level-0 px, one per connected region with its holes, and write them as QuPath annotations.

A patch's region is its heatmap cell: the stride x stride square (level pixels) centred on the
patch's centre, which is what napari draws for it (docs/coordinates.md). Cells tile the slide,
so the polygons are exactly the union of the cells above the threshold (4-connected cells form
one region), and a region re-imported as a region of interest selects exactly its patches by
their centres (and by area too where the stride is at least the effective size).
Coordinates are level-0 px as QuPath counts them (pixel (r, c) covers [r, r + 1) x [c, c + 1)).
NumPy, SciPy, shapely; no Qt, no TensorFlow.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from scipy import ndimage

from ..export import CLASS_COLORS_RGB
from ..files import atomic_write
from ..heatmap import Heatmap

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class HeatRegion:
    """One connected region of cells: its polygon (level-0 px, x y, holes kept) and its
    patches as (rows, cols) index arrays (memory by the region's size, not the grid's)."""

    name: str
    geometry: shapely.Geometry
    patches: tuple[np.ndarray, np.ndarray]


def smoothed(heatmap: Heatmap, class_index: int, sigma_cells: float) -> np.ndarray:
    """One class's values, Gaussian-smoothed over ``sigma_cells`` cells among the computed
    patches only (NaN stays NaN); the values themselves when ``sigma_cells`` is 0."""
    values = heatmap.values[..., class_index].astype(np.float64)
    if not sigma_cells >= 0 or not np.isfinite(sigma_cells):  # NaN compares False
        raise ValueError(f"smooth={sigma_cells} must be 0 (none) or a number of cells above 0.")
    if sigma_cells == 0:
        return values
    known = ~np.isnan(values)
    weight = ndimage.gaussian_filter(known.astype(np.float64), sigma_cells, mode="constant")
    total = ndimage.gaussian_filter(np.where(known, values, 0.0), sigma_cells, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known, total / weight, np.nan)


def above_threshold(heatmap: Heatmap, class_name: str | int, threshold: float, *,
                    smooth: float = 0.0) -> np.ndarray:
    """bool (rows, cols): computed patches whose (smoothed) value of the class is >= threshold."""
    values = smoothed(heatmap, heatmap.class_index(class_name), smooth)
    with np.errstate(invalid="ignore"):
        return values >= threshold


def cell_lattice(heatmap: Heatmap) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(origin, step)``: cell (i, j) covers level-0 px y in [oy + i sy, oy + (i + 1) sy),
    x likewise; each cell is stride x stride level px centred on its patch's centre."""
    g, (dy, dx) = heatmap.grid, heatmap.downsample
    (ey, ex), (sy, sx), (py, px) = g.effective_size, g.stride, g.pad_before
    origin = ((-py + (ey - sy) / 2) * dy, (-px + (ex - sx) / 2) * dx)
    return origin, (sy * dy, sx * dx)


Cells = tuple[np.ndarray, np.ndarray]  # (rows, cols) of a region's cells


def cell_polygons(cells: np.ndarray, heatmap: Heatmap) -> list[tuple[shapely.Geometry, Cells]]:
    """The 4-connected regions of ``cells`` (bool rows x cols): (polygon in level-0 px with its
    holes, the region's cells as (rows, cols) indices), largest first.

    Each row's runs of cells become rectangles in cell units (exact integers) with a vertex
    wherever a run of the row above or below starts or stops, so that neighbours share their
    edges vertex for vertex: a valid coverage, which ``shapely.coverage_union_all`` merges
    faster than a general union (bench_regions). Then placed on the cell lattice.
    """
    labels, n = ndimage.label(cells, structure=FOUR_CONNECTED)
    if n == 0:
        return []
    union = shapely.coverage_union_all(_noded_runs(cells))
    parts = shapely.get_parts(union)
    inner = shapely.get_coordinates(shapely.point_on_surface(parts))  # (x, y) in cells
    owner = labels[np.floor(inner[:, 1]).astype(int), np.floor(inner[:, 0]).astype(int)]
    if len(parts) != n or len(set(owner.tolist())) != n:  # cannot happen for a valid coverage
        raise RuntimeError(f"{len(parts)} polygons for {n} connected regions")
    (oy, ox), (sy, sx) = cell_lattice(heatmap)
    placed = shapely.transform(parts, lambda xy: xy * (sx, sy) + (ox, oy))
    rows, cols = np.nonzero(labels)
    of = labels[rows, cols]
    order = np.argsort(of, kind="stable")
    bounds = np.cumsum(np.bincount(of, minlength=n + 1))  # label k: bounds[k - 1]:bounds[k]
    out = []
    for geometry, k in zip(placed, owner.tolist()):
        at = order[bounds[k - 1] : bounds[k]]
        out.append((geometry, (rows[at], cols[at])))
    out.sort(key=lambda item: -len(item[1][0]))
    return out


def _ranges(first: np.ndarray, count: np.ndarray) -> np.ndarray:
    """first[0], first[0] + 1, ... (count[0] of them), then first[1], ...: concatenated."""
    return np.repeat(first, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count,
                                                                         count))


def _noded_runs(cells: np.ndarray) -> np.ndarray:
    """Polygons (cell units, x y) of each row's runs of True cells, with a vertex on the top
    (bottom) edge at every start and stop of a run of the row above (below) inside the run."""
    h, w = cells.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = cells
    step = np.diff(padded, axis=1)
    row, start = np.nonzero(step == 1)
    _, stop = np.nonzero(step == -1)  # row-major, like the starts: one stop per start
    wide = w + 1
    ends = np.sort(np.concatenate([row * wide + start, row * wide + stop]))

    def inside(shift: int) -> tuple[np.ndarray, np.ndarray]:
        """How many, and which (ascending), ends of runs of row r + shift lie in (start, stop)."""
        key = ends - shift * wide  # those ends, as if on row r
        lo = np.searchsorted(key, row * wide + start, side="right")
        count = np.searchsorted(key, row * wide + stop, side="left") - lo
        return count, ends[_ranges(lo, count)] % wide

    n_top, x_top = inside(-1)
    n_bottom, x_bottom = inside(1)
    # ring: (start, r), top vertices ascending, (stop, r), (stop, r + 1), bottom vertices
    # descending, (start, r + 1), back to (start, r)
    per = 5 + n_top + n_bottom
    first = np.cumsum(per) - per
    xy = np.empty((int(per.sum()), 2))
    xy[first] = np.c_[start, row]
    xy[_ranges(first + 1, n_top)] = np.c_[x_top, np.repeat(row, n_top)]
    corner = first + 1 + n_top
    xy[corner] = np.c_[stop, row]
    xy[corner + 1] = np.c_[stop, row + 1]
    local = np.arange(n_bottom.sum()) - np.repeat(np.cumsum(n_bottom) - n_bottom, n_bottom)
    at = np.repeat(corner + 2, n_bottom) + np.repeat(n_bottom, n_bottom) - 1 - local
    xy[at] = np.c_[x_bottom, np.repeat(row + 1, n_bottom)]
    last = corner + 2 + n_bottom
    xy[last] = np.c_[start, row + 1]
    xy[last + 1] = np.c_[start, row]
    return shapely.polygons(shapely.linearrings(xy, indices=np.repeat(np.arange(len(row)), per)))


def heatmap_regions(heatmap: Heatmap, class_name: str | int, threshold: float, *,
                    smooth: float = 0.0, min_cells: int = 1) -> list[HeatRegion]:
    """The connected regions where the class's (smoothed) value is >= ``threshold`` and that
    hold at least ``min_cells`` cells, largest first (see :func:`sized_regions`)."""
    return sized_regions(heatmap, class_name, threshold, smooth=smooth, min_cells=min_cells)[0]


def sized_regions(heatmap: Heatmap, class_name: str | int, threshold: float, *,
                  smooth: float = 0.0, min_cells: int = 1) -> tuple[list[HeatRegion], int]:
    """The regions of at least ``min_cells`` cells, largest first, named '<class> >=
    <threshold> #n', clipped to the slide, and how many smaller ones were left out. A
    ValueError when no cell is at or above the threshold."""
    c = heatmap.class_index(class_name)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold={threshold} must be a number, e.g. 0.5.")
    if isinstance(min_cells, bool) or not isinstance(min_cells, (int, np.integer)) \
            or min_cells < 1:
        raise ValueError(f"min_cells={min_cells!r} must be a whole number of cells, 1 or more.")
    cells = above_threshold(heatmap, c, threshold, smooth=smooth)
    if not cells.any():
        raise ValueError(f"no computed patch has {heatmap.class_names[c]} >= {threshold:g}"
                         f"{' after smoothing' if smooth else ''}: lower the threshold.")
    label = f"{heatmap.class_names[c]} >= {threshold:g}"
    every = cell_polygons(cells, heatmap)  # largest first: the kept ones are a prefix
    found = [(g, m) for g, m in every if len(m[0]) >= min_cells]
    if heatmap.slide_shape is not None:  # SAME padding's cells reach past the slide's edge
        h, w = heatmap.slide_shape
        found = [(shapely.clip_by_rect(g, 0, 0, w, h), m) for g, m in found]
    return [HeatRegion(f"{label} #{n}", geometry, patches)
            for n, (geometry, patches) in enumerate(found, 1)], len(every) - len(found)


def write_regions_geojson(regions: Sequence[HeatRegion], path: str | Path, *,
                          class_name: str, class_index: int = 0,
                          measurements: Sequence[dict[str, float]] | None = None,
                          metadata: dict[str, object] | None = None) -> Path:
    """A GeoJSON FeatureCollection that QuPath imports as annotations: one Polygon (holes kept)
    per region in level-0 px (x, y), classified ``class_name``, with ``measurements`` (one
    dict per region, e.g. :func:`analysis.stats.stats_measurements`). Written atomically."""
    path = Path(path)
    colour = list(CLASS_COLORS_RGB[class_index % len(CLASS_COLORS_RGB)])
    features = []
    for n, region in enumerate(regions):
        props: dict[str, object] = {
            "objectType": "annotation", "name": region.name,
            "classification": {"name": class_name, "color": colour}}
        if measurements is not None:
            props["measurements"] = {k: _finite(v) for k, v in measurements[n].items()}
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{path.name}|{region.name}")),
            "geometry": json.loads(shapely.to_geojson(rfc7946(region.geometry))),
            "properties": props})
    doc: dict[str, object] = {"type": "FeatureCollection", "features": features}
    if metadata:
        doc["patchheat"] = metadata
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(doc, allow_nan=False, default=str), encoding="utf-8")
    return path


def rfc7946(geometry: shapely.Geometry) -> shapely.Geometry:
    """``geometry`` with RFC 7946's ring orientation in (x, y): outer rings counter-clockwise,
    holes clockwise (as the export's tile GeoJSON writes its boxes)."""
    return shapely.orient_polygons(geometry, exterior_cw=False)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
