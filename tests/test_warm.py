"""Warm-ups: a model loaded, traced and run once before Run, in this process and in a worker."""

import time

import numpy as np
import pytest
import tifffile

from napari_patchheat.options import RunOptions
from napari_patchheat.runner import Finished, ModelCache, RunSpec, Worker
from napari_patchheat.warm import SUPERSEDED, WarmSpec, warm_model

REPORT_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def ihc_tif(tmp_path_factory):
    import skimage.data

    path = tmp_path_factory.mktemp("slide") / "ihc.tif"
    tifffile.imwrite(path, skimage.data.immunohistochemistry(), photometric="rgb")
    return path


def never() -> bool:
    return False


def test_a_warm_up_traces_once_per_batch_shape_and_a_second_is_free():
    models = ModelCache()
    spec = WarmSpec.of("dab", RunOptions(size=32, batch_size=8))
    first = warm_model(spec, models.get, never)
    assert first.warm and first.key == ("dab", (32, 32), 8, "VALID", False, False)
    assert first.traces == 1
    again = warm_model(spec, models.get, never)  # the same model, the same shape: no trace
    assert again.warm and again.traces == 1
    other = warm_model(WarmSpec.of("dab", RunOptions(size=48, batch_size=8)), models.get, never)
    assert other.traces == 2  # the count moves: a new batch shape is a new trace
    same = warm_model(WarmSpec.of("dab", RunOptions(size=32, padding="SAME", batch_size=8)),
                      models.get, never)
    assert same.traces == 3  # SAME: the edge batches' inside masks are traced too (32 cached)
    assert len(models) == 1  # one model, loaded once


def test_an_auto_batch_warm_up_leaves_every_batch_size_traced():
    """No batch size (auto: a run chooses one after its first batches): the warm-up predicts
    the default and twice it, so the size a run then chooses costs no trace; values as ever."""
    models = ModelCache()
    spec = WarmSpec.of("dab", RunOptions(size=32))
    warmed = warm_model(spec, models.get, never)
    assert warmed.warm and warmed.key[2] is None and warmed.traces == 2
    model = models.get(spec)
    rng = np.random.default_rng(0)
    for n in (64, 128, 256, 1024, 32, 5):
        batch = rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
        values = model.predict(batch)
        assert values.shape[0] == n and np.ptp(values) > 0
        assert model.predict(batch[:1])[0] == pytest.approx(values[0], abs=1e-6)
    fixed = warm_model(WarmSpec.of("dab", RunOptions(size=32, batch_size=48)), models.get, never)
    assert fixed.traces == warmed.traces  # 48 as well: nothing traced after the warm-up


def test_a_warm_up_says_why_a_model_is_not_warm(tmp_path):
    models = ModelCache()
    overtaken = warm_model(WarmSpec.of("dab", RunOptions(size=32)), models.get, lambda: True)
    assert overtaken.message == SUPERSEDED and not overtaken.warm and len(models) == 0
    missing = warm_model(WarmSpec.of(str(tmp_path / "gone.keras"), RunOptions(size=32)),
                         models.get, never)
    assert not missing.warm and "gone.keras" in missing.message
    assert "\n" not in missing.message and missing.traces == 0


def wait_report(worker: Worker, key, after=None):
    """The newest report of ``key`` that is not ``after``."""
    deadline = time.monotonic() + REPORT_TIMEOUT_S
    while time.monotonic() < deadline:
        report = worker.warmed().get(key)
        if report is not None and report is not after:
            return report
        time.sleep(0.05)
    raise AssertionError(f"no warm-up report of {key}")


def test_a_run_after_a_warm_up_traces_nothing_and_a_run_overtakes_queued_warm_ups(ihc_tif,
                                                                                   tmp_path):
    worker = Worker()
    try:
        options = RunOptions(size=32, stride=32, batch_size=16, cache_dir=str(tmp_path))
        spec = WarmSpec.of("dab", options)
        assert worker.warm(spec) and not worker.warm(spec)  # asked once
        warmed = wait_report(worker, spec.key)
        assert warmed.warm and warmed.traces == 1 and warmed.seconds > 0
        handle = worker.submit(RunSpec(str(ihc_tif), "dab", options))
        assert not worker.warm(WarmSpec.of("tissue", options))  # no warm-up during a run
        msgs = list(handle.messages())
        assert isinstance(msgs[-1], Finished) and msgs[-1].done > 16  # several batches
        assert worker.warm(spec, again=True)
        after = wait_report(worker, spec.key, warmed)
        assert after.warm and after.traces == warmed.traces  # the run's batches: no trace
        other = WarmSpec.of("tissue", options)  # two docks of two models: each warmed once
        assert worker.warm(other) and wait_report(worker, other.key).warm
        assert not worker.warm(spec) and not worker.warm(other)
        # a warm-up still queued when a run comes is skipped: the run does not wait for it
        late = WarmSpec.of("hematoxylin", options)
        worker.warm(late)
        list(worker.submit(RunSpec(str(ihc_tif), "dab", options)).messages())
        assert worker.warm(spec, again=True)
        wait_report(worker, spec.key, after)  # jobs run in order: the late one came before
        skipped = worker.warmed().get(late.key)  # not started, or stopped at its first step
        assert skipped is None or skipped.message == SUPERSEDED
    finally:
        worker.kill()


def test_warm_reports_of_models_that_differ_have_their_own_keys():
    a = WarmSpec.of("dab", RunOptions(size=32, roi=np.ones((4, 4), bool), cache_dir="x"))
    b = WarmSpec.of("dab", RunOptions(size=32))
    assert a == b and a.key == b.key  # region and cache are not the warm-up's business
    assert WarmSpec.of("tissue", RunOptions(size=32)).key != b.key
    assert WarmSpec.of("dab", RunOptions(size=32, batch_size=64)).key != b.key
