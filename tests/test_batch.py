"""Batches on a real dask.distributed cluster: each slide's files equal ``patchheat run``'s bit
for bit, a bad slide is one failed row, a second batch skips what is done, a split slide equals
the unsplit run, a killed worker loses no slide, and ``patchheat batch --scheduler`` runs on a
scheduler and workers started with the ``dask`` commands.

One LocalCluster of 2 worker processes (1 thread each) serves the module; the workers import
TensorFlow on their first task. References are computed in this process with ``jobs.run_job``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster

from napari_patchheat.batch import (
    BatchJob,
    BatchProgress,
    TaskReport,
    WorkerSettings,
    cluster_client,
    local_cluster_shape,
    plan,
    run_batch,
    split_order,
)
from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap
from napari_patchheat.jobs import JobOutputs, run_job
from napari_patchheat.manifest import MANIFEST_CSV, Manifest, SlideRow
from napari_patchheat.options import RunOptions

FORMATS = ("npz", "csv", "geojson", "png", "ometiff")
OPTIONS = RunOptions(size=64, stride=48, padding="SAME", tissue_threshold=0.1, batch_size=16)
DASK = Path(sys.executable).with_name("dask")


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as c:  # this process's dask stays local
        yield c


@pytest.fixture
def generated(slide_writer, real_pixels):
    """Two generated slides (3-level JPEG OME-TIFF pyramids) of different real pixels."""
    a, _ = slide_writer("gen-a.ome.tif", real_pixels[:1400, :1700], mpp=0.5)
    b, _ = slide_writer("gen-b.ome.tif", np.ascontiguousarray(real_pixels[-1200:, ::-1][:, :900]),
                        layout="pages")
    return [a, b]


def reference(slide: Path, out: Path, options: RunOptions = OPTIONS,
              formats=FORMATS) -> dict[str, Path]:
    """``patchheat run``'s files for ``slide`` (no cache: computed afresh)."""
    return run_job(slide, "dab", out, JobOutputs(formats), replace(options, use_cache=False),
                   quiet=True)


def file_bytes(path: str | Path) -> bytes:
    """The file's bytes, the OME-XML's UUID (new for every file tifffile writes) left out."""
    return re.sub(rb"urn:uuid:[0-9a-f-]{36}", b"urn:uuid:", Path(path).read_bytes())


def assert_same_files(got: dict[str, str], want: dict[str, Path]) -> None:
    assert sorted(got) == sorted(want)
    for fmt, path in want.items():
        assert Path(got[fmt]).name == path.name
        assert file_bytes(got[fmt]) == file_bytes(path), fmt


def real_slides() -> list[Path]:
    from conftest import REAL_DATA

    names = ("CMU-1-Small-Region.svs", "ihc.png")
    return [REAL_DATA / n for n in names if (REAL_DATA / n).is_file()]


def done_row(tmp_path: Path) -> SlideRow:
    npz = tmp_path / "a.dab.npz"
    npz.write_bytes(b"x")
    return SlideRow(str(tmp_path / "a.svs"), "ok", patches=10, computed=10, seconds=2.0,
                    outputs={"npz": str(npz)})


def test_plan_skips_done_slides_once_each_and_fails_name_clashes(tmp_path):
    job = BatchJob("dab", RunOptions(size=64), str(tmp_path))
    previous = Manifest(job.key, [done_row(tmp_path)])
    (tmp_path / "sub").mkdir()
    slides = [tmp_path / "a.svs", tmp_path / "b.svs", tmp_path / "b.svs",
              tmp_path / "sub" / "b.ome.tif"]
    m = plan(slides, job, previous)
    assert [(Path(r.slide).name, r.status) for r in m.rows] == [
        ("a.svs", "skipped"), ("b.svs", "pending"), ("b.ome.tif", "failed")]
    assert m.rows[0].outputs == previous.rows[0].outputs and m.rows[0].computed == 0
    assert "b.svs" in m.rows[2].error and "separate batches" in m.rows[2].error
    other = BatchJob("dab", RunOptions(size=32), str(tmp_path))
    assert other.key != job.key
    assert [r.status for r in plan(slides[:1], other, previous).rows] == ["pending"]
    assert BatchJob("dab", RunOptions(size=64), "elsewhere", split_px=500).key == job.key


def test_batch_key_as_before_the_options_added_since():
    """A batch's key at 0.3's new options' defaults is the key the same batch had before they
    existed (computed at commit 3949649), so rerunning an old batch skips its finished slides;
    setting one of them gives another key."""
    job = BatchJob("dab", RunOptions(size=64, stride=32, padding="same"), "out",
                   JobOutputs(formats=("npz", "csv")))
    assert job.key == "7a58475e672bb0cb2caf"
    assert BatchJob("dab", RunOptions(), "out").key == "ed5b4d8a369af87fc133"
    since = [f.name for f in fields(RunOptions) if f.metadata.get("since")]
    assert {"color", "tta", "mc_samples", "uncertainty"} <= set(since)
    srgb = BatchJob("dab", RunOptions(size=64, stride=32, padding="same", color="srgb"), "out",
                    JobOutputs(formats=("npz", "csv")))
    assert srgb.key != job.key


def test_regions_are_whole_batches_of_the_reading_order():
    order = np.argwhere(np.ones((10, 10), bool))
    grid = PatchGrid(1000, 1000, 100, 100)
    pieces = split_order(order, grid, 450, 8)  # (450 / 100)^2 = 20 patches -> 3 batches of 8
    assert [len(p) for p in pieces] == [24, 24, 24, 24, 4]
    np.testing.assert_array_equal(np.concatenate(pieces), order)
    assert [len(p) for p in split_order(order, grid, 10, 8)] == [8] * 12 + [4]


def test_a_batch_equals_run_on_each_slide_fails_a_bad_one_and_skips_done_ones_again(
        client, generated, tmp_path):
    bad = tmp_path / "corrupt.svs"
    bad.write_bytes(b"II*\x00" + b"\x17" * 5000)  # a TIFF header, then nothing readable
    missing = tmp_path / "missing.svs"
    slides = [*real_slides(), *generated, bad, missing]
    good = slides[:-2]
    out = tmp_path / "batch"
    options = replace(OPTIONS, cache_dir=tmp_path / "cache")
    reports = []
    manifest = run_batch(slides, "dab", options, out, client, outputs=JobOutputs(FORMATS),
                         on_progress=lambda p: reports.append(p.patches))
    rows = {Path(r.slide).name: r for r in manifest.rows}
    assert [r.status for r in manifest.rows] == ["ok"] * len(good) + ["failed"] * 2
    for name in ("corrupt.svs", "missing.svs"):  # one sentence each
        error = rows[name].error
        assert name in error and "\n" not in error and error.endswith("."), error
    assert rows["missing.svs"].error == f"{missing} does not exist: give the path of a slide file."
    for slide in good:
        want = reference(slide, tmp_path / "ref")
        row = rows[slide.name]
        assert_same_files(row.outputs, want)
        h = Heatmap.load_npz(want["npz"])
        assert np.nanstd(h.values) > 0.01  # the reference varies: equal files mean something
        assert row.patches == row.computed == h.n_computed > 0 and row.seconds > 0
    assert reports and reports[-1][0] == reports[-1][1] == sum(r.computed for r in rows.values())
    on_disk = Manifest.read(out)
    assert on_disk.to_csv() == manifest.to_csv() == (out / MANIFEST_CSV).read_text()
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]

    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir() if "batch" not in p.name}
    again = run_batch(slides, "dab", options, out, client, outputs=JobOutputs(FORMATS))
    assert [r.status for r in again.rows] == ["skipped"] * len(good) + ["failed"] * 2
    assert [r.outputs for r in again.rows] == [r.outputs for r in manifest.rows]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten
    other = run_batch(slides[:1], "dab", replace(options, stride=64), out, client)
    assert [r.status for r in other.rows] == ["ok"]  # other options: computed again


def test_cancel_stops_the_running_tasks_and_a_later_batch_resumes_them(client, tmp_path):
    """Cancel as soon as the workers report computed patches: run_batch returns, the rows stay
    pending, the tasks stop at their next report (no files written), and the next batch
    completes them from what the cache kept (fewer patches computed than the slides hold)."""
    import threading

    svs = [s for s in real_slides() if s.suffix == ".svs"]
    if not svs:
        pytest.skip("the real CMU SVS is absent from ../shared/data/real")
    options = replace(OPTIONS, size=8, stride=2, tissue_threshold=0.0, batch_size=2048,
                      cache_dir=tmp_path / "cache")  # 1.6M patches: seconds of work
    out, cancel = tmp_path / "out", threading.Event()

    def on_progress(p) -> None:
        if p.patches[0] > 0:
            cancel.set()

    manifest = run_batch(svs, "dab", options, out, client, on_progress=on_progress,
                         cancel=cancel)
    assert cancel.is_set() and [r.status for r in manifest.rows] == ["pending"]
    time.sleep(2.0)  # a task looks after every batch (of ~10 ms here)
    assert sorted(p.name for p in out.iterdir()) == ["batch.csv", "batch.json"]
    again = run_batch(svs, "dab", options, out, client)
    row = again.rows[0]
    assert row.status == "ok" and 0 < row.computed < row.patches


def test_a_split_slide_equals_the_unsplit_run(client, generated, tmp_path):
    options = RunOptions(size=40, stride=30, rate=2, padding="SAME", tissue_threshold=0.1,
                         level=1, cache_dir=tmp_path / "cache")
    slide = generated[0]
    manifest = run_batch([slide], "dab", options, tmp_path / "split", client,
                         outputs=JobOutputs(("npz", "csv", "geojson")), split_px=200)
    row = manifest.rows[0]
    assert row.status == "ok" and row.regions > 4
    want = reference(slide, tmp_path / "ref", options, ("npz", "csv", "geojson"))
    assert_same_files(row.outputs, want)
    got = Heatmap.load_npz(row.outputs["npz"])
    assert got.placement() == Heatmap.load_npz(want["npz"]).placement()
    assert 0 < got.n_computed < got.grid.n_patches and np.nanstd(got.values) > 0.01
    # the slide's task cached the merged values: another batch of it computes nothing
    again = run_batch([slide], "dab", options, tmp_path / "again", client, split_px=200).rows[0]
    assert (again.status, again.regions, again.computed) == ("ok", 0, 0)
    assert_same_files(again.outputs, {"npz": want["npz"]})


def test_a_killed_worker_does_not_lose_its_slide(client, generated, tmp_path):
    slide = generated[0]
    options = RunOptions(size=16, stride=16, batch_size=8, cache_dir=tmp_path / "cache")
    killed: list[int] = []
    pids_after: set[int] = set()

    def kill_the_first_worker_to_report(progress):
        for report in progress.tasks.values():
            if not killed:
                os.kill(report.pid, signal.SIGKILL)
                killed.append(report.pid)
            elif report.pid != killed[0]:
                pids_after.add(report.pid)

    manifest = run_batch([slide], "dab", options, tmp_path / "out", client,
                         on_progress=kill_the_first_worker_to_report)
    row = manifest.rows[0]
    assert killed and pids_after and row.status == "ok"
    want = run_job(slide, "dab", tmp_path / "ref", JobOutputs(("npz",)),
                   RunOptions(size=16, stride=16, use_cache=False), quiet=True)
    assert_same_files(row.outputs, want)


def test_batch_command_runs_on_a_scheduler_started_with_the_dask_commands(generated, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--port", "0", "--dashboard-address", ":0", "--scheduler-file",
         file], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = None
    try:
        deadline = time.monotonic() + 60
        while not file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = subprocess.Popen(
            [DASK, "worker", "--scheduler-file", file, "--nworkers", "2", "--nthreads", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        listing = tmp_path / "slides.txt"
        listing.write_text(f"# the second slide\n{generated[1]}\n")
        out = tmp_path / "out"
        done = subprocess.run(
            [sys.executable, "-m", "napari_patchheat.cli", "batch", generated[0], "--list",
             listing, "--model", "dab", "--size", "64", "--stride", "48", "--padding", "same",
             "--no-cache", "--format", "npz,csv", "--out", out, "--scheduler", file],
            env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "2 slides: 2 ok, 0 failed" in done.stdout and "slides [" in done.stderr
        address = json.loads(file.read_text())["address"]
        assert address.startswith("tcp://")
        with Client(address) as c:  # the work ran on that scheduler's workers
            assert len(c.scheduler_info()["workers"]) == 2
    finally:
        for p in (workers, scheduler):
            if p is not None:
                p.send_signal(signal.SIGINT)
        for p in (workers, scheduler):
            if p is not None:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
    rows = Manifest.read(out).rows
    for slide, row in zip(generated, rows):
        cli_options = RunOptions(size=64, stride=48, padding="SAME", tissue_threshold=0.1)
        assert_same_files(row.outputs, reference(slide, tmp_path / "ref", cli_options,
                                                 ("npz", "csv")))


def environ(name: str) -> str | None:
    """``name`` in the environment of the process this runs in (through client.run: a
    worker's; ``os.environ.get`` itself would carry this process's mapping along)."""
    return os.environ.get(name)


def page_faults_of_freed_buffers(n: int = 20, nbytes: int = 4 * 2**20) -> int:
    """Minor page faults of allocating, filling and freeing ``n`` buffers of ``nbytes``."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        np.ones(nbytes, np.uint8)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
def test_workers_reuse_freed_buffers_despite_the_nannys_trim_threshold(client):
    """dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_, which has glibc map and fault
    in every large buffer anew; with the batch's worker settings a freed buffer is reused."""
    assert set(client.run(environ, "MALLOC_TRIM_THRESHOLD_").values()) == {"65536"}
    client.register_plugin(WorkerSettings())
    pages = 4 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    for faults in client.run(page_faults_of_freed_buffers).values():
        assert faults < 3 * pages  # not 20 times: the first buffer's pages, reused


def test_a_one_thread_worker_runs_on_one_thread(client):
    """The worker settings give a run as many threads as its worker has: a one-thread worker
    reads its blocks in turn with the model, keeping one core busy as dask's count means."""
    from napari_patchheat.inference import run_threads

    client.register_plugin(WorkerSettings())
    assert set(client.nthreads().values()) == {1}
    assert set(client.run(run_threads).values()) == {1}
    assert set(client.run(environ, "TF_NUM_INTRAOP_THREADS").values()) == {"1"}


def test_batch_flags():
    from napari_patchheat.cli import build_parser, parse_resources, run_options

    args = build_parser().parse_args(
        ["batch", "a.svs", "b.svs", "--list", "l.txt", "--size", "64", "--out", "o",
         "--scheduler", "tcp://h:8786", "--split-px", "4096", "--retries", "2",
         "--resources", "GPU=1", "--format", "npz,csv"])
    assert args.slides == [Path("a.svs"), Path("b.svs")] and args.slide_list == Path("l.txt")
    assert (args.scheduler, args.split_px, args.retries) == ("tcp://h:8786", 4096, 2)
    assert args.format == ["npz", "csv"] and run_options(args).size == (64, 64)
    assert parse_resources(args.resources) == {"GPU": 1.0}
    assert parse_resources("GPU=1, MEMORY=8e9") == {"GPU": 1.0, "MEMORY": 8e9}
    with pytest.raises(ValueError, match="NAME=AMOUNT"):
        parse_resources("GPU")


def test_batch_without_slides_or_with_local_sizes_for_a_scheduler_is_one_line(capsys, tmp_path):
    from napari_patchheat.cli import main

    assert main(["batch", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "patchheat: error: no slides: give slide files, or --list FILE.")
    assert main(["batch", "x.svs", "--out", str(tmp_path), "--scheduler", "tcp://h:1",
                 "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "size the local cluster" in err and len(err.splitlines()) == 1


def test_batch_command_starts_a_local_cluster_and_exits_1_when_a_slide_failed(generated,
                                                                              tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "napari_patchheat.cli", "batch", generated[1],
         tmp_path / "missing.svs", "--model", "dab", "--size", "64", "--no-cache", "--out", out,
         "--workers", "1", "--threads-per-worker", "1"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "2 slides: 1 ok, 1 failed" in done.stdout
    assert re.search(r"^dask dashboard: http://127\.0\.0\.1:[1-9]\d*/status$", done.stderr,
                     re.MULTILINE), done.stderr[-3000:]  # bokeh is in the test extra
    assert f"failed: {tmp_path / 'missing.svs'}: {tmp_path / 'missing.svs'} does not exist" \
        in done.stderr
    row = Manifest.read(out).rows[0]
    options = RunOptions(size=64, tissue_threshold=0.1)
    assert_same_files(row.outputs, reference(generated[1], tmp_path / "ref", options, ("npz",)))


def test_batch_progress_keeps_running_totals():
    rows = [SlideRow("a"), SlideRow("b"), SlideRow("c", "failed", error="bad")]
    p = BatchProgress(Manifest("k", rows))
    assert p.patches == (0, 0) and p.finished == 1
    p.report("a", TaskReport("a", 0, 10, 1))
    p.report("a", TaskReport("a", 4, 10, 1))  # a task's new report replaces its last
    p.report("b#0", TaskReport("b", 3, 5, 2))  # a split slide's region tasks add up
    p.report("b#1", TaskReport("b", 1, 5, 2))
    assert p.patches == (8, 20) and p.slide_patches(rows[1]) == (4, 10)
    p.finish(0, SlideRow("a", "ok", patches=12, computed=10))
    assert p.patches == (14, 20) and p.finished == 2
    p.report("a", TaskReport("a", 10, 10, 1))  # a late report of a slide that ended
    assert p.patches == (14, 20)
    p.finish(1, SlideRow("b", "failed", error="died"))  # failed: what it had done
    assert p.patches == (14, 14) and p.finished == 3
    recount = [p.slide_patches(r) for r in p.manifest.rows]
    assert p.patches == (sum(d for d, _ in recount), sum(t for _, t in recount))


def test_a_slide_through_a_symbolic_link_gives_batch_and_run_the_same_files(client, generated,
                                                                             tmp_path):
    link = tmp_path / "linked.ome.tif"
    link.symlink_to(generated[0])
    outputs = JobOutputs(("npz", "geojson"))  # the GeoJSON's ids hold the slide's path
    row = run_batch([link], "dab", OPTIONS, tmp_path / "batch", client, outputs=outputs).rows[0]
    assert row.status == "ok" and row.slide == str(link)  # absolute, the link kept
    want = reference(link, tmp_path / "run", formats=outputs.formats)
    assert Path(row.outputs["npz"]).name == "linked.dab.npz"
    assert_same_files(row.outputs, want)
    assert Heatmap.load_npz(want["npz"]).slide_path == str(link)


def test_a_batch_of_s3_urls_equals_the_local_runs(client, s3, svs_path, ndpi_path, tmp_path):
    """Two slides in moto's S3, their keys and endpoint only in ``storage_options`` (which
    travel to the workers in the BatchJob): each heatmap equals the local file's run, and the
    manifest records the URLs."""
    options = replace(OPTIONS, level=1)
    urls = [s3.url(svs_path.name), s3.url(ndpi_path.name)]
    manifest = run_batch(urls, "dab", options, tmp_path / "s3", client,
                         storage_options=s3.storage_options)
    assert [(r.slide, r.status) for r in manifest.rows] == [(u, "ok") for u in urls]
    assert Manifest.read(tmp_path / "s3").rows[0].slide == urls[0]
    for path, row in zip((svs_path, ndpi_path), manifest.rows):
        want = Heatmap.load_npz(reference(path, tmp_path / "local", options, ("npz",))["npz"])
        got = Heatmap.load_npz(row.outputs["npz"])
        assert np.nanstd(want.values) > 0 and got.grid == want.grid
        np.testing.assert_array_equal(got.values, want.values)
        assert got.slide_path == row.slide


def test_the_local_cluster_is_shaped_by_the_cores():
    """Up to 2 cores: one worker running one slide at a time on all of them, in the command's
    own process; the dock's and run_batch's, which stay out of it, a worker process of one
    thread per core; more: workers of 2 threads, a task on each thread; flags win."""
    assert local_cluster_shape(1) == (1, 1, False, 1)
    assert local_cluster_shape(2) == (1, 1, False, 2)
    assert local_cluster_shape(2, in_process=False) == (2, 1, True, 1)  # napari's: processes
    assert local_cluster_shape(16) == (8, 2, True, 2)
    assert local_cluster_shape(16, in_process=False) == (8, 2, True, 2)
    assert local_cluster_shape(2, workers=2) == (2, 1, True, 1)
    assert local_cluster_shape(16, threads=4) == (4, 4, True, 4)
    assert local_cluster_shape(16, workers=3, threads=1) == (3, 1, True, 1)


def test_a_few_core_batch_of_much_work_leaves_the_commands_process(svs_path, ndpi_path,
                                                                     tmp_path, monkeypatch):
    """On 2 cores a batch stays in the command's process only while it is small: one slide, or
    under PROCESSES_MIN_PX level pixels, estimated from the first SIZED_SLIDES that open (an
    unreadable one skipped) and their mean for the rest; on more cores the question is moot."""
    from napari_patchheat import open_slide
    from napari_patchheat.batch import shape

    sizes = {}
    for path in (svs_path, ndpi_path):
        with open_slide(path) as slide:
            sizes[path] = int(np.prod(slide.levels[0].shape[:2]))
    assert sizes[svs_path] != sizes[ndpi_path]
    missing = str(tmp_path / "missing.svs")
    slides = [str(svs_path), missing, str(ndpi_path), str(svs_path)]
    assert shape.batch_pixels(slides, 0) == (sizes[svs_path] * 2 + sizes[ndpi_path]) / 3 * 4
    monkeypatch.setattr(shape, "SIZED_SLIDES", 2)  # the svs only (the other does not open)
    assert shape.batch_pixels(slides, 0) == sizes[svs_path] * 4
    assert shape.batch_pixels(slides, 9) == 0  # no slide has level 9
    assert shape.batch_pixels([missing], 0) == 0
    monkeypatch.setattr(shape, "PROCESSES_MIN_PX", sizes[svs_path] * 3 + 1)
    assert shape.in_process_pays(slides[:3], 0)  # 3 x the svs: just under
    assert not shape.in_process_pays(slides, 0)  # 4 x: worker processes
    assert shape.in_process_pays([str(svs_path)], 0)  # one slide: the command's process

    def never() -> bool:
        raise AssertionError("asked where the answer is moot")

    # moot on many cores or with the flags given: worker processes anyway, nothing opened
    assert shape.local_cluster_shape(16, in_process=never) == (8, 2, True, 2)
    assert shape.local_cluster_shape(2, workers=2, in_process=never) == (2, 1, True, 1)
    assert shape.local_cluster_shape(2, in_process=lambda: False) == (2, 1, True, 1)
    assert shape.local_cluster_shape(2, in_process=lambda: True) == (1, 1, False, 2)


def test_the_few_core_cluster_runs_one_task_at_a_time_on_all_the_cores(monkeypatch):
    """On 2 cores the command's cluster is one worker of one thread in this process: its task
    gets TensorFlow's, OpenMP's and the run's thread variables at 2 (a task on each of 2
    threads would give each 2), and no dask profiler samples the process."""
    from napari_patchheat.batch import client as batch_client
    from napari_patchheat.batch.tasks import THREAD_ENV

    def unset() -> None:  # the thread variables unset here; monkeypatch puts back what was
        for var in THREAD_ENV:
            monkeypatch.setenv(var, "")
            monkeypatch.delenv(var)

    unset()
    monkeypatch.setattr(batch_client, "run_threads", lambda: 2)
    with cluster_client(None, None, None, None, in_process=True) as client:
        assert list(client.nthreads().values()) == [1]
        seen = client.submit(lambda: {v: os.environ.get(v) for v in THREAD_ENV}).result()
        assert seen == dict.fromkeys(THREAD_ENV, "2")
        profiled = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
        assert list(profiled.values()) == [False]
    unset()  # (the worker above set them in this process, which worker processes inherit)
    with cluster_client(None, 2, 1, None, in_process=True) as client:  # flags: processes
        assert sorted(client.nthreads().values()) == [1, 1]
        seen = client.submit(lambda: os.environ.get("TF_NUM_INTRAOP_THREADS")).result()
        assert seen == "1"


def test_the_few_core_batch_runs_in_the_commands_process_to_the_runs_files(svs_path, ndpi_path,
                                                                           tmp_path):
    """``patchheat batch`` on 2 cores (PATCHHEAT_THREADS=2): its one worker in its own process,
    each slide's files bit for bit those of ``patchheat run`` of the slides."""
    args = ["--model", "dab", "--size", "224", "--stride", "160", "--no-cache"]
    env = {**os.environ, "PATCHHEAT_THREADS": "2"}
    cli = [sys.executable, "-m", "napari_patchheat.cli"]
    done = subprocess.run([*cli, "batch", svs_path, ndpi_path, *args, "--out", tmp_path / "b"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 slides: 2 ok, 0 failed" in done.stdout
    ran = subprocess.run([*cli, "run", svs_path, ndpi_path, *args, "--out", tmp_path / "r"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    for name in ("CMU-1-Small-Region.dab.npz", "test3-DAPI-2-387.dab.npz"):
        want, got = (Heatmap.load_npz(tmp_path / d / name) for d in ("r", "b"))
        assert got.grid == want.grid
        assert np.array_equal(got.values, want.values, equal_nan=True)
    assert np.nanstd(Heatmap.load_npz(tmp_path / "r" / "CMU-1-Small-Region.dab.npz").values) > 0
