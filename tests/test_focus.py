"""What the user looks at, first (focus.py): the block order given a view, every patch once, the
view's blocks first, a pan re-prioritising, "this view" mode; a run with a focus computes the
same values as one in reading order."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchheat.extract import read_blocks
from napari_patchheat.focus import (
    VIEW_FIRST,
    VIEW_ONLY,
    ViewChannel,
    ViewFocus,
    block_boxes,
    focus_side,
    overlaps,
    split_blocks,
    view_order,
    view_patches,
)
from napari_patchheat.grid import PatchGrid


@st.composite
def grids(draw):
    """A small grid and its reading-order blocks."""
    h, w = draw(st.integers(40, 400)), draw(st.integers(40, 400))
    size = draw(st.integers(8, 40))
    stride = draw(st.integers(4, 48))
    grid = PatchGrid(h, w, size, stride, padding=draw(st.sampled_from(["VALID", "SAME"])))
    return grid, grid.blocks(draw(st.integers(size, 160)))


@st.composite
def views(draw, extent=400):
    y0, x0 = draw(st.floats(-50, extent)), draw(st.floats(-50, extent))
    return y0, x0, y0 + draw(st.floats(1, 200)), x0 + draw(st.floats(1, 200))


@settings(max_examples=60, deadline=None)
@given(grids(), views())
def test_view_order_gives_the_views_blocks_first_then_every_block_once_by_distance(gb, view):
    grid, blocks = gb
    boxes = block_boxes(grid, blocks)
    first, then = view_order(boxes, view)
    meets = overlaps(boxes, view)
    assert sorted(first) == list(np.flatnonzero(meets))  # the view's blocks first
    y0, x0, y1, x1 = view
    centre = np.hypot((boxes[:, 0] + boxes[:, 2] - y0 - y1) / 2,
                      (boxes[:, 1] + boxes[:, 3] - x0 - x1) / 2)
    assert np.all(np.diff(centre[first]) >= 0)  # from the view's centre out
    assert sorted(then) == list(range(len(blocks)))  # then every block exactly once
    b = boxes[then]
    gaps = np.hypot(np.maximum.reduce([y0 - b[:, 2], b[:, 0] - y1, 0 * b[:, 0]]),
                    np.maximum.reduce([x0 - b[:, 3], b[:, 1] - x1, 0 * b[:, 0]]))
    assert np.all(np.diff(gaps) >= 0) and (gaps[: meets.sum()] == 0).all()  # nearest first


def test_view_order_without_a_view_is_reading_order():
    grid = PatchGrid(300, 300, 32, 32)
    boxes = block_boxes(grid, grid.blocks(64))
    first, then = view_order(boxes, None)
    assert len(first) == 0 and list(then) == list(range(len(boxes)))
    first, then = view_order(boxes, (270.0, 270.0, 300.0, 300.0))  # the bottom right patch
    assert list(first) == [len(boxes) - 1] and then[0] == len(boxes) - 1


@settings(max_examples=60, deadline=None)
@given(grids(), st.lists(st.one_of(st.none(), views()), min_size=1, max_size=6),
       st.integers(0, 2**32 - 1), st.booleans())
def test_order_hands_out_each_patch_of_the_mask_once_while_the_view_moves(gb, pans, seed, only):
    grid, blocks = gb
    mask = np.random.default_rng(seed).random(grid.shape) < 0.7
    focus = ViewFocus(pans[0], only_view=only)
    handed = np.zeros(grid.shape, int)
    for k, (rows, cols, keep) in enumerate(focus.order(grid, blocks, mask)):
        handed[rows.start:rows.stop, cols.start:cols.stop] += keep
        view = focus.view()
        if only and view is not None:  # "this view": patches in view only
            vr, vc = view_patches(grid, view)
            outside = np.ones(grid.shape, bool)
            outside[vr.start:vr.stop, vc.start:vc.stop] = False
            assert not (keep & outside[rows.start:rows.stop, cols.start:cols.stop]).any()
        focus.set_view(pans[(k + 1) % len(pans)])
    assert handed.max() <= 1 and not (handed & ~mask).any()  # once, and only the mask's
    if not only:
        assert (handed == mask).all()  # every one


def test_a_pan_moves_the_next_blocks_into_the_new_view():
    grid = PatchGrid(2000, 2000, 32, 32)  # 62 x 62 patches
    focus = ViewFocus((0.0, 0.0, 300.0, 300.0))
    order = focus.order(grid, grid.blocks(2048))
    first = [next(order) for _ in range(9)]
    assert all(r.start < 10 and c.start < 10 for r, c, _ in first)  # the view's blocks
    assert sum(int(k.sum()) for *_, k in first) == 10 * 10  # 300 px: patch rows/cols 0..9
    focus.set_view((1500.0, 1600.0, 1700.0, 1800.0))
    vr, vc = view_patches(grid, focus.view())
    rows, cols, keep = next(order)
    hits = np.argwhere(keep) + (rows.start, cols.start)
    assert len(hits) and all(r in vr and c in vc for r, c in hits)  # at once in the new view


def test_this_view_ends_when_the_view_is_done_and_a_moved_view_extends_it():
    grid = PatchGrid(1000, 1000, 50, 50)
    focus = ViewFocus((120.0, 220.0, 260.0, 330.0), only_view=True)
    todo = np.ones(grid.shape, bool)
    assert focus.total(todo, grid) == 4 * 3  # rows 2..5, columns 4..6
    got = [np.argwhere(k) + (r.start, c.start) for r, c, k in focus.order(grid, grid.blocks(2048))]
    assert sorted(map(tuple, np.concatenate(got))) == [(r, c) for r in range(2, 6)
                                                       for c in range(4, 7)]
    assert ViewFocus(None, only_view=True).total(todo, grid) == grid.n_patches


def test_this_view_says_which_view_it_completed_and_a_view_set_after_its_end_is_not_it():
    grid = PatchGrid(1000, 1000, 50, 50)
    first, second = (120.0, 220.0, 260.0, 330.0), (600.0, 600.0, 700.0, 700.0)
    focus = ViewFocus(first, only_view=True)
    order = focus.order(grid, grid.blocks(2048))
    next(order)
    focus.set_view(second)  # a pan while the run reads: it follows it
    list(order)
    assert focus.completed == second
    focus.set_view(first)  # a pan after the walk ended: the run did not see it
    assert focus.completed == second
    unfinished = ViewFocus(first, only_view=True)
    next(unfinished.order(grid, grid.blocks(2048)))
    assert unfinished.completed is None  # cancelled runs complete no view


def test_split_blocks_keeps_the_order_and_the_patches():
    grid = PatchGrid(900, 700, 16, 16)
    blocks = grid.blocks(512)
    cut = split_blocks(blocks, 8)
    assert max(len(r) for r, _ in cut) == 8 and len(cut) > len(blocks)
    seen = np.zeros(grid.shape, int)
    for r, c in cut:
        seen[r.start:r.stop, c.start:c.stop] += 1
    assert (seen == 1).all()


def test_blocks_grow_on_large_grids_so_that_picking_stays_cheap():
    assert focus_side(PatchGrid(100_000, 100_000, 224, 224)) == 4  # 446 x 446 patches
    big = PatchGrid(100_000, 100_000, 16, 16)  # 6,250 x 6,250
    side = focus_side(big)
    assert side > 4 and (big.rows / side) * (big.cols / side) <= 65_536


@pytest.mark.parametrize("seconds_per_block, grows", [(0.0, True), (0.12, False)])
def test_blocks_grow_where_the_run_takes_them_fast(seconds_per_block, grows):
    grid = PatchGrid(2000, 2000, 16, 16)  # 125 x 125 patches, one reading block
    handed = np.zeros(grid.shape, int)
    sides = []
    for rows, cols, keep in ViewFocus((500.0, 500.0, 900.0, 1000.0)).order(grid, grid.blocks(2048)):
        handed[rows.start:rows.stop, cols.start:cols.stop] += keep
        sides.append(max(len(rows), len(cols)))
        if len(sides) <= 12:
            time.sleep(seconds_per_block)  # the model's time for a block of 16 patches
        elif not grows:
            break
    assert set(sides[:12]) == {4}
    assert (max(sides[12:]) > 4) == grows  # cheap model: larger blocks, fewer reads
    assert handed.max() == 1 and (handed.all() or not grows)


def test_read_blocks_with_a_focus_cuts_the_same_patches():
    rng = np.random.default_rng(3)
    level = rng.integers(0, 256, (600, 500, 3), np.uint8)
    grid = PatchGrid(600, 500, 24, 20, rate=2, padding="SAME")
    mask = rng.random(grid.shape) < 0.8

    def patches(focus):
        out = {}
        for block in read_blocks(level, grid, mask, 256, "numpy", focus):
            for piece in block.pieces():
                for idx, p in zip(piece.indices, piece.patches):
                    out[tuple(idx)] = p
        return out

    plain = patches(None)
    assert len(plain) == mask.sum() and np.std([p.mean() for p in plain.values()]) > 0
    focused = patches(ViewFocus((300.0, 200.0, 420.0, 330.0)))
    assert list(focused) != list(plain)  # another order
    assert focused.keys() == plain.keys()
    assert all(np.array_equal(focused[k], plain[k]) for k in plain)


def test_a_view_channel_carries_the_latest_view():
    channel = ViewChannel(mp.get_context("spawn"))
    assert channel.read() is None and channel.focus("") is None
    channel.send((1, 2, 3, 4.5))
    channel.send((10, 20, 30, 40))
    focus = channel.focus(VIEW_ONLY)
    assert focus is not None and focus.only_view and focus.view() == (10.0, 20.0, 30.0, 40.0)
    assert not channel.focus(VIEW_FIRST).only_view  # type: ignore[union-attr]
    channel.send(None)
    assert focus.view() is None
    with pytest.raises(ValueError, match="unknown"):
        channel.focus("sideways")


def test_a_run_with_a_focus_computes_the_same_values_view_first(svs_path):
    pytest.importorskip("tensorflow")
    from napari_patchheat.inference import HeatmapRun
    from napari_patchheat.options import RunOptions

    options = RunOptions(size=32, stride=32, tissue_threshold=0, use_cache=False, batch_size=16)
    plain = HeatmapRun(svs_path, "dab", options)
    order_plain = [p.indices for p in plain.run()]
    run = HeatmapRun(svs_path, "dab", options)
    view = (1200.0, 900.0, 1500.0, 1300.0)
    vr, vc = view_patches(run.grid, view)
    first = [p.indices for p in run.run(focus=ViewFocus(view))]
    assert np.nanstd(plain.heatmap.values) > 0
    np.testing.assert_array_equal(run.heatmap.values, plain.heatmap.values)  # bit-identical
    n_view = len(vr) * len(vc)
    head = np.concatenate(first)[:n_view]
    assert all(r in vr and c in vc for r, c in head)  # the view's patches first
    assert not all(r in vr and c in vc for r, c in np.concatenate(order_plain)[:n_view])
    only = HeatmapRun(svs_path, "dab", options)
    list(only.run(focus=ViewFocus(view, only_view=True)))
    expected = np.zeros(only.grid.shape, bool)
    expected[vr.start:vr.stop, vc.start:vc.stop] = True
    assert (only.heatmap.computed == expected).all()  # this view: its patches only
