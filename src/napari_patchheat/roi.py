"""Regions of interest: GeoJSON files, shapely geometries or mask images -> the patches inside.

A region is given in level-0 pixels as QuPath counts them: pixel (r, c) covers [r, r + 1) x
[c, c + 1) (napari's world coordinates are these minus 0.5). A patch is inside when at least
``min_fraction`` of its effective (level-0) box is, or, with ``centre``, when the centre of its
box is. Both are computed exactly, without a loop over patches or a per-pixel mask:

- polygons: the area of the region below and left of every patch edge (the region's integral
  over the breakpoints of the patch boxes, from its edges in closed form), so each patch's
  area inside is four look-ups; centres by an even-odd scan line per patch row;
- mask images: scaled over the slide, non-zero = inside; fractions from an integral image
  (``tissue.grid_tissue_fraction``).

NumPy, shapely; no Qt, no TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import shapely

from .files import JSONError, loads_json
from .grid import PatchGrid, as_float_pair
from .messages import first_line
from .tissue import grid_tissue_fraction

DEFAULT_MIN_FRACTION = 0.5
OUTSIDE_TOLERANCE_PX = 1.0  # a region may reach this far past the slide's edge (level-0 px)
FRACTION_ROUNDING = 1e-9  # a box exactly at the fraction counts as inside despite rounding
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
MASK_MAX_PX = 2**30  # a mask image may have this many pixels (32k x 32k; Pillow's own: 179 M)
MASK_ASPECT_TOLERANCE = 0.02  # a mask's shape may differ this much from the slide's, scaled

RoiSource = Union[str, "os.PathLike[str]", shapely.Geometry, Sequence[shapely.Geometry],
                  np.ndarray, "Region", Sequence["Region"], "MaskRoi"]


@dataclass(frozen=True)
class Region:
    """One named region of interest: a (Multi)Polygon in level-0 px (x, y), valid, non-empty."""

    name: str
    geometry: shapely.Geometry


@dataclass(frozen=True)
class MaskRoi:
    """A mask image scaled over the whole slide: non-zero pixels are inside; ``name`` (its
    file's) is what messages call it."""

    mask: np.ndarray
    name: str = "the mask"


# --- reading ------------------------------------------------------------------------------------
def read_roi_geojson(path: str | os.PathLike[str]) -> list[Region]:
    """The polygons of a GeoJSON file (FeatureCollection, Feature or geometry; QuPath's "Export
    objects as GeoJSON"), one :class:`Region` per polygonal feature, in level-0 px.

    Self-intersecting polygons are repaired (``shapely.make_valid``); points and lines are left
    out. A file that is not JSON or has no polygon is a ValueError that says so.
    """
    path = Path(path)
    try:
        doc = loads_json(path.read_text(encoding="utf-8"))
    except JSONError as exc:
        raise ValueError(f"{path.name} is not JSON ({exc}): give a GeoJSON file of polygons "
                         "in level-0 pixels.") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not a text file: give a GeoJSON file of polygons "
                         "or a mask image (.png, .tif).") from None
    features = _features(doc)
    regions = []
    for n, feature in enumerate(features, 1):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict):
            continue
        name = _feature_name(feature, n)
        try:
            shape = shapely.from_geojson(json.dumps(geometry))
        except shapely.errors.GEOSException as exc:
            raise ValueError(f"{path.name}: {name} is not a valid GeoJSON geometry "
                             f"({first_line(exc)}).") from None
        polygons = polygonal(shape)
        if polygons is not None:
            regions.append(Region(name, polygons))
    if not regions:
        raise ValueError(f"{path.name} has no Polygon or MultiPolygon: draw or export the "
                         "region as an area (QuPath: an annotation), not as points or lines.")
    return regions


def _features(doc: Any) -> list[Any]:
    if isinstance(doc, list):  # QuPath may write a bare list of features
        return doc
    if not isinstance(doc, dict):
        return []
    if doc.get("type") == "FeatureCollection":
        return list(doc.get("features") or [])
    if doc.get("type") == "Feature":
        return [doc]
    return [{"geometry": doc}]


def _feature_name(feature: dict[str, Any], n: int) -> str:
    props = feature.get("properties") or {}
    label = props.get("name") or (props.get("classification") or {}).get("name")
    return f"feature {n}" + (f" ({label})" if label else "")


def polygonal(geometry: shapely.Geometry) -> shapely.Geometry | None:
    """The polygonal part of ``geometry``, repaired when invalid (``make_valid``), as one valid
    Polygon or MultiPolygon; None when it has no area."""
    if geometry is None or geometry.is_empty:
        return None
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    parts = [p for p in shapely.get_parts(geometry)
             if shapely.get_type_id(p) in (3, 6) and shapely.area(p) > 0]
    if not parts:
        return None
    out = parts[0] if len(parts) == 1 else shapely.union_all(parts)
    return out if out.area > 0 else None


def read_roi_mask(path: str | os.PathLike[str]) -> MaskRoi:
    """A mask image (PNG, TIFF, JPEG; up to MASK_MAX_PX pixels, scaled over the slide;
    non-zero = inside); a file that is not such an image is a ValueError saying so."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first  # its size, before a byte is decoded
                _check_mask_size((page.imagelength, page.imagewidth))
                mask = tif.asarray()
        else:
            with _mask_pixel_limit():
                from PIL import Image

                with Image.open(path) as image:
                    _check_mask_size(image.size[::-1])
                    mask = np.asarray(image)
    except (FileNotFoundError, PermissionError):
        raise
    except (OSError, ValueError, SyntaxError, MemoryError, IndexError) as exc:
        raise ValueError(f"{path.name} cannot be read as a mask image ({first_line(exc)}): "
                         "give a PNG, TIFF or JPEG mask, non-zero inside the region, or a "
                         "GeoJSON file.") from None
    except Exception as exc:  # Pillow's DecompressionBombError (past its limit) is no OSError
        raise ValueError(f"{path.name} cannot be read as a mask image ({first_line(exc)}): "
                         f"a mask may have {MASK_MAX_PX:,} pixels at most.") from None
    return as_mask_roi(mask, path.name)


def _check_mask_size(shape: Sequence[int]) -> None:
    """A ValueError where a mask's header declares more than MASK_MAX_PX pixels."""
    if math.prod(int(n) for n in shape) > MASK_MAX_PX:
        raise ValueError(f"it declares {' x '.join(map(str, shape))} pixels, more than "
                         f"{MASK_MAX_PX:,}")


_PIL_LIMIT_LOCK = threading.Lock()


@contextmanager
def _mask_pixel_limit() -> Iterator[None]:
    """Pillow's decompression-bomb limit raised to MASK_MAX_PX while a mask opens: a
    full-resolution mask of a slide is a legitimately huge image (20k x 20k is 400 MP, over
    Pillow's 179 MP)."""
    from PIL import Image

    with _PIL_LIMIT_LOCK:
        before = Image.MAX_IMAGE_PIXELS
        if before is not None:  # None (no limit) is left as the application set it
            Image.MAX_IMAGE_PIXELS = max(before, MASK_MAX_PX // 2)  # refused past twice it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def as_mask_roi(mask: Any, name: str = "the mask") -> MaskRoi:
    """``mask`` as a :class:`MaskRoi`; a ValueError when it is not a 2-D image."""
    m = np.asarray(mask)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"{name} has shape {m.shape}, not a 2-D image: save the mask as one "
                         "grey or indexed channel, non-zero inside the region.")
    return MaskRoi(m != 0, name)


def load_roi(source: RoiSource) -> list[Region] | MaskRoi:
    """Regions or a mask from any form a run takes: a GeoJSON or mask image path, shapely
    geometries, :class:`Region` objects, or a 2-D mask array (scaled over the slide)."""
    if isinstance(source, MaskRoi):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise ValueError(f"the region {path} is a folder: give a GeoJSON file or a mask "
                             "image.")
        if not path.is_file():
            raise ValueError(f"the region file {path} does not exist.")
        if path.suffix.lower() in MASK_SUFFIXES:
            return read_roi_mask(path)
        return read_roi_geojson(path)
    if isinstance(source, np.ndarray):
        return as_mask_roi(source)
    items = [source] if isinstance(source, (Region, shapely.Geometry)) else list(source)
    regions = []
    for n, item in enumerate(items, 1):
        region = item if isinstance(item, Region) else Region(f"region {n}", item)
        geometry = polygonal(region.geometry)
        if geometry is not None:
            regions.append(Region(region.name, geometry))
    if not regions:
        raise ValueError("the region has no area: give polygons, rectangles or ellipses.")
    return regions


def check_inside_slide(regions: Sequence[Region], slide_shape: Sequence[float]) -> None:
    """A ValueError naming the first region that reaches outside the slide (level-0 h, w)."""
    h, w = float(slide_shape[0]), float(slide_shape[1])
    tol = OUTSIDE_TOLERANCE_PX
    for region in regions:
        x0, y0, x1, y1 = shapely.bounds(region.geometry)
        if x0 < -tol or y0 < -tol or x1 > w + tol or y1 > h + tol:
            raise ValueError(
                f"{region.name} spans x {x0:g}..{x1:g}, y {y0:g}..{y1:g}, outside the "
                f"{int(w)} x {int(h)} px slide (level-0 px): export the region from this slide "
                "at full resolution.")


def check_mask_fits(mask: MaskRoi, slide_shape: Sequence[float]) -> None:
    """A ValueError when ``mask``, scaled over the slide (level-0 h, w), would stretch one axis
    more than the other: it was made for another image. Rounding of a mask made at a lower
    resolution (a pixel per axis) and MASK_ASPECT_TOLERANCE are allowed."""
    (mh, mw), (h, w) = mask.mask.shape, (float(slide_shape[0]), float(slide_shape[1]))
    sy, sx = h / mh, w / mw
    if abs(sy / sx - 1.0) > max(MASK_ASPECT_TOLERANCE, 1.0 / mh + 1.0 / mw):
        raise ValueError(
            f"{mask.name} is {mh} x {mw} px (h x w) and the slide {int(h)} x {int(w)} px: scaled "
            f"over the slide it would stretch {sy:.3g}x down and {sx:.3g}x across; save the "
            "mask with the slide's shape (at any scale).")


# --- patches inside -----------------------------------------------------------------------------
def roi_fraction(roi: list[Region] | MaskRoi, grid: PatchGrid,
                 downsample: float | Sequence[float], slide_shape: Sequence[float]) -> np.ndarray:
    """Fraction (0..1) of each patch's effective level-0 box inside the region, float64
    (rows, cols). ``downsample`` is the grid's level's; ``slide_shape`` the level-0 (h, w)."""
    if isinstance(roi, MaskRoi):
        mds = (slide_shape[0] / roi.mask.shape[0], slide_shape[1] / roi.mask.shape[1])
        return grid_tissue_fraction(roi.mask, mds, grid, downsample).astype(np.float64)
    return polygon_fraction(union(roi), grid, downsample)


def roi_centres(roi: list[Region] | MaskRoi, grid: PatchGrid,
                downsample: float | Sequence[float], slide_shape: Sequence[float]) -> np.ndarray:
    """bool (rows, cols): patches whose box centre (level-0 px) lies inside the region."""
    dy, dx = as_float_pair("downsample", downsample)
    ey, ex = grid.effective_size
    cy = (grid.row_starts() + ey / 2) * dy
    cx = (grid.col_starts() + ex / 2) * dx
    if isinstance(roi, MaskRoi):
        mh, mw = roi.mask.shape
        iy = np.floor(cy * mh / slide_shape[0]).astype(np.int64)
        ix = np.floor(cx * mw / slide_shape[1]).astype(np.int64)
        oky, okx = (iy >= 0) & (iy < mh), (ix >= 0) & (ix < mw)
        inside = roi.mask[np.clip(iy, 0, mh - 1)][:, np.clip(ix, 0, mw - 1)]
        return inside & oky[:, None] & okx[None, :]
    return polygon_centres(union(roi), cy, cx)


def roi_patch_mask(roi: RoiSource, grid: PatchGrid,
                   downsample: float | Sequence[float], slide_shape: Sequence[float], *,
                   min_fraction: float = DEFAULT_MIN_FRACTION, centre: bool = False
                   ) -> np.ndarray:
    """bool (rows, cols): the patches inside ``roi`` (any form :func:`load_roi` takes).

    Inside: at least ``min_fraction`` of the patch's effective box, or with ``centre`` its
    centre. Regions reaching outside the slide, and a region with no patch inside, are a
    ValueError.
    """
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"roi_min_fraction={min_fraction} must be a fraction above 0, up to 1.")
    loaded = load_roi(roi)
    if isinstance(loaded, MaskRoi):
        check_mask_fits(loaded, slide_shape)
    else:
        check_inside_slide(loaded, slide_shape)
    inside = _inside(loaded, grid, downsample, slide_shape, min_fraction, centre)
    if not inside.any():
        rule = "centre" if centre else f"{min_fraction:.0%} of its area"
        raise ValueError(f"the region holds no patch of the {grid.rows} x {grid.cols} grid (a "
                         f"patch counts when {rule} is inside): draw a larger region or use "
                         "smaller patches.")
    return inside


def _inside(roi: list[Region] | MaskRoi, grid: PatchGrid, downsample: float | Sequence[float],
            slide_shape: Sequence[float], min_fraction: float, centre: bool) -> np.ndarray:
    if centre:
        return roi_centres(roi, grid, downsample, slide_shape)
    return roi_fraction(roi, grid, downsample, slide_shape) >= min_fraction - FRACTION_ROUNDING


def region_patch_masks(regions: Sequence[Region], grid: PatchGrid,
                       downsample: float | Sequence[float], slide_shape: Sequence[float], *,
                       min_fraction: float = DEFAULT_MIN_FRACTION, centre: bool = False
                       ) -> list[np.ndarray]:
    """bool (rows, cols) per region: its patches by the rule of :func:`roi_patch_mask` (a
    region with none gets an empty mask; regions outside the slide are a ValueError)."""
    check_inside_slide(regions, slide_shape)
    return [_inside([r], grid, downsample, slide_shape, min_fraction, centre) for r in regions]


def scaled_roi(roi: Any, fy: float, fx: float) -> Any:
    """``roi`` with its regions' coordinates times (fy, fx) (e.g. level-0 px -> level px);
    mask images, scaled over the slide, and None stay as they are."""
    if roi is None or isinstance(roi, MaskRoi):
        return roi
    loaded = load_roi(roi)
    if isinstance(loaded, MaskRoi):
        return loaded
    return [Region(r.name, shapely.transform(r.geometry, lambda xy: xy * (fx, fy)))
            for r in loaded]


def union(regions: Sequence[Region]) -> shapely.Geometry:
    """All regions as one geometry (overlaps counted once)."""
    geoms = [r.geometry for r in regions]
    return geoms[0] if len(geoms) == 1 else shapely.union_all(geoms)


# --- exact geometry -------------------------------------------------------------------------------
def _edges(geometry: shapely.Geometry) -> np.ndarray:
    """Non-horizontal edges ``(x0, y0, x1, y1)`` of every ring, exteriors counter-clockwise
    and holes clockwise (by signed area), so the winding number is 1 inside, 0 outside."""
    oriented = shapely.orient_polygons(geometry, exterior_cw=False)
    rings = shapely.get_rings(shapely.get_parts(oriented))
    coords, index = shapely.get_coordinates(rings, return_index=True)
    same = index[1:] == index[:-1]
    e = np.concatenate([coords[:-1][same], coords[1:][same]], axis=1)
    return e[e[:, 1] != e[:, 3]]


def polygon_fraction(geometry: shapely.Geometry, grid: PatchGrid,
                     downsample: float | Sequence[float]) -> np.ndarray:
    """Exact fraction of each patch's effective level-0 box inside ``geometry``, (rows, cols).

    The region's area below-left of each point, F(x, y), is built on the breakpoints of the
    patch boxes (clipped to the region's bounds) band by band from its edges in closed form;
    a box's area inside is then F's four corners.
    """
    dy, dx = as_float_pair("downsample", downsample)
    ey, ex = grid.effective_size
    y0, x0 = grid.row_starts() * dy, grid.col_starts() * dx
    y1, x1 = y0 + ey * dy, x0 + ex * dx
    bx0, by0, bx1, by1 = shapely.bounds(geometry)
    ys = np.unique(np.clip(np.concatenate([y0, y1, [by0, by1]]), by0, by1))
    xs = np.unique(np.clip(np.concatenate([x0, x1, [bx0, bx1]]), bx0, bx1))
    table = _area_table(_edges(geometry), xs, ys)
    iy0, iy1 = (np.searchsorted(ys, np.clip(v, by0, by1)) for v in (y0, y1))
    ix0, ix1 = (np.searchsorted(xs, np.clip(v, bx0, bx1)) for v in (x0, x1))
    rows = table[iy1] - table[iy0]  # whole rows first: cheaper than four 2-D gathers
    area = rows[:, ix1] - rows[:, ix0]
    return np.clip(area / (ey * dy * ex * dx), 0.0, 1.0)


def _area_table(edges: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """F[k, j]: area of the region inside (-inf, xs[j]] x (-inf, ys[k]], (len(ys), len(xs)).

    A point is inside when the edges crossing the ray to its right wind once around it: each
    edge adds sign(dy) over the part of its y-span left of it. In band k ([ys[k], ys[k+1]]),
    an edge piece of height h from x = a to x = b contributes, at x, h * x minus
    q(x) = 0 (x <= a), h (x - a)^2 / (2 (b - a)) (a < x < b), h (x - (a + b) / 2) (x >= b);
    the h * x terms of a band sum to zero (as many up as down), so only -sum(sign * q) stays.
    """
    ny, nx = len(ys), len(xs)
    xa, ya, xb, yb = edges.T
    sign = np.sign(yb - ya)
    lo, hi = np.minimum(ya, yb), np.maximum(ya, yb)
    first = np.maximum(np.searchsorted(ys, lo, side="right") - 1, 0)
    stop = np.minimum(np.searchsorted(ys, hi, side="left"), ny - 1)
    n = np.maximum(stop - first, 0)
    e = np.repeat(np.arange(len(edges)), n)  # one piece per (edge, band)
    band = np.repeat(first, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    p0 = np.maximum(ys[band], lo[e])
    p1 = np.minimum(ys[band + 1], hi[e])
    slope = (xb[e] - xa[e]) / (yb[e] - ya[e])
    u, v = xa[e] + (p0 - ya[e]) * slope, xa[e] + (p1 - ya[e]) * slope
    a, b = np.minimum(u, v), np.maximum(u, v)
    w = sign[e] * (p1 - p0)
    # x >= b: w * (x - c), accumulated as a slope and an offset from the first breakpoint >= b
    jb = np.searchsorted(xs, b, side="left")
    flat = band * (nx + 1) + jb
    size = (ny - 1) * (nx + 1)
    ramp = np.bincount(flat, w, size).reshape(ny - 1, nx + 1)
    offset = np.bincount(flat, w * (a + b) / 2, size).reshape(ny - 1, nx + 1)
    np.cumsum(ramp, axis=1, out=ramp)
    np.cumsum(offset, axis=1, out=offset)
    q = ramp[:, :nx]
    q *= xs
    q -= offset[:, :nx]
    # a < x < b: the quadratic part, breakpoint by breakpoint (few: a piece spans few columns)
    ja = np.searchsorted(xs, a, side="right")
    m = np.maximum(jb - ja, 0)
    if m.sum():
        pe = np.repeat(np.arange(len(a)), m)
        col = np.repeat(ja, m) + (np.arange(m.sum()) - np.repeat(np.cumsum(m) - m, m))
        t = xs[col] - a[pe]
        part = w[pe] * t * t / (2 * (b[pe] - a[pe]))
        q += np.bincount(band[pe] * nx + col, part, (ny - 1) * nx).reshape(ny - 1, nx)
    table = np.zeros((ny, nx))
    for k in range(ny - 1):  # a row at a time: numpy's cumsum down axis 0 is ~6x slower
        np.subtract(table[k], q[k], out=table[k + 1])
    return table


def polygon_centres(geometry: shapely.Geometry, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
    """bool (len(cy), len(cx)): whether point (cy[i], cx[j]) (level-0 px) is inside
    ``geometry``, by counting the edges crossed left of it on its row (even-odd rule)."""
    xa, ya, xb, yb = _edges(geometry).T
    lo, hi = np.minimum(ya, yb), np.maximum(ya, yb)
    order = np.argsort(cy)
    ys = cy[order]
    first = np.searchsorted(ys, lo, side="left")  # rows with lo <= y < hi
    n = np.searchsorted(ys, hi, side="left") - first
    e = np.repeat(np.arange(len(xa)), n)
    k = np.repeat(first, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
    x = xa[e] + (ys[k] - ya[e]) * (xb[e] - xa[e]) / (yb[e] - ya[e])
    xorder = np.argsort(cx)
    j = np.searchsorted(cx[xorder], x, side="right")  # points right of the crossing
    counts = np.bincount(k * (len(cx) + 1) + j, minlength=len(cy) * (len(cx) + 1))
    parity = counts.reshape(len(cy), len(cx) + 1).cumsum(axis=1)[:, :-1] % 2 == 1
    out = np.empty_like(parity)
    out[np.ix_(order, xorder)] = parity
    return out
