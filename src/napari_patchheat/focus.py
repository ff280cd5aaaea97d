"""What the user looks at, first: the order in which a run reads its blocks, given a view.

A dock run is handed a :class:`ViewFocus`, the rectangle of the level the canvas shows (level
pixels), which napari's side updates as the user pans and zooms (from another thread, or from
another process through a :class:`ViewChannel`). The run's reader asks it for the next block
each time: the blocks in view first (the nearest the view's centre first), then the others by
their distance from the view, so a pan re-prioritises within the blocks already read ahead. In
"this view" mode only the patches in view are handed out, and the run ends when the view is
done. Without a view the blocks come in reading order. No Qt, no TensorFlow.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .grid import PatchGrid

FOCUS_BLOCK_SIDE = 4  # patches a side of a block read with a focus: a pan waits for few of them
FOCUS_MAX_BLOCKS = 65_536  # blocks grow past FOCUS_BLOCK_SIDE on larger grids (a view change
# sorts them all: ~10 ms for 65,536)
FOCUS_BLOCK_S = 0.1  # blocks grow, once, until one takes about this long for the run to take
PACE_SKIP, PACE_BLOCKS = 4, 8  # the run's pace: measured over 8 blocks after the first 4 (the
# first fill the read-ahead queue at once)
VIEW_FIRST = "view first"  # RunSpec.view_mode: the whole slide, what is in view first
VIEW_ONLY = "this view"  # RunSpec.view_mode: only what is in view; ends when the view is done
VIEW_MODES = (VIEW_FIRST, VIEW_ONLY)

Rect = tuple[float, float, float, float]  # (y0, x0, y1, x1) level pixels, [y0, y1) x [x0, x1)
Blocks = Sequence[tuple[range, range]]


def split_blocks(blocks: Blocks, side: int = FOCUS_BLOCK_SIDE) -> list[tuple[range, range]]:
    """``blocks`` (ranges of patch rows and columns) cut into blocks of at most ``side`` x
    ``side`` patches, in the same order; each stays inside the block it came from."""
    return [(range(r, min(r + side, rows.stop)), range(c, min(c + side, cols.stop)))
            for rows, cols in blocks
            for r in range(rows.start, rows.stop, side)
            for c in range(cols.start, cols.stop, side)]


def focus_side(grid: PatchGrid) -> int:
    """Patches a side of the blocks a focus hands out on ``grid``: FOCUS_BLOCK_SIDE, or more
    where the grid would otherwise have over FOCUS_MAX_BLOCKS of them."""
    return max(FOCUS_BLOCK_SIDE, math.ceil(math.sqrt(grid.n_patches / FOCUS_MAX_BLOCKS)))


def block_boxes(grid: PatchGrid, blocks: Blocks) -> np.ndarray:
    """(n, 4) float: each block's ``(y0, x0, y1, x1)``, the level pixels its patches cover."""
    ey, ex = grid.effective_size
    rs, cs = grid.row_starts(), grid.col_starts()
    return np.array([(rs[r.start], cs[c.start], rs[r.stop - 1] + ey, cs[c.stop - 1] + ex)
                     for r, c in blocks], dtype=float).reshape(-1, 4)


def overlaps(boxes: np.ndarray, view: Rect) -> np.ndarray:
    """(n,) bool: the boxes (n, 4) that meet the rectangle ``view`` (level pixels)."""
    y0, x0, y1, x1 = view
    return (boxes[:, 0] < y1) & (boxes[:, 2] > y0) & (boxes[:, 1] < x1) & (boxes[:, 3] > x0)


def view_order(boxes: np.ndarray, view: Rect | None) -> tuple[np.ndarray, np.ndarray]:
    """The order to read blocks in given ``view`` (level pixels): ``(first, then)`` indices.

    ``boxes`` (n, 4) are the blocks' level-pixel boxes (:func:`block_boxes`). ``first``: the
    blocks that meet the view, the nearest the view's centre first (a run takes their patches
    in view from these). ``then``: every block, the nearest the view first (gap between box and
    view, 0 for those meeting it), then by centre (a run takes what is left of each). Ties, and
    every block without a view, in reading order (index).
    """
    n = len(boxes)
    if view is None:
        return np.zeros(0, int), np.arange(n)
    y0, x0, y1, x1 = view
    zero = np.zeros(n)
    gap = np.hypot(np.maximum.reduce([y0 - boxes[:, 2], boxes[:, 0] - y1, zero]),
                   np.maximum.reduce([x0 - boxes[:, 3], boxes[:, 1] - x1, zero]))
    centre = np.hypot((boxes[:, 0] + boxes[:, 2] - y0 - y1) / 2,
                      (boxes[:, 1] + boxes[:, 3] - x0 - x1) / 2)
    index = np.arange(n)
    meets = np.flatnonzero(overlaps(boxes, view))
    # np.lexsort: the last key is the first criterion
    return meets[np.lexsort((meets, centre[meets]))], np.lexsort((index, centre, gap))


def view_patches(grid: PatchGrid, view: Rect | None) -> tuple[range, range]:
    """The patch rows and columns that meet ``view`` (level pixels); all for None."""
    if view is None:
        return range(grid.rows), range(grid.cols)
    return grid.patches_in(*view)


class ViewFocus:
    """The view a run reads first, safe to set from any thread while the run reads.

    ``view`` is ``(y0, x0, y1, x1)`` in the run's level pixels, or None (reading order);
    ``only_view`` hands out only the patches in view (the run ends when they are done).
    ``completed``: once :meth:`order` has handed out everything, the view it last followed
    (a view set after that was not seen by the run).
    """

    def __init__(self, view: Rect | None = None, only_view: bool = False):
        self.only_view = only_view
        self.completed: Rect | None = None
        self._lock = threading.Lock()
        self._view: Rect | None = None
        self.set_view(view)

    def set_view(self, view: Rect | None) -> None:
        """Look at ``view`` (level pixels) from now on; None for no view."""
        rect = None if view is None else tuple(float(v) for v in view)
        with self._lock:
            self._view = rect  # type: ignore[assignment]

    def view(self) -> Rect | None:
        """The rectangle in view now (level pixels), or None."""
        with self._lock:
            return self._view

    def total(self, todo: np.ndarray, grid: PatchGrid) -> int:
        """How many patches of ``todo`` (rows, cols) bool a run with this focus computes, as
        far as is known now: all of them, or in "this view" mode those in view."""
        if not self.only_view:
            return int(todo.sum())
        rows, cols = view_patches(grid, self.view())
        return int(todo[rows.start:rows.stop, cols.start:cols.stop].sum())

    def order(self, grid: PatchGrid, blocks: Blocks, mask: np.ndarray | None = None
              ) -> Iterator[tuple[range, range, np.ndarray]]:
        """``(rows, cols, keep)`` in the order to read them: ``blocks`` cut to
        :func:`focus_side`, each next one taken, when asked, from :func:`view_order` of the
        view then. ``keep`` (bool, the block's shape) marks its patches to compute now: for a
        block in view only those in view (the rest comes later), else all of its patches of
        ``mask`` (default: all) not yet handed out. Every patch of ``mask`` is handed out
        exactly once, unless in "this view" mode, which ends when no patch in view is left.
        Where the run takes blocks fast (a cheap model), they grow once to about
        ``FOCUS_BLOCK_S`` of its time each (at most ``blocks``' own)."""
        pending = np.ones(grid.shape, bool) if mask is None else np.array(mask, bool)
        side, pace = focus_side(grid), _Pace()
        cut, boxes, left = _cut(grid, blocks, pending, side)
        shown: Any = ()  # the view the walk below follows (() before the first)
        walk: Iterator[tuple[int, tuple[range, range] | None]] = iter(())
        while True:
            if (view := self.view()) != shown:  # a pan or zoom: walk the new view's order
                shown, walk = view, self._walk(grid, boxes, view)
            step = next(walk, None)
            if step is None:
                self.completed = shown
                return
            i, clip = step
            if left[i] == 0:
                continue
            rows, cols = cut[i]
            keep = pending[rows.start:rows.stop, cols.start:cols.stop].copy()
            if clip is not None:  # in view: its patches in view only
                keep &= _inside(rows, cols, *clip)
                if not keep.any():
                    continue
            pending[rows.start:rows.stop, cols.start:cols.stop] &= ~keep
            left[i] -= int(keep.sum())
            yield rows, cols, keep
            grown = pace.side(int(keep.sum()), side, blocks)
            if grown > side:  # a fast model: fewer, larger blocks cost less reading
                side, shown = grown, ()
                cut, boxes, left = _cut(grid, blocks, pending, side)

    def _walk(self, grid: PatchGrid, boxes: np.ndarray, view: Rect | None
              ) -> Iterator[tuple[int, tuple[range, range] | None]]:
        """(block, the view's patch rows and columns to keep, or None for all) in order."""
        first, then = view_order(boxes, view)
        clip = view_patches(grid, view)
        yield from ((int(i), clip) for i in first)
        if not self.only_view or view is None:
            yield from ((int(i), None) for i in then)


def _cut(grid: PatchGrid, blocks: Blocks, pending: np.ndarray, side: int
         ) -> tuple[list[tuple[range, range]], np.ndarray, np.ndarray]:
    """``blocks`` cut to ``side`` patches a side, their boxes, their patches ``pending``."""
    cut = split_blocks(blocks, side)
    left = np.array([pending[r.start:r.stop, c.start:c.stop].sum() for r, c in cut], int)
    return cut, block_boxes(grid, cut), left


class _Pace:
    """How fast a run takes the blocks handed to it: seconds per patch over PACE_BLOCKS
    blocks after the first PACE_SKIP."""

    def __init__(self) -> None:
        self.taken, self.patches, self.t0, self.n0 = 0, 0, 0.0, 0

    def side(self, patches: int, side: int, blocks: Blocks) -> int:
        """Another block of ``patches`` was taken: the side blocks should have from now on
        (``side`` until the pace is measured, then about FOCUS_BLOCK_S of the run's time)."""
        self.taken += 1
        self.patches += patches
        if self.taken == PACE_SKIP:
            self.t0, self.n0 = time.perf_counter(), self.patches
        if self.taken != PACE_SKIP + PACE_BLOCKS:
            return side
        per_patch = (time.perf_counter() - self.t0) / max(self.patches - self.n0, 1)
        largest = max((max(len(r), len(c)) for r, c in blocks), default=side)
        return min(largest, max(side, int(math.sqrt(FOCUS_BLOCK_S / max(per_patch, 1e-9)))))


def _inside(rows: range, cols: range, vr: range, vc: range) -> np.ndarray:
    """(len(rows), len(cols)) bool: the block's patches in rows ``vr`` and columns ``vc``."""
    inside = np.zeros((len(rows), len(cols)), bool)
    inside[max(vr.start - rows.start, 0):max(vr.stop - rows.start, 0),
           max(vc.start - cols.start, 0):max(vc.stop - cols.start, 0)] = True
    return inside


class ViewChannel:
    """The view napari shows, from napari's process to the worker's run: four floats in shared
    memory, the latest rectangle wins (NaN: none); the run reads it as a ViewFocus."""

    def __init__(self, ctx: Any):
        self._rect = ctx.Array("d", [np.nan] * 4)

    def send(self, view: Rect | None) -> None:
        """Show ``view`` (level pixels) to the run; None for no view."""
        with self._rect.get_lock():
            self._rect[:] = [np.nan] * 4 if view is None else [float(v) for v in view]

    def read(self) -> Rect | None:
        """The last view sent, or None."""
        with self._rect.get_lock():
            rect = tuple(self._rect[:])
        return None if np.isnan(rect[0]) else rect

    def focus(self, view_mode: str) -> ViewFocus | None:
        """The run's focus for ``view_mode`` (focus.VIEW_MODES); None for reading order."""
        if not view_mode:
            return None
        if view_mode not in VIEW_MODES:
            raise ValueError(f"view_mode={view_mode!r} is unknown: use one of {VIEW_MODES}.")
        return _ChannelFocus(self, view_mode == VIEW_ONLY)


class _ChannelFocus(ViewFocus):
    """A ViewFocus whose view is the last one napari sent through a :class:`ViewChannel`."""

    def __init__(self, channel: ViewChannel, only_view: bool):
        super().__init__(only_view=only_view)
        self._channel = channel

    def view(self) -> Rect | None:
        return self._channel.read()
