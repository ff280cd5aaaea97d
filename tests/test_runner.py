"""The run in a spawned process: messages, cancel, errors, a killed worker, no TF in the parent."""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tifffile

from napari_patchheat import compute_heatmap
from napari_patchheat.inference import Progress
from napari_patchheat.options import RunOptions
from napari_patchheat.runner import (
    CLOSE_SHARED_S,
    Failed,
    Finished,
    RunSpec,
    Started,
    Warned,
    array_to_tiff,
    close_shared_worker,
    died_message,
    shared_worker,
    start_run,
)


@pytest.fixture(scope="module")
def ihc_tif(tmp_path_factory):
    import skimage.data

    path = tmp_path_factory.mktemp("slide") / "ihc.tif"
    tifffile.imwrite(path, skimage.data.immunohistochemistry(), photometric="rgb")
    return path


def collect(handle):
    return list(handle.messages())


def test_run_streams_batches_in_order_and_equals_compute_heatmap(ihc_tif, tmp_path):
    spec = RunSpec(str(ihc_tif), "dab", RunOptions(size=32, stride=16, batch_size=40,
                                                   cache_dir=str(tmp_path)))
    handle = start_run(spec)
    msgs = collect(handle)
    assert handle.process.exitcode == 0  # joined: no zombie left
    assert isinstance(msgs[0], Started) and isinstance(msgs[-1], Finished)
    batches = [m for m in msgs if isinstance(m, Progress)]
    total = msgs[0].total
    assert total == 31 * 31 and msgs[-1].done == total and not msgs[-1].cancelled
    assert [b.done for b in batches] == sorted(b.done for b in batches)
    assert batches[-1].done == total and all(b.patches_per_s > 0 for b in batches)
    values = np.full((31, 31, 1), np.nan, np.float32)
    for b in batches:
        values[b.indices[:, 0], b.indices[:, 1]] = b.values
    ref = compute_heatmap(ihc_tif, "dab", size=32, stride=16, use_cache=False)
    np.testing.assert_allclose(values, ref.values, rtol=1e-6)
    assert msgs[0].metadata["class_names"] == list(ref.class_names)


def test_cancel_stops_within_a_batch_and_resume_sends_the_cache(ihc_tif, tmp_path):
    spec = RunSpec(str(ihc_tif), "dab",
                   RunOptions(size=16, stride=4, batch_size=64, cache_dir=tmp_path))
    handle = start_run(spec)
    msgs = []
    for m in handle.messages():
        msgs.append(m)
        if isinstance(m, Progress) and m.done >= 128:
            handle.cancel()
    end = msgs[-1]
    assert isinstance(end, Finished) and end.cancelled
    total = msgs[0].total
    assert 128 <= end.done < total
    # the second run starts from what the first computed
    msgs2 = collect(start_run(spec))
    assert msgs2[0].total == total - end.done
    assert (~np.isnan(msgs2[0].values)).all(axis=-1).sum() == end.done


def test_errors_arrive_as_messages(ihc_tif, tmp_path):
    bad_model = tmp_path / "model.keras"
    bad_model.write_bytes(b"not a model at all")
    msgs = collect(start_run(RunSpec(str(ihc_tif), str(bad_model), RunOptions(size=32))))
    assert len(msgs) == 1 and isinstance(msgs[0], Failed)
    assert "model.keras" in msgs[0].message and "\n" not in msgs[0].message
    msgs = collect(start_run(RunSpec(str(tmp_path / "missing.svs"), "dab", RunOptions())))
    assert isinstance(msgs[0], Failed) and "missing.svs" in msgs[0].message


def test_a_killed_worker_is_reported(ihc_tif, tmp_path):
    handle = start_run(RunSpec(str(ihc_tif), "dab", RunOptions(size=8, stride=1, batch_size=256,
                                                               use_cache=False)))
    for m in handle.messages():
        if isinstance(m, Progress):
            handle.kill()
            break
    rest = collect(handle)
    assert isinstance(rest[-1], Failed) and "stopped by SIGKILL" in rest[-1].message
    assert "__main__" not in rest[-1].message  # no script advice after a kill


def test_a_dead_workers_message_says_what_killed_it():
    assert "SIGBUS" in died_message(-7, True) and "full disk" in died_message(-7, True)
    assert "__main__" in died_message(1, False)  # a script that spawns without the guard
    assert "exit code 3" in died_message(3, True) and "__main__" not in died_message(3, True)


def test_cache_trouble_arrives_as_a_warning_and_the_run_goes_on(ihc_tif, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    msgs = collect(start_run(RunSpec(str(ihc_tif), "dab",
                                     RunOptions(size=32, stride=32, cache_dir=str(a_file)))))
    assert isinstance(msgs[0], Warned) and "results will not be cached" in msgs[0].message
    assert isinstance(msgs[1], Started) and isinstance(msgs[-1], Finished)
    assert msgs[-1].done == 16 * 16 and not msgs[-1].cancelled


def test_array_to_tiff_round_trips_for_layers_without_a_file(tmp_path):
    import dask.array as da

    img = np.random.default_rng(0).integers(0, 255, (1300, 2100, 3), dtype=np.uint8)
    path = array_to_tiff(da.from_array(img, chunks=(500, 700, 3)), tmp_path, mpp=0.25)
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray(), img)
        assert tif.pages[0].tags["XResolution"].value == (40000, 1)


def test_the_parent_never_imports_tensorflow(ihc_tif, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from napari_patchheat.options import RunOptions
        from napari_patchheat.runner import RunSpec, Finished, start_run
        options = RunOptions(size=64, cache_dir={str(tmp_path)!r})
        msgs = list(start_run(RunSpec({str(ihc_tif)!r}, "dab", options)).messages())
        assert isinstance(msgs[-1], Finished), msgs[-1]
        print("tensorflow" in sys.modules, "keras" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]


def test_a_worker_runs_one_run_after_another_in_one_process(ihc_tif, tmp_path):
    """Cancel stops the run, not the process: the next run resumes in the same worker."""
    from napari_patchheat.runner import Worker

    worker = Worker()
    try:
        spec = RunSpec(str(ihc_tif), "dab",
                       RunOptions(size=16, stride=8, batch_size=64, cache_dir=tmp_path))
        handle = worker.submit(spec)
        with pytest.raises(RuntimeError, match="cancel that run first"):
            worker.submit(spec)  # one run at a time
        first = []
        for m in handle.messages():
            first.append(m)
            if isinstance(m, Progress):
                handle.cancel()
        assert isinstance(first[-1], Finished) and first[-1].cancelled
        assert worker.alive and worker.ready and not worker.busy
        second = list(worker.submit(spec).messages())
        assert isinstance(second[-1], Finished) and not second[-1].cancelled
        assert second[0].total == first[0].total - first[-1].done > 0
        assert worker.alive  # the same process, still up for the next run
    finally:
        worker.close()
    assert not worker.alive and worker.process.exitcode == 0


def test_the_model_cache_keeps_models_and_reloads_rewritten_files(tmp_path):
    import keras

    from napari_patchheat.runner import ModelCache

    cache = ModelCache(size=2)
    dab = RunSpec("slide.svs", "dab", RunOptions())
    assert cache.get(dab) is cache.get(dab)  # loaded once
    path = tmp_path / "m.keras"

    def save(units: int) -> None:
        model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(units)])
        model.save(path)

    save(2)
    user = RunSpec("slide.svs", str(path), RunOptions())
    first = cache.get(user)
    assert first.n_classes == 2 and cache.get(user) is first
    save(3)  # rewritten: loaded again
    assert cache.get(user).n_classes == 3 and len(cache) == 2
    cache.get(RunSpec("slide.svs", "tissue", RunOptions()))  # a third: the oldest goes
    assert len(cache) == 2 and cache.get(dab) is not None


def test_close_shared_worker_ends_it_idle_or_running(ihc_tif, tmp_path):
    """An idle warm worker is killed at once; one in a run has it cancelled and exits within
    CLOSE_SHARED_S (else it is killed); the next shared_worker() is a new process."""
    idle = shared_worker()
    close_shared_worker()
    assert not idle.alive
    busy = shared_worker()
    assert busy is not idle and busy.alive
    spec = RunSpec(str(ihc_tif), "dab",
                   RunOptions(size=8, stride=2, batch_size=64, cache_dir=tmp_path))
    handle = busy.submit(spec)
    for m in handle.messages():
        if isinstance(m, Progress):
            break
    assert busy.busy
    start = time.monotonic()
    close_shared_worker()
    assert not busy.alive and time.monotonic() - start < CLOSE_SHARED_S + 1.0
    close_shared_worker()  # none left: nothing to do
