"""The run's reading side: decoding threads and batch size chosen from measured costs (or as the
options say), batch buffers never refilled under a running model."""

import threading
import time

import numpy as np
import pytest

from napari_patchheat import PatchGrid, compute_heatmap, load_model
from napari_patchheat.inference import BATCH_BUFFERS, HeatmapRun
from napari_patchheat.options import RunOptions
from napari_patchheat.pipeline import (
    MAX_AUTO_BATCH_BYTES,
    MIN_MODEL_CALL_S,
    Costs,
    choose_batch_size,
    choose_decode_threads,
)

tf = pytest.importorskip("tensorflow")


@pytest.mark.parametrize("read, model, cores, threads", [
    (180e-6, 90e-6, 2, 2),  # `dab`: reading costs twice the model: every core decodes
    (180e-6, 5e-3, 2, 1),  # a CNN: one
    (180e-6, 5e-3, 16, 1),
    (180e-6, 90e-6, 16, 11),  # two thirds of 16, rounded up
    (1e-3, 0.0, 4, 4),
    (180e-6, 90e-6, 1, 1),
])
def test_decode_threads_follow_the_reading_sides_share_of_the_cost(read, model, cores, threads):
    assert choose_decode_threads(Costs(read, model), cores) == threads


def test_batch_size_doubles_until_a_call_amortises_tensorflows_cost_within_a_memory_cap():
    patch = 224 * 224 * 3
    assert choose_batch_size(Costs(1e-4, 5e-3), patch, 32) == 32  # a CNN: 160 ms a call
    cheap = choose_batch_size(Costs(1e-4, 9e-5), patch, 32)  # `dab` at 224 px
    assert cheap == 64 and cheap * 9e-5 >= MIN_MODEL_CALL_S
    tiny = choose_batch_size(Costs(1e-6, 1e-7), patch, 32)  # capped by bytes, not time
    assert tiny * patch <= MAX_AUTO_BATCH_BYTES < 2 * tiny * patch


@pytest.fixture
def ihc_tif(tmp_path):
    """The real IHC image (scikit-image's), tiled 2 x 2, as a tiled TIFF."""
    import skimage.data
    import tifffile

    path = tmp_path / "ihc.tif"
    image = np.tile(skimage.data.immunohistochemistry(), (2, 2, 1))
    tifffile.imwrite(path, image, tile=(128, 128), photometric="rgb", compression="zlib")
    return path


def dab_reference(path, size: int, stride: int) -> np.ndarray:
    """`dab` on each patch from one whole-level ``tf.image.extract_patches`` call."""
    import tifffile

    level = tifffile.imread(path)
    grid = PatchGrid(*level.shape[:2], size, stride)
    flat = tf.image.extract_patches(level[None], [1, size, size, 1], [1, stride, stride, 1],
                                    [1, 1, 1, 1], "VALID").numpy()[0]
    patches = flat.reshape(grid.rows * grid.cols, size, size, 3)
    return load_model("dab").predict(patches).reshape(grid.rows, grid.cols, 1)


def test_auto_choices_are_made_and_overrides_are_kept(ihc_tif, monkeypatch):
    monkeypatch.setenv("PATCHHEAT_THREADS", "2")
    options = RunOptions(size=32, stride=32, use_cache=False)
    auto = HeatmapRun(ihc_tif, "dab", options)
    assert (auto.batch_size, auto.decode_threads) == (32, None)  # before the run
    list(auto.run())
    # `dab` on 32-px patches costs microseconds: bigger batches; decoding threads 1 or 2
    assert auto.batch_size > 32 and auto.decode_threads in (1, 2)
    fixed = HeatmapRun(ihc_tif, "dab", RunOptions(size=32, stride=32, use_cache=False,
                                                  batch_size=24, decode_threads=1))
    list(fixed.run())
    assert (fixed.batch_size, fixed.decode_threads) == (24, 1)
    reference = dab_reference(ihc_tif, 32, 32)
    assert np.nanstd(reference) > 0.01
    np.testing.assert_array_equal(auto.heatmap.values, reference)
    np.testing.assert_array_equal(fixed.heatmap.values, reference)


class Watchful:
    """`dab` that keeps its batch during the call, then checks it did not change: a reused
    buffer refilled while the model reads it would show here."""

    def __init__(self):
        self.inner = load_model("dab")
        self.name, self.class_names, self.input_size = "dab", self.inner.class_names, None
        self.fingerprint, self.mpp, self.changed, self.ids = "watchful", None, 0, set()

    def check_patch_size(self, size):
        return None

    def predict(self, batch):
        before = np.array(batch)
        self.ids.add(id(batch))
        out = self.inner.predict(batch)
        time.sleep(0.002)  # the reading side runs meanwhile
        self.changed += int(not np.array_equal(before, batch))
        return out


def test_a_buffer_is_never_refilled_while_the_model_reads_it(ihc_tif, monkeypatch):
    monkeypatch.setenv("PATCHHEAT_THREADS", "2")
    model = Watchful()
    cancel = threading.Event()
    heatmap = compute_heatmap(ihc_tif, model, size=16, stride=16, batch_size=8,
                              decode_threads=2, use_cache=False, backend="numpy", cancel=cancel)
    assert model.changed == 0
    assert len(model.ids) <= BATCH_BUFFERS  # the same few buffers, reused
    np.testing.assert_array_equal(heatmap.values, dab_reference(ihc_tif, 16, 16))
