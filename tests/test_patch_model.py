"""PatchModel.predict: the traced forward on batches TensorFlow reads in place.

Its values are those of the same forward fed a copied tensor (what predict did before it read
batches in place) bit for bit, and Keras' eager ``model(x)`` to float32 rounding (TensorFlow's
graph fuses layers, so eager and traced differ in the last bits).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from napari_patchheat.models import load_model  # noqa: E402
from napari_patchheat.models.patch_model import ALIGN_BYTES, aligned_empty  # noqa: E402

SIZE, FULL, SHORT = 24, 8, 3


def patches(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def net_and_model(tmp_path_factory):
    """A small CNN with BatchNorm whose moving statistics come from data (Keras' initial ones
    would squash every patch to nearly one output), and the PatchModel of its .keras file."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.0)(x)  # one training call sets its stats
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    net = keras.Model(inputs, outputs)
    net(patches(32, seed=9).astype(np.float32) / 255.0, training=True)
    path = tmp_path_factory.mktemp("models") / "bn.keras"
    net.save(path)
    path.with_suffix(".json").write_text('{"preprocessing": "0..1"}')
    return net, load_model(path)


def reference(net, model, x: np.ndarray) -> np.ndarray:
    """The traced forward on a copied tensor, checked against Keras' eager call."""
    values = model.tf_predict(tf.constant(x)).numpy()
    eager = net(x.astype(np.float32) / 255.0, training=False).numpy()
    np.testing.assert_allclose(values, eager, rtol=1e-5, atol=1e-7)
    return values


@pytest.mark.parametrize("n", [FULL, SHORT], ids=["full batch", "short last batch"])
@pytest.mark.parametrize("layout", ["aligned", "unaligned", "read-only"])
def test_predict_equals_keras_for_full_and_short_batches(net_and_model, n, layout):
    net, model = net_and_model
    x = patches(FULL, seed=1)[:n]
    expected = reference(net, model, x)
    assert expected.std(axis=0).min() > 1e-3  # the reference varies across patches
    assert len(np.unique(expected[:, 0])) == n
    if layout == "aligned":
        batch = aligned_empty(x.shape, x.dtype)
        batch[...] = x
        assert batch.ctypes.data % ALIGN_BYTES == 0
    else:
        batch = np.empty(x.nbytes + 1, np.uint8)[1:].reshape(x.shape)  # never aligned
        batch[...] = x
        batch.flags.writeable = layout != "read-only"
    assert np.array_equal(model.predict(batch), expected)


def test_a_refilled_buffer_gives_the_new_patches_values(net_and_model):
    """The reading side refills one batch buffer after each call: predict keeps no hold on
    it, and the next call sees the new patches."""
    net, model = net_and_model
    batch = aligned_empty((FULL, SIZE, SIZE, 3))
    results = []
    for seed in (1, 2, 3):
        batch[...] = patches(FULL, seed)
        before = sys.getrefcount(batch)
        results.append(model.predict(batch))
        assert sys.getrefcount(batch) == before  # no reference kept past the call
        assert np.array_equal(results[-1], reference(net, model, patches(FULL, seed)))
    assert not np.array_equal(results[0], results[1])


def test_aligned_empty_shapes_and_dtypes():
    for shape, dtype in [((2, 4, 4, 3), np.uint8), ((5, 7, 3), np.float32), ((1,), np.int16)]:
        arr = aligned_empty(shape, dtype)
        assert arr.shape == shape and arr.dtype == dtype and arr.flags.c_contiguous
        assert arr.ctypes.data % ALIGN_BYTES == 0 and arr.flags.writeable
