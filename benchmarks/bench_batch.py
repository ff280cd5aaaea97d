"""``patchheat batch`` on dask.distributed against its baselines, measured in one run (CPU).

1. Scaling: 8 generated slides through the built-in `dab` (cheap: reading-bound) and through a
   small CNN (model-bound), as batches on a LocalCluster of 1 and of 2 worker processes of 1
   thread each: the 2-worker batch's slides/hour over the 1-worker batch's (target >= 1.6 on
   this 2-core machine).
2. Overhead: the 1-worker batch's wall time over the sum of the same slides' single runs
   (``jobs.run_job``, what ``patchheat run`` does) in one warm process with 1 thread
   ($PATCHHEAT_THREADS and TensorFlow's thread variables 1, as in a worker of 1 thread)
   (target: below 1.10, i.e. under 10% overhead); also the CPU time of the worker process (all
   its threads: the task, dask's event loop and profiler) over the single runs', which load
   from other programs on the machine does not change.
3. Split: a slide 4 times as wide and high (32768 x 32768 px) as 4 region tasks
   (``--split-px``) on the 2-worker cluster against the same slide as one task on the same
   cluster (target >= 1.6).
Every cluster is warmed first (TensorFlow imported, the model loaded on each worker), runs use
no result cache, and each batch writes to a fresh folder. Slides are generated once into the
cache folder. Run: `PYTHONPATH=src .venv/bin/python benchmarks/bench_batch.py [--quick]`.

``--start-up`` measures instead what a user's commands pay from a cold start, each command a
fresh process in the user's environment, alternated, best of REPEATS:
4. 4 slides (``--start-up-slides``) through `dab`: `patchheat batch` with its few-core default
   against one process looping over them (`patchheat run A B C D`) (target: <= 1.0 on 2
   cores), and dask's own default (2 worker processes of 1 thread on 2 cores: what `batch` did
   before); values bit for bit the loop's.
5. The same slides as one `patchheat run` command each against one `patchheat run` of all.
6. The built-in `dab`'s first batch (32 patches of 224 px) in a fresh process: traced with
   AutoGraph (before) against without (the built-ins now); values equal.

``--dock`` measures instead the local cluster of napari's "Run on all open slides", warm, in
the user's environment, alternated, best of REPEATS:
7. 4 slides through `dab` and through the small CNN on the dock's cluster
   (``local_cluster_shape(cores, in_process=False)``: on 2 cores 2 worker processes of 1
   thread) against one worker process running a slide at a time on all the cores (the shape
   that wins in the command's own process, where no worker imports TensorFlow) (target: <= 1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

USER_ENV = dict(os.environ)  # the start-up commands run as from the user's shell
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "TF_CPP_MIN_LOG_LEVEL": "3"}
os.environ.update(ONE_THREAD)  # this process's single runs; the workers get theirs by plugin
# the single runs' environment: a LocalCluster's nannies write dask's worker variables (e.g.
# MALLOC_TRIM_THRESHOLD_) into this process's, which `patchheat run` from a shell never sees
# (one thread: a run given one core reads its blocks in turn with the model, as a worker of
# one thread does through the batch's worker settings)
SINGLE_ENV = {**os.environ, "PATCHHEAT_THREADS": "1"}

import numpy as np  # noqa: E402
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402

from napari_patchheat.batch import BatchJob, run_batch  # noqa: E402
from napari_patchheat.cache import cache_root  # noqa: E402
from napari_patchheat.options import RunOptions  # noqa: E402
from napari_patchheat.samples import write_sample_slide  # noqa: E402

N_SLIDES = 8
REPEATS = 3  # best of, alternated (the machine is shared)
BIG = 4  # the split slide is this many times the others' side
PATCH_PX = 64
TISSUE = 0.1


def slides(size_px: int, n: int, tag: str) -> list[Path]:
    """``n`` generated slides of ``size_px`` (different seeds), written once."""
    folder = cache_root() / "bench-batch"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(n):
        path = folder / f"{tag}-{size_px}-{seed}.ome.tif"
        if not path.is_file():
            write_sample_slide(path, size_px, seed=seed)
        paths.append(path)
    return paths


def small_cnn(folder: Path) -> Path:
    """A small CNN (3 strided convolutions, 64 x 64 input, random weights) as .keras + card."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((PATCH_PX, PATCH_PX, 3))
    x = inputs
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    path = folder / "small_cnn.keras"
    keras.Model(inputs, outputs).save(path)
    path.with_suffix(".json").write_text(json.dumps(
        {"class_names": ["benign", "tumour"], "preprocessing": "0..1"}))
    return path


def options() -> RunOptions:
    return RunOptions(size=PATCH_PX, stride=PATCH_PX, tissue_threshold=TISSUE, use_cache=False)


def singles(model: str, warm_slide: str, paths: list[str]) -> None:
    """Child process: the single runs of ``paths`` after a warm-up run on ``warm_slide`` (as the
    workers' warm-up: no tile of ``paths`` decoded before); prints their wall and CPU seconds."""
    from napari_patchheat.jobs import run_job
    from napari_patchheat.models import load_model

    loaded = load_model(model)
    out = Path(tempfile.mkdtemp())
    run_job(Path(warm_slide), loaded, out / "warm", options=options(), quiet=True)
    wall, cpu0 = 0.0, time.process_time()
    for p in paths:
        t0 = time.perf_counter()
        run_job(Path(p), loaded, out, options=options(), quiet=True)
        wall += time.perf_counter() - t0
    print(json.dumps([wall, time.process_time() - cpu0]))


def single_runs(model: str, warm_slide: str, paths: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds of the single runs of ``paths``, in a warm child process."""
    out = subprocess.run([sys.executable, __file__, "--singles", model, warm_slide,
                          *map(str, paths)],
                         env=SINGLE_ENV, capture_output=True, text=True,
                         check=True)
    wall, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, cpu


def warm(model: str, slide: str) -> None:
    """On a worker: import TensorFlow, load the model into the batch's model cache, run it."""
    import dask

    from napari_patchheat.batch import tasks
    from napari_patchheat.jobs import run_job

    job = BatchJob(model, options(), "")
    with dask.config.set(scheduler="threads"):
        run_job(Path(slide), tasks._model(job, job.options), Path(tempfile.mkdtemp()),
                options=job.options, quiet=True)


def batch_times(client: Client, paths: list[Path], model: str,
                **kw: Any) -> tuple[float, float]:
    """(wall, CPU) seconds of a batch of ``paths``: CPU is the workers' processes' own."""
    cpu0 = client.run(time.process_time)
    t0 = time.perf_counter()
    m = run_batch(paths, model, options(), tempfile.mkdtemp(), client, **kw)
    wall = time.perf_counter() - t0
    cpu1 = client.run(time.process_time)
    assert m.count("ok") == len(paths), m.to_csv()
    return wall, sum(cpu1[w] - cpu0[w] for w in cpu1)


def split_times(client: Client, slide: Path, model: str,
                split_px: int) -> tuple[float, float, float, float]:
    """(wall, CPU) seconds of a split batch of ``slide`` (as :func:`batch_times`), and the
    seconds its slide's task ran alone before its first region task started and after its
    last one ended (the serial parts: the run with its tissue mask; the merge and files)."""
    with get_task_stream(client) as stream:
        wall, cpu = batch_times(client, [slide], model, split_px=split_px)
    spans = {t["key"]: [(s["start"], s["stop"]) for s in t["startstops"]
                        if s["action"] == "compute"][0] for t in stream.data}
    (start, stop), = [v for k, v in spans.items() if k.startswith("patchheat-slide")]
    regions = [v for k, v in spans.items() if k.startswith("patchheat-region")]
    return (wall, cpu, min(a for a, _ in regions) - start, stop - max(b for _, b in regions))


def cluster(workers: int) -> tuple[LocalCluster, Client]:
    c = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                     dashboard_address=":0")
    return c, Client(c, set_as_default=False)


def regions_split_px(slide: Path, model: str, regions: int) -> tuple[int, int]:
    """A --split-px that cuts ``slide``'s run into ``regions`` region tasks, and its patches."""
    from napari_patchheat.batch import run_order, split_order
    from napari_patchheat.inference import HeatmapRun

    run = HeatmapRun(slide, model, options())
    order = run_order(run)
    for split_px in range(PATCH_PX, 100 * run.grid.height, PATCH_PX // 4):
        if len(split_order(order, run.grid, split_px, run.batch_size)) <= regions:
            return split_px, len(order)
    raise RuntimeError("no split gives that many regions")


def command_s(args: list[Any], out: Path) -> float:
    """Wall seconds of ``patchheat ARGS --out OUT`` as a fresh process (the user's env)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "napari_patchheat.cli", *map(str, args), "--out", out],
                   env=USER_ENV, check=True, capture_output=True)
    return time.perf_counter() - t0


def first_batch(autograph: str) -> None:
    """Child process: seconds of `dab`'s first batch, traced with AutoGraph or not; its sum."""
    import tensorflow as tf

    from napari_patchheat.models import load_model

    model = load_model("dab")
    model.autograph = autograph == "on"
    model._compiled = tf.function(model._forward, reduce_retracing=True, jit_compile=True,
                                  autograph=model.autograph)
    x = np.random.default_rng(0).integers(0, 256, (32, 224, 224, 3), np.uint8)
    t0 = time.perf_counter()
    y = model.predict(x)
    print(json.dumps([time.perf_counter() - t0, float(y.astype(np.float64).sum())]))


def start_up(size: int, repeats: int, count: int = 4) -> None:
    """Parts 4-6 (the module's docstring), over ``count`` slides."""
    from napari_patchheat.heatmap import Heatmap

    paths = slides(size, count, "start")
    run = ["--model", "dab", "--size", PATCH_PX, "--tissue-threshold", TISSUE, "--no-cache"]
    cases = {"loop": ["run", *paths, *run], "batch": ["batch", *paths, *run],
             "dask": ["batch", *paths, *run, "--workers", "2", "--threads-per-worker", "1"]}
    best = dict.fromkeys([*cases, "runs", "autograph on", "autograph off"], np.inf)
    sums: dict[str, float] = {}
    print(f"{count} slides of {size} x {size} px, `dab`, {PATCH_PX} px patches; "
          f"{len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.1f}; best of "
          f"{repeats}", flush=True)
    for _ in range(repeats):
        folders = {}
        for name, args in cases.items():
            folders[name] = Path(tempfile.mkdtemp())
            best[name] = min(best[name], command_s(args, folders[name]))
        for name in ("batch", "dask"):  # bit for bit the loop's
            for p in paths:
                stem = f"{p.name.split('.')[0]}.dab.npz"
                want, got = (Heatmap.load_npz(folders[k] / stem) for k in ("loop", name))
                assert np.nanstd(want.values) > 0
                assert np.array_equal(got.values, want.values, equal_nan=True), (name, p)
        out = Path(tempfile.mkdtemp())
        best["runs"] = min(best["runs"], sum(command_s(["run", p, *run], out) for p in paths))
        for mode in ("on", "off"):
            done = subprocess.run([sys.executable, __file__, "--first-batch", mode],
                                  env=USER_ENV, check=True, capture_output=True, text=True)
            seconds, sums[mode] = json.loads(done.stdout.strip().splitlines()[-1])
            best[f"autograph {mode}"] = min(best[f"autograph {mode}"], seconds)
    assert sums["on"] == sums["off"]
    loop, on, off = best["loop"], best["autograph on"], best["autograph off"]
    print(f"load {os.getloadavg()[0]:.1f}")
    print(f"4. batch (few-core default) {best['batch']:.2f} s / one process looping (patchheat "
          f"run over the {count}) {loop:.2f} s = {best['batch'] / loop:.2f} (target <= 1.0); "
          f"dask's shape (2 worker processes of 1 thread) {best['dask']:.2f} s = "
          f"{best['dask'] / loop:.2f}; values bit for bit the loop's")
    print(f"5. {count} `patchheat run` commands {best['runs']:.2f} s / one `patchheat run` of "
          f"the {count} {loop:.2f} s = {best['runs'] / loop:.2f}")
    print(f"6. `dab`'s first batch in a fresh process: with AutoGraph {on:.3f} s, without "
          f"{off:.3f} s = {on / off:.1f}x; values equal")


def dock(size: int, repeats: int) -> None:
    """Part 7 (the module's docstring)."""
    from napari_patchheat.batch.client import (
        ClusterShape,
        local_cluster,
        local_cluster_shape,
        shaped_client,
    )
    from napari_patchheat.pipeline import run_threads

    os.environ.clear()  # the workers' threads as napari's would have them
    os.environ.update(USER_ENV)
    paths = slides(size, 4, "dock")
    warm_slide = str(slides(1024, 1, "warm")[0])
    models = {"dab": "dab", "small CNN": str(small_cnn(Path(tempfile.mkdtemp())))}
    cores = run_threads()
    shapes = {"dock": local_cluster_shape(cores, in_process=False),
              "one": ClusterShape(1, 1, True, cores)}
    clusters = {k: local_cluster(shape) for k, shape in shapes.items()}
    clients = {k: shaped_client(c, shapes[k]) for k, c in clusters.items()}  # as the dock's
    best: dict[tuple[str, str], float] = {}
    print(f"4 slides of {size} x {size} px, {PATCH_PX} px patches, tissue >= {TISSUE}; "
          f"{cores} cores, load {os.getloadavg()[0]:.1f}; {shapes}; best of {repeats}",
          flush=True)
    try:
        for name, model in models.items():
            for client in clients.values():
                client.run(warm, model, warm_slide)
            for _ in range(repeats):  # alternated, so that load from elsewhere hits both
                for k, client in clients.items():
                    wall, _ = batch_times(client, paths, model)
                    best[name, k] = min(best.get((name, k), np.inf), wall)
    finally:
        for k in clients:
            clients[k].close()
            clusters[k].close()
    print(f"load {os.getloadavg()[0]:.1f}")
    for name in models:
        dock_s, one_s = best[name, "dock"], best[name, "one"]
        print(f"7. {name}: the dock's cluster {dock_s:.2f} s / one worker process, a slide at "
              f"a time on {cores} cores {one_s:.2f} s = {dock_s / one_s:.2f} (target <= 1.0)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller slides, one repeat")
    ap.add_argument("--start-up", action="store_true", help="parts 4-6 only")
    ap.add_argument("--start-up-px", type=int, default=16384, help="their slides' side")
    ap.add_argument("--start-up-slides", type=int, default=4, help="how many slides")
    ap.add_argument("--dock", action="store_true", help="part 7 only")
    ap.add_argument("--singles", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--first-batch", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.singles:
        return singles(args.singles[0], args.singles[1], args.singles[2:])
    if args.first_batch:
        return first_batch(args.first_batch)
    if args.start_up:
        return start_up(4096 if args.quick else args.start_up_px, 1 if args.quick else 2,
                        args.start_up_slides)
    if args.dock:
        return dock(4096 if args.quick else 8192, 1 if args.quick else REPEATS)
    size, repeats = (4096, 1) if args.quick else (8192, REPEATS)
    paths = slides(size, N_SLIDES, "s")
    big = slides(BIG * size, 1, "big")[0]
    warm_slide = str(slides(1024, 1, "warm")[0])
    models = {"dab": "dab", "small CNN": str(small_cnn(Path(tempfile.mkdtemp())))}
    print(f"{N_SLIDES} slides of {size} x {size} px, {PATCH_PX} px patches, tissue >= {TISSUE}; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; best of {repeats}", flush=True)
    batch_s: dict[tuple[str, int], float] = {}
    single_s: dict[str, float] = {}
    split: dict[str, tuple[float, float, int]] = {}
    cpu_ratio: dict[str, float] = {}
    busy: dict[tuple[str, str], float] = {}  # cores a run keeps busy: CPU / wall
    serial: dict[str, tuple[float, float, float]] = {}  # the best split: before, after, CPU
    for workers in (1, 2):
        cl, client = cluster(workers)
        try:
            for name, model in models.items():
                client.run(warm, model, warm_slide)
                if workers == 2:
                    split_px, n = regions_split_px(big, model, 4)
                best = [np.inf] * 3
                for _ in range(repeats):  # alternated, so that load from elsewhere hits all
                    wall, cpu = batch_times(client, paths, model)
                    if wall < best[0] and workers == 1:
                        busy[name, "batch"] = cpu / wall
                    best[0] = min(best[0], wall)
                    if workers == 1:  # the single runs, while this cluster idles
                        single_wall, single_cpu = single_runs(model, warm_slide, paths)
                        best[1] = min(best[1], single_wall)
                        cpu_ratio[name] = min(cpu_ratio.get(name, np.inf), cpu / single_cpu)
                    else:
                        wall, cpu = batch_times(client, [big], model)
                        if wall < best[1]:
                            best[1], busy[name, "big"] = wall, cpu / wall
                        wall, cpu, before, after = split_times(client, big, model, split_px)
                        if wall < best[2]:
                            best[2], serial[name] = wall, (before, after, cpu)
                batch_s[name, workers] = best[0]
                if workers == 1:
                    single_s[name] = best[1]
                else:
                    split[name] = (best[1], best[2], n)
        finally:
            client.close()
            cl.close()
    print(f"load {os.getloadavg()[0]:.1f}")
    for name in models:
        one, two = batch_s[name, 1], batch_s[name, 2]
        print(f"1. {name}: 1 worker {N_SLIDES / one * 3600:,.0f} slides/h, 2 workers "
              f"{N_SLIDES / two * 3600:,.0f} slides/h: ratio {one / two:.2f} (target >= 1.6)")
        cores = busy[name, "batch"]
        print(f"   (additional) the 1-worker batch keeps {cores:.2f} cores busy (CPU / wall: its "
              f"task's thread, and a read-ahead thread where it has more than one): 2 workers "
              f"on {os.cpu_count()} cores can gain at most {os.cpu_count() / cores:.2f}x")
        print(f"2. {name}: 1-worker batch {one:.2f} s over the sum of single runs "
              f"{single_s[name]:.2f} s: ratio {one / single_s[name]:.3f} (target < 1.10); "
              f"CPU time (the worker process's, all its threads) over the single runs' "
              f"{cpu_ratio[name]:.3f}")
        t1, t4, n = split[name]
        print(f"3. {name}: {BIG * size} x {BIG * size} px slide ({n:,} patches), one task {t1:.2f} "
              f"s, 4 region tasks on 2 workers {t4:.2f} s: ratio {t1 / t4:.2f} (target >= 1.6)")
        before, after, cpu = serial[name]
        floor = before + after + (cpu - before - after) / 2
        print(f"   (additional) one task keeps {busy[name, 'big']:.2f} cores busy; the split's "
              f"task alone {before:.2f} s before its regions and {after:.2f} s after, the "
              f"workers' CPU {cpu:.2f} s: on 2 cores it takes at least {floor:.2f} s, a ratio of "
              f"at most {t1 / floor:.2f}", flush=True)


if __name__ == "__main__":
    main()
