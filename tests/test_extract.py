"""Extraction against TensorFlow: the origin's examples, TF's own cases, properties, streaming."""

import re
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_patchheat import PatchGrid, extract_patches
from napari_patchheat.extract import (
    BatchBuffers,
    iter_blocks,
    iter_patch_batches,
    numpy_extract_valid,
    read_blocks,
    write_batches,
)

tf = pytest.importorskip("tensorflow")

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed_examples.md"
ORIGIN_CALLS = {
    1: ([1, 3, 3, 1], [1, 5, 5, 1], [1, 1, 1, 1], "VALID", (1, 2, 2, 9)),
    2: ([1, 3, 3, 1], [1, 5, 5, 1], [1, 2, 2, 1], "VALID", (1, 2, 2, 9)),
    3: ([1, 4, 4, 1], [1, 7, 7, 1], [1, 1, 1, 1], "VALID", (1, 1, 1, 16)),
    4: ([1, 4, 4, 1], [1, 7, 7, 1], [1, 1, 1, 1], "SAME", (1, 2, 2, 16)),
}
# the origin's outputs, as printed in shared/seed_examples.md (kept here too, so a fresh clone
# without shared/ still checks them)
ORIGIN_OUTPUTS = {
    1: [[[[1, 2, 3, 11, 12, 13, 21, 22, 23], [6, 7, 8, 16, 17, 18, 26, 27, 28]],
         [[51, 52, 53, 61, 62, 63, 71, 72, 73], [56, 57, 58, 66, 67, 68, 76, 77, 78]]]],
    2: [[[[1, 3, 5, 21, 23, 25, 41, 43, 45], [6, 8, 10, 26, 28, 30, 46, 48, 50]],
         [[51, 53, 55, 71, 73, 75, 91, 93, 95], [56, 58, 60, 76, 78, 80, 96, 98, 100]]]],
    3: [[[[1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24, 31, 32, 33, 34]]]],
    4: [[[[1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24, 31, 32, 33, 34],
          [8, 9, 10, 0, 18, 19, 20, 0, 28, 29, 30, 0, 38, 39, 40, 0]],
         [[71, 72, 73, 74, 81, 82, 83, 84, 91, 92, 93, 94, 0, 0, 0, 0],
          [78, 79, 80, 0, 88, 89, 90, 0, 98, 99, 100, 0, 0, 0, 0, 0]]]],
}
ORIGIN_IMAGE = (np.arange(100, dtype=np.int32) + 1).reshape(1, 10, 10, 1)


def tf_patches(images, k, s, r, padding):
    """TensorFlow's own answer, the reference for everything here."""
    pair = lambda v: [1, *(v if isinstance(v, tuple) else (v, v)), 1]  # noqa: E731
    try:
        out = tf.image.extract_patches(images, pair(k), pair(s), pair(r), padding).numpy()
    except tf.errors.InvalidArgumentError:  # TF's answer to a VALID grid of negative size
        return None
    return None if 0 in out.shape else out  # and an empty output where it is exactly 0


def test_seed_file_holds_the_outputs_we_check():
    if not SEED.exists():
        pytest.skip(f"{SEED} is absent (a fresh clone without shared/)")
    text = SEED.read_text()
    for n, expected in ORIGIN_OUTPUTS.items():
        line = re.search(rf"^{n}\. `(.*)`$", text, re.M).group(1)
        assert eval(line) == expected


@pytest.mark.parametrize("n", sorted(ORIGIN_CALLS))
def test_origin_examples_bit_for_bit(n):
    sizes, strides, rates, padding, shape = ORIGIN_CALLS[n]
    expected = np.array(ORIGIN_OUTPUTS[n])
    out = extract_patches(ORIGIN_IMAGE, sizes, strides, rates, padding)
    assert out.shape == shape and out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(tf_patches(ORIGIN_IMAGE, 3 if n < 3 else 4, 5 if n < 3 else 7,
                                             2 if n == 2 else 1, padding), expected)
    # the grid places the same patches, read without TensorFlow
    g = PatchGrid(10, 10, sizes, strides, rates, padding)
    assert (1, g.rows, g.cols, g.depth_per_channel) == shape
    mine = [[g.read_patch(ORIGIN_IMAGE[0], i, j).reshape(-1) for j in range(g.cols)]
            for i in range(g.rows)]
    np.testing.assert_array_equal(np.array(mine)[None], expected)


# TensorFlow's own test cases for this op (extract_image_patches_op_test.py)
def test_tf_case_1x1_is_identity():
    image = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    for padding in ("VALID", "SAME"):
        np.testing.assert_array_equal(extract_patches(image, 1, 1, 1, padding), image)


def test_tf_case_1x1_strided():
    image = np.arange(2 * 7 * 9 * 3, dtype=np.float32).reshape(2, 7, 9, 3)
    for padding in ("VALID", "SAME"):
        out = extract_patches(image, 1, (2, 3), 1, padding)
        np.testing.assert_array_equal(out, image[:, ::2, ::3, :])


def test_tf_case_2x2_valid_and_same():
    image = np.array([[[[1], [2]], [[3], [4]]]], dtype=np.float32)
    np.testing.assert_array_equal(extract_patches(image, 2, 1, 1, "VALID"), [[[[1, 2, 3, 4]]]])
    np.testing.assert_array_equal(
        extract_patches(image, 2, 1, 1, "SAME"),
        [[[[1, 2, 3, 4], [2, 0, 4, 0]], [[3, 4, 0, 0], [4, 0, 0, 0]]]],
    )


def test_tf_case_2x2_rate_2():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(
        extract_patches(image, 2, 1, 2, "VALID"),
        [[[[0, 2, 8, 10], [1, 3, 9, 11]], [[4, 6, 12, 14], [5, 7, 13, 15]]]],
    )


def test_tf_case_depth_2_channel_order():
    image = np.array([[[[1, 101], [2, 102]], [[3, 103], [4, 104]]]], dtype=np.float32)
    np.testing.assert_array_equal(
        extract_patches(image, 2, 1, 1, "VALID"), [[[[1, 101, 2, 102, 3, 103, 4, 104]]]]
    )


shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))
pairs = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hw=shapes, k=pairs(1, 8), s=pairs(1, 8), r=pairs(1, 3),
    padding=st.sampled_from(["VALID", "SAME"]), channels=st.sampled_from([1, 3, 4]),
    dtype=st.sampled_from([np.uint8, np.float32]), seed=st.integers(0, 2**16),
)
def test_property_equal_to_tensorflow(hw, k, s, r, padding, channels, dtype, seed):
    rng = np.random.default_rng(seed)
    image = (rng.random((1, *hw, channels)) * 255).astype(dtype)
    ref = tf_patches(image, k, s, r, padding)
    if ref is None:
        with pytest.raises(ValueError, match="No patch fits"):
            extract_patches(image, k, s, r, padding)
        return
    out = extract_patches(image[0], k, s, r, padding)  # the 3-D form
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, ref[0])
    g = PatchGrid(*hw, k, s, r, padding)
    assert ref.shape == (1, g.rows, g.cols, g.depth_per_channel * channels)
    i, j = rng.integers(g.rows), rng.integers(g.cols)
    np.testing.assert_array_equal(g.read_patch(image[0], i, j).reshape(-1), ref[0, i, j])


@settings(max_examples=60, deadline=None)
@given(hw=shapes, k=pairs(1, 6), s=pairs(1, 6), r=pairs(1, 3), seed=st.integers(0, 2**16))
def test_property_numpy_valid_equals_tensorflow(hw, k, s, r, seed):
    image = np.random.default_rng(seed).integers(0, 255, (*hw, 3), dtype=np.uint8)
    ref = tf_patches(image[None], k, s, r, "VALID")
    if ref is None:
        return
    ref = ref[0]
    out = numpy_extract_valid(image, PatchGrid(*hw, k, s, r))
    np.testing.assert_array_equal(out.reshape(ref.shape), ref)


@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint16, np.int64, np.float16, np.float64, np.complex64])
def test_dtypes_tensorflow_accepts(dtype):
    image = (np.arange(2 * 9 * 8 * 2) % 7).astype(dtype).reshape(2, 9, 8, 2)
    out = extract_patches(image, (3, 2), 2, (1, 2), "SAME")
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, tf_patches(image, (3, 2), 2, (1, 2), "SAME"))


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((10, 10)), "is not an image"),
        (np.zeros((1, 1, 10, 10, 3)), "is not an image"),
        (np.zeros((0, 10, 3)), "is not an image"),
        (np.array([[["a"]]]), "not numeric"),
        (np.ones((3, 3, 1), dtype=bool), "dtype bool is not numeric"),
    ],
)
def test_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        extract_patches(images, 1, 1)


def test_bad_parameters_are_value_errors():
    with pytest.raises(ValueError, match="stride=0"):
        extract_patches(np.zeros((10, 10, 3)), 3, 0)
    with pytest.raises(ValueError, match="No patch fits"):
        extract_patches(np.zeros((10, 10, 3)), 11, 1)


# --- streaming over a whole level ---------------------------------------------------------------
@pytest.fixture(scope="module")
def level():
    rng = np.random.default_rng(7)
    return rng.integers(0, 255, (301, 257, 3), dtype=np.uint8)


def whole_level(level, g):
    ref = tf_patches(level[None], g.size, g.stride, g.rate, g.padding)[0]
    return ref.reshape(g.rows, g.cols, *g.size, level.shape[2])


def gather(batches):
    idx, pts = [], []
    for b in batches:
        idx.append(b.indices)
        pts.append(b.patches)
    return np.concatenate(idx), np.concatenate(pts)


@pytest.mark.parametrize("backend", ["tf", "numpy"])
@pytest.mark.parametrize(
    "k, s, r, padding, block_px",
    [(31, 16, 1, "VALID", 64), (17, 9, 2, "SAME", 50), ((24, 13), (5, 11), (1, 3), "SAME", 80),
     (64, 64, 1, "SAME", 10)],
)
def test_streaming_equals_whole_level(level, backend, k, s, r, padding, block_px):
    g = PatchGrid(*level.shape[:2], k, s, r, padding)
    ref = whole_level(level, g)
    src = da.from_array(level, chunks=(40, 64, 3))
    batches = list(iter_patch_batches(src, g, batch_size=7, block_px=block_px, backend=backend))
    # the "tf" backend leaves the patches on TensorFlow's device, as tensors
    assert all(isinstance(b.patches, np.ndarray) == (backend == "numpy") for b in batches)
    idx, pts = gather(batches)
    assert len(idx) == g.n_patches
    assert len({tuple(i) for i in idx}) == g.n_patches  # each patch exactly once
    np.testing.assert_array_equal(pts, ref[idx[:, 0], idx[:, 1]])


def test_streaming_batches_have_the_batch_size_and_masked_blocks_are_not_read(level):
    g = PatchGrid(*level.shape[:2], 20, 10, padding="SAME")
    mask = np.zeros(g.shape, dtype=bool)
    mask[3, 4] = mask[20, 2] = mask[29, 25] = True
    mask[10:13, 10:20] = True

    reads = []

    class Counting:
        shape, dtype = level.shape, level.dtype

        def __getitem__(self, key):
            reads.append(key)
            return level[key]

    batches = list(iter_patch_batches(Counting(), g, batch_size=8, mask=mask, block_px=64))
    sizes = [len(b) for b in batches]
    assert sizes == [8, 8, 8, 8, 1]
    assert sum(len(b) for b in batches) == mask.sum() == 33
    idx, pts = gather(batches)
    assert mask[idx[:, 0], idx[:, 1]].all()
    np.testing.assert_array_equal(pts, whole_level(level, g)[idx[:, 0], idx[:, 1]])
    n_blocks = len(g.blocks(64))
    assert 0 < len(reads) < n_blocks / 2


@pytest.mark.parametrize("k, s, padding, whole", [
    (64, 64, "VALID", False), (40, 24, "SAME", False),
    (64, 200, "VALID", True)])  # every patch kept, tiles between them never decoded
def test_a_slides_tile_reader_decodes_only_the_tiles_of_kept_patches(slide_writer, k, s,
                                                                    padding, whole, monkeypatch):
    from napari_patchheat.slide import open_slide
    from napari_patchheat.slide.tiff_level import TiffLevel

    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (700, 900, 3), dtype=np.uint8)
    path, _ = slide_writer("tiles.tif", image, layout="single", compression=None, tile=(64, 64))
    g = PatchGrid(*image.shape[:2], k, s, padding=padding)
    mask = np.full(g.shape, whole)
    if not whole:
        mask[1, 1] = mask[2, 9] = mask[-1, -1] = True  # a sparse ring: wide bounding boxes
        mask[5, 3:6] = True
    decoded = []
    decode = TiffLevel.decode_tile
    with open_slide(path) as slide:  # (opening decodes a tile: a broken codec fails there)
        monkeypatch.setattr(TiffLevel, "decode_tile", lambda self, page, index: (
            decoded.append(index) or decode(self, page, index)))
        batches = list(iter_patch_batches(slide.reader(0), g, batch_size=4, mask=mask,
                                          block_px=600, backend="numpy"))
    idx, pts = gather(batches)
    assert len(idx) == mask.sum()
    np.testing.assert_array_equal(pts, whole_level(image, g)[idx[:, 0], idx[:, 1]])
    ey, ex = g.effective_size
    top, left = idx[:, 0] * s - g.pad_before[0], idx[:, 1] * s - g.pad_before[1]
    touched = {(ty, tx) for y, x in zip(top, left)
               for ty in range(max(y, 0) // 64, min(y + ey, 700) // 64 + 1)
               for tx in range(max(x, 0) // 64, min(x + ex, 900) // 64 + 1)
               if ty * 64 < min(y + ey, 700) and tx * 64 < min(x + ex, 900)}
    assert len(decoded) == len(touched)  # not every tile of the blocks' bounding boxes
    assert len(touched) < (-(-700 // 64)) * (-(-900 // 64))


def test_streaming_rejects_mismatched_inputs(level):
    g = PatchGrid(100, 100, 10, 10)
    with pytest.raises(ValueError, match="does not match the grid"):
        next(iter_blocks(level, g))
    g = PatchGrid(*level.shape[:2], 10, 10)
    with pytest.raises(ValueError, match="mask of shape"):
        next(iter_blocks(level, g, mask=np.ones((3, 3), bool)))
    with pytest.raises(ValueError, match="batch_size=0"):
        next(iter_patch_batches(level, g, batch_size=0))


def test_memory_stays_bounded_when_patches_overlap_heavily():
    """Stride 8 with 96-px patches: every pixel is in 144 patches. The level is one block, whose
    patches take 439 MB; streaming holds the block's region and a batch, never all of them."""
    import tracemalloc

    level = np.random.default_rng(0).integers(0, 255, (1100, 1100, 3), dtype=np.uint8)
    g = PatchGrid(*level.shape[:2], 96, 8)
    assert len(g.blocks(2048)) == 1 and g.n_patches * 96 * 96 * 3 > 4e8
    tracemalloc.start()
    n = sum(len(batch) for batch in iter_patch_batches(level, g, batch_size=32, backend="numpy"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == g.n_patches
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize(
    "k, s, r, padding, block_px, batch_size, masked",
    [(31, 16, 1, "VALID", 64, 7, False), (17, 9, 2, "SAME", 50, 16, True),
     ((24, 13), (5, 11), (1, 3), "SAME", 80, 5, True)],
)
def test_batches_written_into_reused_buffers_equal_tensorflows_patches(
        level, k, s, r, padding, block_px, batch_size, masked):
    """write_batches: each patch copied once into one of 2 reused buffers (batches spanning
    blocks, masked blocks, a short zero-padded last batch) equals TF's own patch; a buffer comes
    back only when given back, so each batch is checked before its buffer is given."""
    g = PatchGrid(*level.shape[:2], k, s, r, padding)
    ref = whole_level(level, g)
    assert ref.std() > 10  # the reference varies
    mask = np.random.default_rng(3).random(g.shape) < 0.6 if masked else None
    buffers = BatchBuffers(2, batch_size, (*g.size, 3), level.dtype)
    seen, ids = [], set()
    for batch in write_batches(read_blocks(level, g, mask, block_px, "numpy"), buffers):
        assert batch.patches.base is batch.buffer or batch.patches.base is batch.buffer.base
        np.testing.assert_array_equal(batch.patches, ref[batch.indices[:, 0], batch.indices[:, 1]])
        assert not batch.buffer[len(batch):].any()  # a short batch's padding is zeros
        seen.append(batch.indices)
        ids.add(id(batch.buffer))
        buffers.give(batch.buffer)  # the "model" is done with it
    idx = np.concatenate(seen)
    expected = np.argwhere(mask) if masked else np.argwhere(np.ones(g.shape, bool))
    np.testing.assert_array_equal(idx[np.lexsort(idx.T[::-1])], expected)
    assert len(ids) == 2  # the same two buffers, reused


def test_buffers_are_not_refilled_before_they_are_given_back(level):
    """With every buffer held by the model's side, the writing side waits (nothing is
    overwritten), and closing the buffers ends it."""
    g = PatchGrid(*level.shape[:2], 16, 16)
    buffers = BatchBuffers(2, 4, (16, 16, 3), level.dtype)
    batches = write_batches(read_blocks(level, g, backend="numpy"), buffers)
    held = [next(batches), next(batches)]  # both buffers taken, none given back
    copies = [np.array(b.patches) for b in held]
    waited = threading.Thread(target=lambda: next(batches, None))
    waited.start()
    waited.join(timeout=0.3)
    assert waited.is_alive()  # waiting for a buffer
    for batch, copy in zip(held, copies):
        np.testing.assert_array_equal(batch.patches, copy)
    buffers.close()
    waited.join(timeout=2)
    assert not waited.is_alive()
