"""End-to-end runs against their baselines, measured side by side in one run (CPU).

1. CNNs at the model's speed: MobileNetV2 and ResNet50 (224 px, random weights, BatchNorm
   statistics set from the slide so outputs vary: _cnn.py): end-to-end patches/s of a run over
   the model's own patches/s on ready batches of the same size (target >= 0.97).
2. The built-in `dab` model (cheap) over level 0 of the generated 16384 px slide (5,329 patches
   of 224 px, all computed), one warm process: end-to-end (ours, automatic decode threads and
   batch size) against decoding alone on 2 threads and the model alone on pre-extracted batches;
   ours over the CPU bound 1/(1/decode + 1/model) (target >= 0.9) and ours' CPU-seconds over
   decode's + model's (target <= 1.15); values bit-identical to the former path (patches
   gathered per batch, `extract.iter_patch_batches`, batches of 64). Also ours over the bound
   with the one copy of each patch into its batch that a run needs and decoding alone skips
   (decode then write alone, the writing on the reading thread).
3. Peak RSS of a `dab` run over level 0 of a 20k x 20k and a 40k x 40k generated slide, each in
   its own process (target: the larger within 1.2x of the smaller).
4. Tissue skipping: a run at tissue threshold 0.5 over one at 0 (all patches), against the
   fraction of patches kept, with `dab` (reading-bound) and MobileNetV2 (model-bound).
5. The device path (backend "tf": TensorFlow extracts on its device, patches never return to
   the host) over the host path (backend "numpy"), for MobileNetV2 and for `dab`. "auto" takes
   the device path only where TensorFlow sees a GPU; this shows what it costs where it does not.
6. Test-time augmentation: MobileNetV2 runs with tta "flips" (4 transforms) and "dihedral" (8)
   over the plain run, per transform (target <= 1.05).
7. Stain normalisation on a CNN: MobileNetV2 runs normalised (Reinhard, Macenko, to the IHC
   image's stain) over the plain run (target <= 1.15), and with the once-per-slide fits added.
8. The same CNNs against per-patch baselines (_baselines.py: OpenSlide and tiffslide per patch,
   tifffile whole level + tf.image.extract_patches) over level 0 of a 3584 x 3584 generated
   slide (256 patches), and the model alone, alternating in one run; values bit-identical to
   ours (target: ours >= 1.0x every baseline, >= 0.97 of the model alone).
Run: `.venv/bin/python benchmarks/bench_pipeline.py [--quick] [--parts 1,6,8]`. Slides are
generated once into the cache folder (see napari_patchheat.samples).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from _baselines import baselines, predict_all
from _cnn import CNNS, INPUT_PX, check_varies, cnn_path, sample_patches
from _util import gib

from napari_patchheat import PatchGrid, load_model, open_slide
from napari_patchheat.extract import (
    BatchBuffers,
    iter_blocks,
    iter_patch_batches,
    read_blocks,
    write_batches,
)
from napari_patchheat.grid import read_region
from napari_patchheat.inference import HeatmapRun
from napari_patchheat.options import RunOptions
from napari_patchheat.pipeline import LevelReader
from napari_patchheat.samples import sample_slide_path

BATCH = 32
REPEATS = 3  # alternating repeats of each method; the best of each counts
BASELINE_SLIDE_PX = 3584  # 16 x 16 patches of 224 px: 256, a whole number of batches
REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
REAL_SVS = REAL_DIR / "CMU-1-Small-Region.svs"
STAIN_TARGET = REAL_DIR / "ihc.png"  # the normalisation's target (else the slide itself)


def timed_run(run: HeatmapRun) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = sum(len(p.indices) for p in run.run())
    return n, time.perf_counter() - t0


def model_only(model, n: int, shape: tuple[int, ...], batch_size: int = BATCH) -> float:
    """Seconds for ``n`` patches through model.predict on ready batches (no reading)."""
    batch = np.random.default_rng(0).integers(0, 255, (batch_size, *shape), dtype=np.uint8)
    model.predict(batch)  # compile
    t0 = time.perf_counter()
    for _ in range(-(-n // batch_size)):
        model.predict(batch)
    return time.perf_counter() - t0


def read_only(run: HeatmapRun) -> float:
    """Seconds to read and decode every block region the run reads (no extraction, no model),
    through the run's reader, the faster of decoding on one thread and on every core."""
    todo = run.todo
    best = np.inf
    for workers in sorted({1, os.cpu_count() or 1}):
        reader = LevelReader(run.reader, workers)
        t0 = time.perf_counter()
        for rows, cols in run.grid.blocks(run.block_px):
            if todo[rows.start:rows.stop, cols.start:cols.stop].any():
                read_region(reader, *run.grid.block_region(rows, cols))
        best = min(best, time.perf_counter() - t0)
        reader.close()
    return best


def cnn_options(level: int) -> RunOptions:
    return RunOptions(level=level, size=INPUT_PX, stride=INPUT_PX, batch_size=BATCH,
                      use_cache=False)


def part_model(slide: Path, level: int, cnns: dict[str, Any]) -> None:
    """Each CNN end to end and alone on ready batches, alternating: the best of
    :data:`REPEATS` of each, and the median of the ratios of back-to-back pairs (steadier
    when other work comes and goes on the machine)."""
    with open_slide(slide) as s:
        for name, model in cnns.items():
            e2e, alone = [], []
            for _ in range(REPEATS):
                run = HeatmapRun(s, model, cnn_options(level))
                n, t = timed_run(run)
                e2e.append(t)
                alone.append(model_only(model, n, (INPUT_PX, INPUT_PX, 3)))
            check_varies(run.heatmap.values[run.heatmap.computed], name)
            print(f"1. {name}, level {level} ({n} patches): end-to-end {n / min(e2e):.1f} p/s, "
                  f"model alone {n / min(alone):.1f} p/s, ratio {min(alone) / min(e2e):.3f}, "
                  f"median of pairs {paired(alone, e2e):.3f} (target >= 0.97)", flush=True)


def paired(base: list[float], ours_s: list[float]) -> float:
    """Median over repeats of ``base`` seconds over ``ours_s`` seconds measured beside it."""
    return float(np.median(np.array(base) / np.array(ours_s)))


def ours(path: Path, model: Any) -> tuple[np.ndarray, float]:
    """A run over level 0 of ``path``, timed from opening the slide: (values (n, classes)
    row-major, seconds)."""
    t0 = time.perf_counter()
    with open_slide(path) as s:
        run = HeatmapRun(s, model, cnn_options(0))
        timed_run(run)
    values = run.heatmap.values
    return values.reshape(-1, values.shape[-1]), time.perf_counter() - t0


def part_baselines(cnns: dict[str, Any]) -> None:
    """Each CNN fed by ours, by each per-patch baseline and alone, alternating, best of
    :data:`REPEATS`; every baseline's values must equal ours bit for bit."""
    px = BASELINE_SLIDE_PX
    path = sample_slide_path(px)
    grid = PatchGrid(px, px, INPUT_PX, INPUT_PX)
    found, skipped = baselines()
    for label, why in skipped.items():
        print(f"8. {label} skipped: {why}", flush=True)
    for name, model in cnns.items():
        times: dict[str, list[float]] = {label: [] for label in ["ours", "model alone", *found]}
        for _ in range(REPEATS):
            reference, t = ours(path, model)
            check_varies(reference, f"{name} (ours)")
            times["ours"].append(t)
            times["model alone"].append(model_only(model, grid.n_patches,
                                                   (INPUT_PX, INPUT_PX, 3)))
            for label, batches in found.items():
                t0 = time.perf_counter()
                values = predict_all(model, batches(path, grid, BATCH))
                times[label].append(time.perf_counter() - t0)
                if not np.array_equal(values, reference):
                    raise SystemExit(f"{name}: {label} differs from ours in "
                                     f"{int(np.sum(values != reference))} values")
        n, best = grid.n_patches, {label: min(t) for label, t in times.items()}
        ratios = "; ".join(
            f"{label} {n / best[label]:.1f} p/s: {best[label] / best['ours']:.3f} "
            f"[{paired(times[label], times['ours']):.3f}]" for label in list(times)[1:])
        print(f"8. {name}, level 0 of a {px} x {px} generated slide ({n} patches, values "
              f"bit-identical): ours {n / best['ours']:.1f} p/s; ours over {ratios} (best of "
              f"{REPEATS} each [median of pairs]; target >= 0.97 over the model alone, >= 1.0 "
              "over each baseline)", flush=True)


DAB_SLIDE_PX = 16384  # the issue's 16k case: 73 x 73 = 5,329 patches of 224 px
DAB_DECODE_THREADS = 2
DAB_REPEATS = 5


def cpu_timed(fn: Any, *args: Any) -> tuple[Any, float, float]:
    """``fn(*args)``, its wall seconds and this process's CPU-seconds (every thread)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t0, time.process_time() - c0


def decode_alone(run: HeatmapRun, write: bool = False) -> int:
    """Read and decode every block ``run`` reads, on ``DAB_DECODE_THREADS`` threads, and cut its
    patches as views (no copy, no model): the patches it would compute. ``write``: each patch
    then copied once into one of 4 reused batch buffers (``write_batches``, in this thread), as
    the run does: reading with the one copy a batch needs."""
    reader = LevelReader(run.reader, DAB_DECODE_THREADS)
    try:
        blocks = read_blocks(reader, run.grid, run.todo, run.block_px, "numpy")
        if not write:
            return sum(len(b) for b in blocks)
        buffers, done = BatchBuffers(4, run.batch_size, (*run.grid.size, 3), np.uint8), 0
        for batch in write_batches(blocks, buffers):
            done += len(batch)
            buffers.give(batch.buffer)
        return done
    finally:
        reader.close()


def model_alone(model: Any, batches: list[np.ndarray], n: int) -> int:
    """``n`` patches through ``model.predict``, cycling over ready batches of real patches."""
    done = 0
    for i in range(-(-n // len(batches[0]))):
        model.predict(batches[i % len(batches)])
        done += len(batches[0])
    return done


def former_path(run: HeatmapRun, model: Any) -> np.ndarray:
    """The heatmap values of the former run: batches of 64 gathered from the blocks on the
    model's thread (``iter_patch_batches``), no read-ahead."""
    values = np.full(run.heatmap.values.shape, np.nan, np.float32)
    for batch in iter_patch_batches(run.reader, run.grid, 64, run.todo, run.block_px, "numpy"):
        values[batch.indices[:, 0], batch.indices[:, 1]] = model.predict(batch.patches)
    return values


def part_dab() -> None:
    from napari_patchheat import load_model

    model = load_model("dab")  # one warm process: compiled once, in the warm-up
    options = RunOptions(size=224, stride=224, use_cache=False)
    # each method's (wall, CPU) seconds, every repeat: the fastest counts, and each repeat's ratio
    runs: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("ours", "decode", "model", "decode+write")}
    with open_slide(sample_slide_path(DAB_SLIDE_PX)) as s:
        timed_run(HeatmapRun(s, model, options))  # warm-up: traces and compiles
        ready = None
        for _ in range(DAB_REPEATS):  # alternate
            run = HeatmapRun(s, model, options)
            (n, _), t, c = cpu_timed(timed_run, run)
            runs["ours"].append((t, c))
            runs["decode"].append(cpu_timed(decode_alone, HeatmapRun(s, model, options))[1:])
            runs["decode+write"].append(
                cpu_timed(decode_alone, HeatmapRun(s, model, options), True)[1:])
            if ready is None:  # real patches, in the batches ours chose
                ready = [np.array(b.patches) for b, _ in zip(
                    iter_patch_batches(run.reader, run.grid, run.batch_size, backend="numpy"),
                    range(8))]
                model.predict(ready[0])
            runs["model"].append(cpu_timed(model_alone, model, ready, n)[1:])
        former = former_path(HeatmapRun(s, model, options), model)
        same = np.array_equal(run.heatmap.values, former, equal_nan=True) and not np.isnan(
            former).any() and former.std() > 0
    (t_ours, c_ours), (t_dec, c_dec), (t_mod, c_mod), (t_dw, c_dw) = (min(v) for v in runs.values())
    bound = 1 / (1 / (n / t_dec) + 1 / (n / t_mod))
    with_copy = 1 / (1 / (n / t_dw) + 1 / (n / t_mod))
    print(f"2. dab, level 0 of the {DAB_SLIDE_PX} px slide ({n} patches; batch {run.batch_size}, "
          f"{run.decode_threads} decode threads chosen): ours {n / t_ours:.0f} p/s, decode alone "
          f"({DAB_DECODE_THREADS} threads) {n / t_dec:.0f} p/s, model alone {n / t_mod:.0f} p/s, "
          f"CPU bound {bound:.0f} p/s; ours / CPU bound {n / t_ours / bound:.2f} (target >= 0.9); "
          f"CPU-seconds ours {c_ours:.2f} / (decode {c_dec:.2f} + model {c_mod:.2f}) = "
          f"{c_ours / (c_dec + c_mod):.2f} (target <= 1.15); values bit-identical to the former "
          f"path: {same}", flush=True)
    print(f"   with the batch copy: decode and write alone {n / t_dw:.0f} p/s "
          f"({c_dw - c_dec:+.2f} CPU-s over decode alone), bound {with_copy:.0f} p/s; ours / "
          f"that bound {n / t_ours / with_copy:.2f}", flush=True)
    wall = {k: np.array(v)[:, 0] for k, v in runs.items()}
    print(f"   medians over the {DAB_REPEATS} repeats of each repeat's ratios (steadier when "
          "other work comes and goes): ours / CPU bound "
          f"{np.median((wall['decode'] + wall['model']) / wall['ours']):.2f}, ours / the bound "
          f"with the copy {np.median((wall['decode+write'] + wall['model']) / wall['ours']):.2f}",
          flush=True)
    if not same:
        raise SystemExit("2. dab: values differ from the former path")


def rss_child(slide: str) -> None:
    """Run dab over level 0 and print peak RSS (bytes) as JSON: called in a fresh process."""
    with open_slide(slide) as s:
        run = HeatmapRun(s, "dab", RunOptions(size=224, stride=224, batch_size=64,
                                              use_cache=False))
        n, t = timed_run(run)
        cells = run.heatmap.values.nbytes
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across fork + exec, so a child
    # would report at least its parent's peak (the benchmark's own, with MobileNetV2 loaded)
    status = Path("/proc/self/status").read_text()
    peak = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:"))) * 1024
    print(json.dumps({"patches": n, "seconds": t, "peak_rss": peak, "heatmap_bytes": cells}))


def part_rss(sizes: list[int]) -> None:
    results = []
    for px in sizes:
        path = sample_slide_path(px)
        out = subprocess.run([sys.executable, __file__, "--rss-child", str(path)],
                             capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"3. dab over level 0 of {px} x {px}: {r['patches']} patches in {r['seconds']:.1f} s "
              f"({r['patches'] / r['seconds']:.0f} p/s), peak RSS {gib(r['peak_rss'])}", flush=True)
    print(f"   peak RSS ratio {sizes[-1]}/{sizes[0]}: "
          f"{results[-1]['peak_rss'] / results[0]['peak_rss']:.2f} for "
          f"{(sizes[-1] / sizes[0]) ** 2:.0f}x the area (target <= 1.2)", flush=True)


def read_what_it_reads(run: HeatmapRun) -> float:
    """Seconds to read and extract exactly what ``run`` reads (its blocks, trimmed to its
    patches to do), without the model."""
    reader = LevelReader(run.reader)
    t0 = time.perf_counter()
    for _ in iter_blocks(reader, run.grid, run.todo, run.block_px, backend="numpy"):
        pass
    reader.close()
    return time.perf_counter() - t0


def part_tissue(slide: Path, level: int, model: Any, label: str) -> None:
    """Runs at tissue threshold 0.5 and 0, each timed from building the run (its tissue mask
    included) to its last batch; best of 2 alternating repeats after a warm-up."""
    options = RunOptions(level=level, size=224, stride=224, batch_size=BATCH, use_cache=False)

    def at(threshold: float) -> RunOptions:
        return dataclasses.replace(options, tissue_threshold=threshold)

    def timed(threshold: float) -> tuple[HeatmapRun, float]:
        t0 = time.perf_counter()
        run = HeatmapRun(s, model, at(threshold))
        timed_run(run)
        return run, time.perf_counter() - t0

    with open_slide(slide) as s:
        timed(0.0)  # warms the OS cache and the model
        t_full = t_skip = np.inf
        for _ in range(2):
            full, t = timed(0.0)
            t_full = min(t_full, t)
            skip, t = timed(0.5)
            t_skip = min(t_skip, t)
        kept = skip.heatmap.n_computed / full.heatmap.n_computed
        # fresh runs: the ones above have nothing left to do
        r_full = read_what_it_reads(HeatmapRun(s, "dab", at(0.0)))
        r_skip = read_what_it_reads(HeatmapRun(s, "dab", at(0.5)))
    print(f"4. {label}, level {level}: tissue threshold 0.5 keeps {kept:.0%} of the patches and "
          f"takes {t_skip / t_full:.0%} of the full-grid time ({t_skip:.1f} s vs {t_full:.1f} s); "
          f"reading alone what each reads: {r_skip / r_full:.0%} ({r_skip:.1f} s vs "
          f"{r_full:.1f} s)", flush=True)


def tile_decode_costs(path: Path, tiles: int = 3000) -> tuple[float, float]:
    """Mean seconds to decode a glass tile (< 5% tissue) and a tissue tile (> 80%) of level 0,
    over its first ``tiles`` tiles, tissue by the built-in ``tissue`` model's OD threshold."""
    import tifffile

    from napari_patchheat.models.stain import TISSUE_OD_SUM, od_table

    glass, tissue = [], []
    with tifffile.TiffFile(path) as tif:
        page, fh = tif.pages[0], tif.filehandle
        for i, (offset, count) in enumerate(zip(page.dataoffsets[:tiles], page.databytecounts)):
            if not count:
                continue
            fh.seek(offset)
            data = fh.read(count)
            t0 = time.perf_counter()
            tile = page.decode(data, i, jpegtables=page.jpegtables)[0]
            dt = time.perf_counter() - t0
            share = (od_table()[tile].sum(axis=-1) >= TISSUE_OD_SUM).mean()
            (glass if share < 0.05 else tissue if share > 0.8 else []).append(dt)
    return float(np.mean(glass)), float(np.mean(tissue))


def part_tile_costs(paths: list[Path]) -> None:
    for path in paths:
        if path.is_file():
            g, t = tile_decode_costs(path)
            print(f"4. decoding one JPEG tile of {path.name}: glass {g * 1e3:.3f} ms, tissue "
                  f"{t * 1e3:.3f} ms, ratio {g / t:.2f}", flush=True)


def part_backends(slide: Path, levels: dict[str, int], mobilenet: Any) -> None:
    with open_slide(slide) as s:
        for name, model in (("MobileNetV2", mobilenet), ("dab", "dab")):
            best = {"numpy": np.inf, "tf": np.inf}
            for _ in range(2):  # alternate, keep the best of each
                for backend in best:
                    options = RunOptions(level=levels[name], size=224, stride=224,
                                         batch_size=BATCH, use_cache=False, backend=backend)
                    run = HeatmapRun(s, model, options)
                    n, t = timed_run(run)
                    best[backend] = min(best[backend], t)
            print(f"5. {name}, level {levels[name]} ({n} patches): device path (tf) "
                  f"{n / best['tf']:.0f} p/s, host path (numpy) {n / best['numpy']:.0f} p/s, "
                  f"ratio {best['numpy'] / best['tf']:.2f}", flush=True)
    mixed = load_model(mobilenet.spec, mixed_precision=True)
    t32 = t16 = np.inf
    for _ in range(2):
        t32 = min(t32, model_only(mobilenet, 4 * BATCH, (224, 224, 3)))
        t16 = min(t16, model_only(mixed, 4 * BATCH, (224, 224, 3)))
    print(f"5. MobileNetV2 alone, mixed precision / float32 on this CPU: {4 * BATCH / t16:.0f} / "
          f"{4 * BATCH / t32:.0f} p/s = {t32 / t16:.2f}", flush=True)


def part_tta(slide: Path, level: int, model: Any) -> None:
    """Plain, flips and dihedral runs of ``model`` alternating, best of 2 after a warm-up each."""
    from napari_patchheat.test_time import TTA_TRANSFORMS

    best = {"none": np.inf, "flips": np.inf, "dihedral": np.inf}
    with open_slide(slide) as s:
        for repeat in range(3):
            for tta in best:
                options = RunOptions(level=level, size=224, stride=224, batch_size=BATCH,
                                     use_cache=False, tta=tta)
                n, t = timed_run(HeatmapRun(s, model, options))
                if repeat:  # the first is the warm-up (tracing the larger batches)
                    best[tta] = min(best[tta], t)
    for tta in ("flips", "dihedral"):
        ratio = best[tta] / best["none"]
        print(f"6. MobileNetV2, level {level} ({n} patches): tta {tta} {n / best[tta]:.1f} p/s, "
              f"plain {n / best['none']:.1f} p/s: {ratio:.2f}x for {TTA_TRANSFORMS[tta]} "
              f"transforms, {ratio / TTA_TRANSFORMS[tta]:.3f} per transform (target <= 1.05)",
              flush=True)
def part_stain_norm(slide: Path, level: int, model: Any) -> None:
    """Plain and normalised runs, each timed from building the run to its last batch, best of 2
    alternating repeats after a warm-up (the fits, kept in memory, timed apart)."""
    from napari_patchheat.models.normalised import tissue_stats

    target = STAIN_TARGET if STAIN_TARGET.is_file() else slide
    options = RunOptions(level=level, size=224, stride=224, batch_size=BATCH, use_cache=False)
    methods = ("none", "reinhard", "macenko")

    def timed(method: str) -> tuple[int, float]:
        t0 = time.perf_counter()
        run = HeatmapRun(s, model, dataclasses.replace(
            options, stain_norm=method, stain_target=None if method == "none" else target))
        n, _ = timed_run(run)
        return n, time.perf_counter() - t0

    with open_slide(slide) as s:
        fit_s = {}
        for method in methods[1:]:  # fitted once per slide (and target), then kept in memory
            t0 = time.perf_counter()
            tissue_stats(method, s), tissue_stats(method, target)
            fit_s[method] = time.perf_counter() - t0
        for method in methods:
            timed(method)  # warms the OS cache and traces each model
        best = dict.fromkeys(methods, np.inf)
        for _ in range(2):
            for method in methods:
                n, t = timed(method)
                best[method] = min(best[method], t)
    for method in methods[1:]:
        print(f"7. MobileNetV2, level {level} ({n} patches), {method} normalisation: "
              f"{best[method]:.2f} s vs plain {best['none']:.2f} s, ratio "
              f"{best[method] / best['none']:.2f} (target <= 1.15); the slide's and the "
              f"target's fits {fit_s[method]:.2f} s more, once per slide: ratio "
              f"{(best[method] + fit_s[method]) / best['none']:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller slides and levels")
    ap.add_argument("--parts", default="1,2,3,4,5,6,7,8", help="comma-separated parts to run")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    if args.rss_child:
        return rss_child(args.rss_child)
    import tensorflow as tf

    print(f"TF {tf.__version__} on {[d.device_type for d in tf.config.list_physical_devices()]}, "
          f"{os.cpu_count()} CPUs", flush=True)
    slide = sample_slide_path(20480)
    cnn_level, dab_level = (3, 1) if args.quick else (2, 0)
    with tempfile.TemporaryDirectory() as tmp:
        patches = sample_patches(slide, cnn_level)
        mobilenet = load_model(cnn_path("MobileNetV2", Path(tmp), patches))
        if parts & {1, 8}:
            cnns = {"MobileNetV2": mobilenet,
                    **{name: load_model(cnn_path(name, Path(tmp), patches))
                       for name in CNNS if name != "MobileNetV2"}}
        if 1 in parts:
            part_model(slide, cnn_level, cnns)
        if 2 in parts:
            part_dab()
        if 3 in parts:
            part_rss([10240, 20480] if args.quick else [20480, 40960])
        if 4 in parts:
            part_tissue(slide, dab_level, load_model("dab"), "dab")
            part_tissue(slide, cnn_level, mobilenet, "MobileNetV2")
            part_tile_costs([slide, REAL_SVS])
        if 5 in parts:
            part_backends(slide, {"MobileNetV2": cnn_level, "dab": dab_level}, mobilenet)
        if 6 in parts:
            part_tta(slide, cnn_level, mobilenet)
        if 7 in parts:
            part_stain_norm(slide, cnn_level, mobilenet)
        if 8 in parts:
            part_baselines(cnns)


if __name__ == "__main__":
    main()
