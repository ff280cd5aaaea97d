"""The grid preview's picture past a few hundred patches: every patch boundary, drawn into an
RGBA image with one pixel per screen pixel, placed in world coordinates over the view.

On one axis patch i spans level pixels [a_i, a_i + e) (a_i = i * stride - pad_before, e the
effective size), level-0 pixels [a_i * d, (a_i + e) * d). Its boundaries are the lines at
a_i * d and (a_i + e) * d across the extents of the other axis's patches. A screen pixel is lit
where such a line passes through it, so every boundary is drawn, to the screen pixel. Lines of
an axis closer than about 3 screen pixels fade (their mean opacity is capped), and closer than
2, where the screen cannot tell them apart, they become an even tint over the patches' extent:
the picture stays the true tiling, seen coarser.

Overlap (stride < effective size) does not show in the lines alone (with e = 2 s the ends of
patches fall on the starts of others), so single patches are shaded and outlined in another
colour: those whose indices are multiples of ``m = ceil(e / s) + 1`` (they never overlap each
other); each spans ``e`` across the lines of its neighbours. With a region of interest, a pixel
stays only where a patch inside the region meets it (:func:`region_mask`). Numpy only: no Qt,
no napari.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .grid import FloatPair, PatchGrid

LINE_COLOR = "#00ffff"  # cyan: the rectangles' edges and the lines
EXAMPLE_COLOR = "#ff8c00"  # orange: single patches shown where patches overlap
LINE_ALPHA = 0.9  # opacity of the lines, and of single patches' outlines
TINT_MAX_ALPHA = 0.25  # the mean opacity of an axis's lines is at most this: closer lines fade
TINT_MIN_LIT_FRACTION = 0.5  # past this share of lit pixels (lines < 2 px apart): an even tint
EXAMPLE_ALPHA = 0.35  # opacity of a single patch's shade
EXAMPLE_MIN_SCREEN_PX = 6.0  # single patches are shown only when at least this large on screen


@dataclass(frozen=True)
class AxisPixels:
    """Screen pixels along one axis: pixel k covers level-0 pixel-edge coordinates (where
    level-0 pixel p spans [p, p + 1)) [start + k * step, start + (k + 1) * step)."""

    start: float
    step: float
    n: int

    def edges(self) -> np.ndarray:
        """The n + 1 pixel edges, level-0 pixel-edge coordinates."""
        return self.start + self.step * np.arange(self.n + 1, dtype=np.float64)

    @property
    def stop(self) -> float:
        """Level-0 pixel-edge coordinate of the last pixel's far edge."""
        return self.start + self.step * self.n


@dataclass(frozen=True)
class AxisLines:
    """One axis of the picture, per screen pixel: ``boundary`` (a patch boundary lies in it),
    ``covered`` (it meets a patch's extent, ends included), ``example`` (its centre lies in a
    single patch shown), ``drawn`` (its line is drawn: ``boundary``, or ``covered`` as a tint);
    ``alpha`` of this axis's lines."""

    boundary: np.ndarray
    covered: np.ndarray
    example: np.ndarray
    alpha: float
    tint: bool

    @property
    def drawn(self) -> np.ndarray:
        """Pixels whose line is drawn."""
        return self.covered if self.tint else self.boundary

    @property
    def example_edge(self) -> np.ndarray:
        """First and last pixels of each single patch shown."""
        inner = np.r_[True, self.example, True]
        return self.example & ~(inner[:-2] & inner[2:])


@dataclass(frozen=True)
class GridPicture:
    """The RGBA image (h, w, 4, uint8) of the boundaries, its axes and whether single patches
    are shown in it."""

    rgba: np.ndarray
    rows: AxisLines
    cols: AxisLines
    examples_shown: bool

    @property
    def dense(self) -> bool:
        """True when the lines of either axis are too close to tell apart (drawn as a tint)."""
        return self.rows.tint or self.cols.tint


def example_steps(grid: PatchGrid) -> tuple[int, int] | None:
    """(m_y, m_x): single patches are shown at rows and columns that are multiples of these;
    None when no patches overlap. ``ceil(e / s) + 1`` on an axis where patches overlap (those
    shown never overlap, and a gap shows their extent), 2 on one where they do not."""
    e, s = grid.effective_size, grid.stride
    if s[0] >= e[0] and s[1] >= e[1]:
        return None
    steps = (math.ceil(ei / si) + 1 if si < ei else 2 for ei, si in zip(e, s))
    return next(steps), next(steps)


def example_indices(indices: range, step: int) -> np.ndarray:
    """Indices of the single patches shown among ``indices`` (one axis): the multiples of
    ``step``, else (a range shorter than ``step``) its middle one, so one always shows."""
    first = -(-indices.start // step) * step
    picked = np.arange(first, indices.stop, step, dtype=np.int64)
    if len(picked) or not len(indices):
        return picked
    return np.array([indices.start + len(indices) // 2], np.int64)


def view_pixels(view_level0: tuple[float, ...], level0_per_screen_px: FloatPair,
                extent_level0: tuple[float, ...], margin_px: tuple[int, int] = (0, 0)
                ) -> tuple[AxisPixels, AxisPixels] | None:
    """The screen pixels of the view ``(y0, x0, y1, x1)`` (level-0 pixel-edge coordinates) that
    meet ``extent_level0`` (same coordinates), widened by ``margin_px`` screen pixels a side;
    None when none does. Pixels stay aligned to the view's own."""
    out = []
    for a, step in enumerate(level0_per_screen_px):
        start, n = view_level0[a], math.ceil((view_level0[a + 2] - view_level0[a]) / step - 1e-9)
        lo = max(-margin_px[a], math.floor((extent_level0[a] - start) / step))
        hi = min(n + margin_px[a], math.ceil((extent_level0[a + 2] - start) / step))
        if hi <= lo:
            return None
        out.append(AxisPixels(start + lo * step, step, hi - lo))
    return out[0], out[1]


def axis_lines(starts: np.ndarray, extent: float, pixels: AxisPixels,
               examples: np.ndarray | None) -> AxisLines:
    """One axis of the picture from its patches' ``starts`` (sorted, level-0 pixel-edge
    coordinates), each ``extent`` level-0 px long, and the starts of the single patches shown
    (``examples``, sorted; None: none shown)."""
    edges = pixels.edges()
    ends = starts + extent
    lo, hi = edges[:-1], edges[1:]
    boundary = ((np.searchsorted(starts, hi) - np.searchsorted(starts, lo))
                + (np.searchsorted(ends, hi) - np.searchsorted(ends, lo))) > 0
    covered = np.searchsorted(starts, hi) > np.searchsorted(ends, lo)
    lit = float(boundary[covered].mean()) if covered.any() else 0.0
    tint = lit > TINT_MIN_LIT_FRACTION
    alpha = TINT_MAX_ALPHA if tint else min(LINE_ALPHA, TINT_MAX_ALPHA / max(lit, 1e-9))
    example = np.zeros(pixels.n, bool)
    if examples is not None and len(examples):
        centre = (lo + hi) / 2
        k = np.searchsorted(examples, centre, side="right") - 1
        example = (k >= 0) & (centre < examples[np.maximum(k, 0)] + extent)
    return AxisLines(boundary, covered, example, alpha, tint)


def rgb(color: str) -> np.ndarray:
    """'#rrggbb' -> (3,) floats in [0, 1]."""
    return np.array([int(color[k:k + 2], 16) for k in (1, 3, 5)]) / 255


def _palette(alpha_rows: float, alpha_cols: float) -> np.ndarray:
    """RGBA uint8 of each pixel code: bit 0 a row line, bit 1 a column line, bit 2 a single
    patch's shade (lines drawn over it), bit 3 its outline (over everything)."""
    out = np.zeros((16, 4))
    for code in range(16):
        a_line = max(alpha_rows if code & 1 else 0.0, alpha_cols if code & 2 else 0.0)
        color = rgb(LINE_COLOR)
        if code & 8:
            a_line, color = LINE_ALPHA, rgb(EXAMPLE_COLOR)
        a_shade = EXAMPLE_ALPHA if code & 4 else 0.0
        a = a_line + a_shade * (1 - a_line)
        if a > 0:
            mixed = color * a_line + rgb(EXAMPLE_COLOR) * a_shade * (1 - a_line)
            out[code] = (*(mixed / a), a)
    return np.round(out * 255).astype(np.uint8)


def _state(lines: AxisLines) -> np.ndarray:
    """Per pixel of an axis, 4 bits: drawn, covered, single patch, single patch's edge."""
    return (lines.drawn.astype(np.uint8) | (lines.covered.astype(np.uint8) << 1)
            | (lines.example.astype(np.uint8) << 2) | (lines.example_edge.astype(np.uint8) << 3))


def render(grid: PatchGrid, downsample: FloatPair, rows_px: AxisPixels,
           cols_px: AxisPixels) -> GridPicture:
    """The picture of ``grid`` (on a level of ``downsample``) over the screen pixels
    ``rows_px`` x ``cols_px`` (level-0 pixel-edge coordinates)."""
    # one screen pixel more a side: a boundary on the first or last pixel's edge is drawn too
    rr, cc = grid.patches_in(rows_px.start - rows_px.step, cols_px.start - cols_px.step,
                             rows_px.stop + rows_px.step, cols_px.stop + cols_px.step, downsample)
    steps = example_steps(grid)
    axes = []
    for a, (indices, pixels) in enumerate(((rr, rows_px), (cc, cols_px))):
        d, e, s, p = downsample[a], grid.effective_size[a], grid.stride[a], grid.pad_before[a]
        starts = (np.arange(indices.start, indices.stop, dtype=np.int64) * s - p) * d
        examples = None
        if steps is not None and e * d / pixels.step >= EXAMPLE_MIN_SCREEN_PX:
            examples = (example_indices(indices, steps[a]) * s - p) * d
        axes.append(axis_lines(starts, e * d, pixels, examples))
    rows, cols = axes
    shown = bool(rows.example.any() and cols.example.any())
    # a pixel's code is a function of its row's state and its column's: at most 16 row
    # patterns, each made once, then the image is those rows picked (one copy)
    row_state, col_state = _state(rows), _state(cols)
    if not shown:
        row_state &= 3
        col_state &= 3
    patterns = np.zeros((16, cols_px.n), np.uint8)
    for state in np.unique(row_state):
        r = (state >> np.arange(4)) & 1
        c = [(col_state >> k) & 1 for k in range(4)]
        patterns[state] = ((r[0] & c[1]) | ((r[1] & c[0]) << 1) | ((r[2] & c[2]) << 2)
                           | (((r[3] & c[2]) | (r[2] & c[3])) << 3))
    rgba = _palette(rows.alpha, cols.alpha)[patterns][row_state]
    return GridPicture(rgba, rows, cols, shown)


def inside_table(inside: np.ndarray) -> np.ndarray:
    """The summed-area table of a (rows, cols) bool mask: (rows + 1, cols + 1) int64, entry
    [i, j] = patches inside among rows < i and cols < j."""
    table = np.zeros((inside.shape[0] + 1, inside.shape[1] + 1), np.int64)
    np.cumsum(np.cumsum(inside, axis=0, dtype=np.int64), axis=1, out=table[1:, 1:])
    return table


def _meeting(grid: PatchGrid, downsample: FloatPair, a: int,
             pixels: AxisPixels) -> tuple[np.ndarray, np.ndarray]:
    """Per screen pixel of axis ``a``: the first and one past the last index of the patches
    whose extent (ends included) meets it; empty where first >= end."""
    d, e, s, p = downsample[a], grid.effective_size[a], grid.stride[a], grid.pad_before[a]
    n = (grid.rows, grid.cols)[a]
    edges = pixels.edges()
    # patch i: [(i s - p) d, (i s - p + e) d]; meets [lo, hi] when it starts <= hi, ends >= lo
    end = np.clip(np.floor((edges[1:] / d + p) / s).astype(np.int64) + 1, 0, n)
    first = np.clip(np.ceil((edges[:-1] / d + p - e) / s).astype(np.int64), 0, n)
    return first, end


def region_mask(grid: PatchGrid, downsample: FloatPair, rows_px: AxisPixels,
                cols_px: AxisPixels, table: np.ndarray) -> np.ndarray:
    """bool (rows_px.n, cols_px.n): the screen pixels that a patch inside the region (``table``:
    :func:`inside_table` of the grid's mask) meets, its boundary included."""
    # neighbouring pixels mostly meet the same patches: count over the distinct index ranges of
    # each axis, then pick the rows and columns of the result (as render does)
    (r0, r1), rows = _distinct(*_meeting(grid, downsample, 0, rows_px))
    (c0, c1), cols = _distinct(*_meeting(grid, downsample, 1, cols_px))
    strips = table[r1] - table[r0]  # per distinct row range: inside patches of cols < j
    small = ((strips[:, c1] - strips[:, c0]) > 0) & (r1 > r0)[:, None] & (c1 > c0)[None, :]
    return small[:, cols][rows]


def _distinct(first: np.ndarray, end: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray],
                                                           np.ndarray]:
    """The distinct (first, end) pairs and, per pixel, the index of its pair among them."""
    pairs, inverse = np.unique(np.stack([first, end], 1), axis=0, return_inverse=True)
    return (pairs[:, 0], pairs[:, 1]), inverse.reshape(-1)
