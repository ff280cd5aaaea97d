"""PatchGrid geometry without TensorFlow: closed forms against brute force, errors, placement.

The geometry is held against TensorFlow itself in test_extract.py.
"""

import json
import sys

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchheat.grid import PatchGrid, as_numpy, read_region


def brute_grid(n: int, k: int, s: int, r: int, padding: str) -> tuple[int, int]:
    """Count and pad-before on one axis by trying every start (no formula shared with grid.py)."""
    e = (k - 1) * r + 1
    if padding == "VALID":
        return len([a for a in range(n) if a + e <= n and a % s == 0]), 0
    count = 0
    while count * s < n:
        count += 1
    need = (count - 1) * s + e
    return count, max(need - n, 0) // 2


@given(
    n=st.integers(1, 60), k=st.integers(1, 8), s=st.integers(1, 8), r=st.integers(1, 4),
    padding=st.sampled_from(["VALID", "SAME"]),
)
def test_counts_and_padding_match_brute_force(n, k, s, r, padding):
    count, before = brute_grid(n, k, s, r, padding)
    if count == 0:
        with pytest.raises(ValueError, match="No patch fits"):
            PatchGrid(n, n, k, s, r, padding)
        return
    g = PatchGrid(n, n, k, s, r, padding)
    assert g.shape == (count, count)
    assert g.pad_before == (before, before)
    e = (k - 1) * r + 1
    # SAME pads what the last patch needs beyond the image, the larger half after; VALID none
    total = max((g.rows - 1) * s + e - n, 0) if padding == "SAME" else 0
    assert g.pad_before[0] + g.pad_after[0] == total
    assert g.pad_after[0] - g.pad_before[0] in (0, 1)


def test_non_square_pairs_and_tf_style_lists():
    g = PatchGrid(100, 50, [1, 7, 5, 1], (3, 4), (2, 1), "same")
    assert g.size == (7, 5) and g.stride == (3, 4) and g.rate == (2, 1)
    assert g.padding == "SAME"
    assert g.effective_size == (13, 5)
    assert g.shape == (34, 13)
    assert g.pad_before == ((33 * 3 + 13 - 100) // 2, (12 * 4 + 5 - 50) // 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=0, stride=1), "size=0"),
        (dict(size=3, stride=0), "stride=0"),
        (dict(size=3, stride=1, rate=0), "rate=0"),
        (dict(size=3, stride=-2), "stride=-2"),
        (dict(size=3.5, stride=1), "size=3.5"),
        (dict(size=(3, 3, 3), stride=1), "size="),
        (dict(size=[2, 3, 3, 1], stride=1), "batch and depth"),
        (dict(size=3, stride=1, padding="FULL"), "padding='FULL' is unknown"),
        (dict(size=20, stride=1), "No patch fits"),
        (dict(size=4, stride=1, rate=5), "No patch fits"),
    ],
)
def test_bad_parameters_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        PatchGrid(10, 10, **kwargs)


def test_bad_image_size():
    with pytest.raises(ValueError, match="at least 1 x 1"):
        PatchGrid(0, 10, 3, 1)


def test_same_never_fails_for_large_patches():
    g = PatchGrid(10, 10, 299, 128, padding="SAME")
    assert g.shape == (1, 1)
    assert g.pad_before == ((299 - 10) // 2,) * 2


def test_boxes_and_box_in_level_and_level0_pixels():
    g = PatchGrid(10, 10, 4, 7, padding="SAME")  # the origin's example 4
    assert g.box(0, 0) == (0, 0, 4, 4)
    assert g.box(1, 1) == (7, 7, 11, 11)  # reaches one pixel into the padding
    assert g.box(1, 0, downsample=(2.0, 4.0)) == (14, 0, 22, 16)
    boxes = g.boxes([0, 1], [1, 0], downsample=2.5)
    np.testing.assert_array_equal(boxes, [[0, 17.5, 10, 27.5], [17.5, 0, 27.5, 10]])
    with pytest.raises(IndexError, match="outside the 2 x 2 grid"):
        g.box(2, 0)


def test_centers_follow_napari_pixel_centres():
    g = PatchGrid(100, 100, 3, 5)
    # at level 0 a 3-px patch starting at pixel 5 is centred on pixel 6
    np.testing.assert_array_equal(g.centers(1, 1), [6.0, 6.0])
    # at downsample 4 it covers level-0 pixels [20, 32): centre 25.5
    np.testing.assert_array_equal(g.centers(1, 1, downsample=4), [25.5, 25.5])


@given(
    h=st.integers(1, 300), w=st.integers(1, 300), k=st.integers(1, 40), s=st.integers(1, 40),
    r=st.integers(1, 3), padding=st.sampled_from(["VALID", "SAME"]),
    d=st.sampled_from([1.0, 2.0, 4.0, 3.999, 16.5]),
)
def test_placement_puts_every_cell_on_its_patch_centre(h, w, k, s, r, padding, d):
    try:
        g = PatchGrid(h, w, k, s, r, padding)
    except ValueError:
        return
    (sy, sx), (ty, tx) = g.placement(downsample=d)
    rr, cc = np.meshgrid(np.arange(g.rows), np.arange(g.cols), indexing="ij")
    centres = g.centers(rr, cc, downsample=d)
    np.testing.assert_allclose(ty + rr * sy, centres[..., 0], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(tx + cc * sx, centres[..., 1], rtol=1e-12, atol=1e-9)


@settings(max_examples=200)
@given(
    n=st.integers(1, 120), k=st.integers(1, 12), s=st.integers(1, 12), r=st.integers(1, 3),
    padding=st.sampled_from(["VALID", "SAME"]),
    lo=st.floats(-30, 150), span=st.floats(0, 100), d=st.sampled_from([1.0, 2.0, 3.7]),
)
def test_patches_in_equals_brute_force(n, k, s, r, padding, lo, span, d):
    try:
        g = PatchGrid(n, n, k, s, r, padding)
    except ValueError:
        return
    rows, cols = g.patches_in(lo, lo, lo + span, lo + span, downsample=d)
    b = g.boxes(np.arange(g.rows), 0, downsample=d)
    expect = [i for i in range(g.rows) if b[i, 0] < lo + span and b[i, 2] > lo]
    assert list(rows) == expect
    assert list(cols) == expect


def test_patches_in_a_million_patch_grid_is_closed_form():
    g = PatchGrid(128_000, 128_000, 224, 128)
    assert g.n_patches == 999 * 999
    rows, cols = g.patches_in(10_000.0, 20_000.0, 10_500.0, 20_100.0)
    assert rows == range(77, 83) and cols == range(155, 158)
    # numpy scalars, as napari's camera gives them, work the same
    assert g.patches_in(*np.array([10_000.0, 20_000.0, 10_500.0, 20_100.0])) == (rows, cols)


@pytest.mark.parametrize("edge", [False, True])
def test_reads_leave_dasks_global_callbacks_alone(edge):
    """napari's slicing enters its dask cache (a global dask Callback) on the GUI thread while
    the dock reads pixels on another: a read must neither swap ``Callback.active`` (dask's
    default compute empties it meanwhile) nor run the cache's hooks on its own tasks."""
    from dask.callbacks import Callback

    active_inside: list[int] = []

    def block(b):
        active_inside.append(len(Callback.active))
        return b + 1

    image = da.map_blocks(block, da.zeros((8, 8), np.uint8, chunks=4), dtype=np.uint8)
    region = (-2, -2, 6, 6) if edge else (0, 0, 8, 8)
    hooked: list[str] = []
    with Callback(pretask=lambda key, dsk, state: hooked.append(key)):
        np.asarray(image)  # dask's default, the reference: empties the set, runs the hook
        assert active_inside and set(active_inside) == {0} and hooked
        active_inside.clear(), hooked.clear()
        out = read_region(image, *region)
        assert as_numpy(image).sum() == 64
    assert out[2:, 2:].min() == 1 if edge else out.min() == 1
    assert active_inside and set(active_inside) == {1}
    assert hooked == []


@pytest.mark.parametrize("as_dask", [False, True])
def test_read_region_zero_fills_outside(as_dask):
    img = np.arange(5 * 6 * 2, dtype=np.uint16).reshape(5, 6, 2) + 1
    src = da.from_array(img, chunks=(2, 4, 2)) if as_dask else img
    out = read_region(src, -2, 4, 3, 9)
    assert out.shape == (5, 5, 2) and out.dtype == np.uint16
    np.testing.assert_array_equal(out[2:, :2], img[0:3, 4:6])
    assert (out[:2] == 0).all() and (out[:, 2:] == 0).all()
    assert (read_region(src, 10, 10, 12, 13) == 0).all()


def test_read_patch_samples_every_rate_th_pixel_with_zero_padding():
    img = (np.arange(100) + 1).reshape(10, 10, 1)
    g = PatchGrid(10, 10, 3, 4, rate=3, padding="SAME")
    # e = 7, rows = 3, total pad = 2*4 + 7 - 10 = 5: 2 before, 3 after
    assert g.pad_before == (2, 2)
    np.testing.assert_array_equal(
        g.read_patch(img, 0, 0)[..., 0], [[0, 0, 0], [0, 12, 15], [0, 42, 45]]
    )
    np.testing.assert_array_equal(
        g.read_patch(img, 2, 2)[..., 0], [[67, 70, 0], [97, 100, 0], [0, 0, 0]]
    )


def test_blocks_cover_the_grid_once_and_regions_hold_their_patches():
    g = PatchGrid(1000, 700, 50, 30, 2, "SAME")
    seen = np.zeros(g.shape, dtype=int)
    for rows, cols in g.blocks(256):
        seen[rows.start : rows.stop, cols.start : cols.stop] += 1
        y0, x0, y1, x1 = g.block_region(rows, cols)
        assert y1 - y0 <= 256 and x1 - x0 <= 256
        b = g.boxes(rows.start, cols.start)
        assert (b[0], b[1]) == (y0, x0)
        b = g.boxes(rows.stop - 1, cols.stop - 1)
        assert (b[2], b[3]) == (y1, x1)
    assert (seen == 1).all()


def test_grid_module_does_not_import_tensorflow():
    assert "tensorflow" not in sys.modules or "napari_patchheat.extract" in sys.modules


@given(
    a0=st.integers(-30, 40), span=st.integers(1, 50), step=st.integers(1, 7),
    b0=st.integers(-30, 40), span2=st.integers(1, 50), step2=st.integers(1, 7),
)
def test_read_region_with_a_step_equals_slicing_the_zero_padded_image(a0, span, step, b0, span2,
                                                                     step2):
    img = (np.arange(23 * 17).reshape(23, 17) + 1).astype(np.int32)
    pad = 100
    padded = np.pad(img, pad)
    ref = padded[a0 + pad : a0 + span + pad : step, b0 + pad : b0 + span2 + pad : step2]
    out = read_region(img, a0, b0, a0 + span, b0 + span2, step=(step, step2))
    np.testing.assert_array_equal(out, ref)


def test_read_patch_reads_only_the_samples_of_a_dilated_patch():
    reads = []

    class Counting:
        shape, dtype = (5000, 5000, 1), np.uint8

        def __getitem__(self, key):
            reads.append(key)
            ny = len(range(5000)[key[0]])
            nx = len(range(5000)[key[1]])
            return np.ones((ny, nx, 1), np.uint8)

    g = PatchGrid(5000, 5000, 4, 100, rate=1000, padding="SAME")
    patch = g.read_patch(Counting(), 0, 0)
    assert patch.shape == (4, 4, 1)
    assert all(k.step == 1000 for key in reads for k in key)  # strided, never the full extent
    assert patch.sum() == len(range(5000)[reads[0][0]]) * len(range(5000)[reads[0][1]])


def test_blocks_respect_a_patch_count_cap():
    g = PatchGrid(3000, 3000, 224, 16)
    for cap in (1, 7, 100, 1000):
        blocks = g.blocks(2048, max_patches=cap)
        assert max(len(r) * len(c) for r, c in blocks) <= cap
        seen = np.zeros(g.shape, int)
        for r, c in blocks:
            seen[r.start : r.stop, c.start : c.stop] += 1
        assert (seen == 1).all()


def test_inside_samples_of_a_same_grid_by_hand():
    g = PatchGrid(10, 10, 3, 4, rate=3, padding="SAME")  # starts -2, 2, 6; samples +0, +3, +6
    rows, cols = g.inside_samples([0, 2, 1], [2, 0, 1])
    np.testing.assert_array_equal(rows, [[False, True, True], [True, True, False], [True] * 3])
    np.testing.assert_array_equal(cols, [[True, True, False], [False, True, True], [True] * 3])
    rows, cols = PatchGrid(12, 7, 2, 1, rate=20, padding="SAME").inside_samples(5, [0, 6])
    assert rows.shape == (2, 2) and not rows.any()  # row 5 starts at -5: samples -5 and 15
    np.testing.assert_array_equal(cols, [[False, False], [False, False]])


@settings(max_examples=150, deadline=None)
@given(
    h=st.integers(1, 30), w=st.integers(1, 30), k=st.integers(1, 6), s=st.integers(1, 9),
    r=st.integers(1, 7), padding=st.sampled_from(["VALID", "SAME"]),
)
def test_inside_samples_are_the_nonzero_samples_of_a_ones_image(h, w, k, s, r, padding):
    """Against read_patch (held to tf.image.extract_patches in test_extract.py): a sample is
    inside exactly where a patch of an all-ones image is not SAME's zero padding."""
    try:
        g = PatchGrid(h, w, (k, k + 1), (s, s + 2), (r, 1), padding)
    except ValueError:
        return  # VALID with no patch fitting
    ones = np.ones((h, w, 1), np.uint8)
    ii, jj = np.meshgrid(np.arange(g.rows), np.arange(g.cols), indexing="ij")
    rows, cols = g.inside_samples(ii, jj)
    assert rows.shape == (*g.shape, k) and cols.shape == (*g.shape, k + 1)
    for i, j in zip(ii.ravel(), jj.ravel()):
        seen = g.read_patch(ones, i, j)[..., 0].astype(bool)
        np.testing.assert_array_equal(rows[i, j][:, None] & cols[i, j][None, :], seen)
    if padding == "VALID":
        assert rows.all() and cols.all()


def test_params_are_the_grids_fields_and_read_back():
    g = PatchGrid(100, 80, (7, 5), (3, 4), (2, 1), "same")
    assert g.params() == {"height": 100, "width": 80, "size": [7, 5], "stride": [3, 4],
                          "rate": [2, 1], "padding": "SAME"}
    assert json.loads(json.dumps(g.params())) == g.params()
    assert PatchGrid.from_params({**g.params(), "rows": 999}) == g
    assert PatchGrid.from_params({**g.params(), "stride": [3, 3]}) != g
