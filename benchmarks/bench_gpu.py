"""Runs on a GPU, each against its baseline in the same run (#25 item 5; <= 5 minutes on an H100).

1. Patches/s at 224 px of `dab`, MobileNetV2 and ResNet50 (random weights, BatchNorm statistics
   set from slide patches so outputs vary): the model alone on ready batches, end to end over a
   generated slide (extraction on the device), their ratio; `dab` also against reading alone.
2. On-device extraction (backend "tf") against host extraction ("numpy"), end to end: the ratio
   and the largest difference between the two heatmaps (0 where they are bit-identical).
3. Mixed precision against float32 for the CNNs: the model alone and end to end, and the largest
   difference between the float16 and the float32 heatmaps.
4. A 100,000 x 100,000 px generated slide end to end (`dab` and MobileNetV2, tissue threshold
   0.1, level 0), with its generation time (once: it stays in the cache folder).
Every end-to-end run also reports the GPU's utilisation (nvidia-smi sampled on a thread) and
TensorFlow's peak GPU memory. Without a GPU that TensorFlow sees it prints one line and exits 0.
Run: `python benchmarks/bench_gpu.py [--quick] [--parts 1,2,3,4] [--max-s 285]`; each part prints
as it goes, and a run that reaches the time cap stops there and says so. `--cpu-check` runs every
part on a CPU at toy sizes, to check the script itself before a GPU session (figures meaningless).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from _cnn import CNNS, cnn_path, sample_patches
from _util import gib
from bench_pipeline import model_only, read_only

from napari_patchheat import load_model, open_slide
from napari_patchheat.inference import HeatmapRun
from napari_patchheat.options import RunOptions
from napari_patchheat.samples import sample_slide_path

NEEDS_GPU = ("bench_gpu.py needs a GPU that TensorFlow sees, and TensorFlow sees none here: "
             "nothing measured (run it on a GPU machine; --cpu-check tries the script on a CPU).")
PATCH_PX = 224
GPU_SAMPLE_MS = 100  # nvidia-smi's sampling period
HARD_CAP_GRACE_S = 30  # past the cap, a run that does not stop is ended
BIG_PART_RESERVE_S = 120  # kept for part 4 while parts 1-3 run
BIG_TISSUE_THRESHOLD = 0.1  # the dock's and `patchheat run`'s default
WARM_UP_BATCHES = 2
MODEL_ALONE_BATCHES = 20


@dataclasses.dataclass(frozen=True)
class Sizes:
    """A profile: the generated slide and level of parts 1-3, part 4's slide, the batch size."""

    slide_px: int
    level: int
    big_px: int
    batch: int


PROFILES = {
    "full": Sizes(slide_px=20480, level=0, big_px=100_000, batch=128),
    "quick": Sizes(slide_px=10240, level=0, big_px=32768, batch=128),
    "cpu-check": Sizes(slide_px=4096, level=1, big_px=8192, batch=16),
}


class Clock:
    """The run's time cap: seconds left, and a watchdog that ends a run that overstays it."""

    def __init__(self, max_s: float):
        self.deadline = time.monotonic() + max_s
        watchdog = threading.Timer(max_s + HARD_CAP_GRACE_S, self._overstayed)
        watchdog.daemon = True
        watchdog.start()

    def left(self, reserve: float = 0.0) -> float:
        return self.deadline - reserve - time.monotonic()

    @staticmethod
    def _overstayed() -> None:
        print(f"bench_gpu.py ran {HARD_CAP_GRACE_S} s past its time cap: stopped.", flush=True)
        os._exit(3)


@dataclasses.dataclass
class GpuUse:
    """nvidia-smi's samples (utilisation %, memory MiB) and TensorFlow's peak bytes."""

    utilisation: list[float] = dataclasses.field(default_factory=list)
    memory_mib: list[float] = dataclasses.field(default_factory=list)
    tf_peak: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.utilisation:
            parts.append(f"GPU busy {np.mean(self.utilisation):.0f}% mean, "
                         f"{max(self.utilisation):.0f}% max ({len(self.utilisation)} samples), "
                         f"{max(self.memory_mib) / 1024:.1f} GiB used at most")
        if self.tf_peak is not None:
            parts.append(f"TF peak {gib(self.tf_peak)}")
        return "; ".join(parts) or "no GPU figures"


@contextmanager
def nvidia_smi(use: GpuUse) -> Iterator[None]:
    """Append nvidia-smi's samples of GPU 0, every GPU_SAMPLE_MS, to ``use`` while inside (none
    where nvidia-smi is missing)."""
    try:
        smi = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
             "--format=csv,noheader,nounits", f"--loop-ms={GPU_SAMPLE_MS}", "--id=0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError:
        yield
        return

    def read() -> None:
        for line in smi.stdout or ():
            try:
                util, mem = (float(v) for v in line.split(","))
            except ValueError:
                continue
            use.utilisation.append(util)
            use.memory_mib.append(mem)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield
    finally:
        smi.terminate()
        smi.wait()
        reader.join()


@contextmanager
def gpu_use(on_gpu: bool) -> Iterator[GpuUse]:
    """nvidia-smi's samples and TensorFlow's peak memory of GPU:0 over the block (nothing on a
    CPU)."""
    import tensorflow as tf

    use = GpuUse()
    if not on_gpu:
        yield use
        return
    tf.config.experimental.reset_memory_stats("GPU:0")
    with nvidia_smi(use):
        yield use
    use.tf_peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]


@dataclasses.dataclass
class Result:
    """One end-to-end run: patches done of its total, seconds, heatmap values, GPU use."""

    done: int
    total: int
    seconds: float
    values: np.ndarray
    gpu: GpuUse

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    def describe(self) -> str:
        cut = "" if self.done == self.total else (
            f", stopped at the time cap after {self.done} of {self.total} patches")
        return f"{self.rate:.0f} p/s ({self.done} patches in {self.seconds:.1f} s{cut}; {self.gpu})"


def run_until(slide: Any, model: Any, options: RunOptions, deadline: float, on_gpu: bool,
              max_batches: int | None = None) -> Result:
    """One run of ``model`` (no cache), stopped at ``deadline`` (time.monotonic) or after
    ``max_batches`` batches."""
    run = HeatmapRun(slide, model, dataclasses.replace(options, use_cache=False))
    done = total = batches = 0
    with gpu_use(on_gpu) as use:
        t0 = time.perf_counter()
        for progress in run.run():
            done, total, batches = progress.done, progress.total, batches + 1
            if time.monotonic() > deadline or batches == max_batches:
                break
        seconds = time.perf_counter() - t0
    return Result(done, total, seconds, run.heatmap.values, use)


def difference(a: np.ndarray, b: np.ndarray) -> str:
    """'bit-identical' or the largest absolute difference between two heatmaps' computed cells."""
    both = ~(np.isnan(a) | np.isnan(b))
    if np.array_equal(a, b, equal_nan=True):
        return "values bit-identical"
    return f"values differ by {np.abs(a[both] - b[both]).max():.2g} at most"


def spread(values: np.ndarray) -> str:
    """How much a heatmap's first class varies (a model whose outputs are all one says so)."""
    v = values[..., 0][~np.isnan(values[..., 0])]
    return f"class 0 from {v.min():.3f} to {v.max():.3f}, sd {v.std():.3f}" if v.size else "empty"



class Bench:
    """The parts, sharing the slide, the models, the options, the clock and earlier results."""

    def __init__(self, sizes: Sizes, clock: Clock, on_gpu: bool, parts: set[int]):
        self.sizes, self.clock, self.on_gpu, self.parts = sizes, clock, on_gpu, parts
        self.reserve = BIG_PART_RESERVE_S if 4 in parts else 0.0
        self.options = RunOptions(level=sizes.level, size=PATCH_PX, stride=PATCH_PX,
                                  batch_size=sizes.batch, backend="tf")
        self.device_runs: dict[str, Result] = {}

    def deadline(self) -> float:
        return self.clock.deadline - self.reserve

    def time_left(self, part: str) -> bool:
        left = self.clock.left(self.reserve)
        if left <= 0:
            print(f"{part}: skipped, the time cap is reached", flush=True)
        return left > 0

    def timed(self, slide: Any, model: Any, **changes: Any) -> Result:
        """A warm-up of a few batches (tracing, the first batch), then the timed run."""
        options = dataclasses.replace(self.options, **changes)
        run_until(slide, model, options, self.deadline(), self.on_gpu, WARM_UP_BATCHES)
        return run_until(slide, model, options, self.deadline(), self.on_gpu)

    def device_run(self, slide: Any, name: str, model: Any) -> Result:
        """The end-to-end run on the device path (float32), run once and kept for later parts."""
        if name not in self.device_runs:
            self.device_runs[name] = self.timed(slide, model)
        return self.device_runs[name]

    def alone(self, model: Any) -> float:
        """Patches/s of ``model`` on ready host batches, MODEL_ALONE_BATCHES after a compile."""
        n = MODEL_ALONE_BATCHES * self.sizes.batch
        return n / model_only(model, n, (PATCH_PX, PATCH_PX, 3), self.sizes.batch)

    def part_models(self, slide: Any, models: dict[str, Any]) -> None:
        for name, model in models.items():
            if not self.time_left(f"1. {name}"):
                return
            e2e = self.device_run(slide, name, model)
            alone = self.alone(model)
            line = (f"1. {name}, level {self.sizes.level}: end to end {e2e.describe()}; model "
                    f"alone {alone:.0f} p/s; ratio {e2e.rate / alone:.2f}; {spread(e2e.values)}")
            if name == "dab":
                run = HeatmapRun(slide, model, dataclasses.replace(self.options, use_cache=False))
                line += f"; read+decode only {e2e.total / read_only(run):.0f} p/s"
            print(line, flush=True)

    def part_backends(self, slide: Any, models: dict[str, Any]) -> None:
        for name, model in models.items():
            if not self.time_left(f"2. {name}"):
                return
            device = self.device_run(slide, name, model)
            host = self.timed(slide, model, backend="numpy")
            print(f"2. {name}: device extraction (tf) {device.rate:.0f} p/s, host extraction "
                  f"(numpy) {host.describe()}; tf / numpy {device.rate / host.rate:.2f}; "
                  f"{difference(device.values, host.values)}", flush=True)

    def part_mixed(self, slide: Any, models: dict[str, Any]) -> None:
        for name, model in models.items():
            if name == "dab" or not self.time_left(f"3. {name}"):
                continue
            mixed = load_model(model.spec, mixed_precision=True)
            full = self.device_run(slide, name, model)
            half = self.timed(slide, mixed, mixed_precision=True)
            alone32, alone16 = self.alone(model), self.alone(mixed)
            print(f"3. {name}: mixed precision end to end {half.describe()}, float32 "
                  f"{full.rate:.0f} p/s, mixed / float32 {half.rate / full.rate:.2f}; model "
                  f"alone {alone16:.0f} / {alone32:.0f} p/s = {alone16 / alone32:.2f}; "
                  f"{difference(full.values, half.values)}", flush=True)

    def part_big(self, models: dict[str, Any]) -> None:
        self.reserve = 0.0
        if not self.time_left("4. big slide"):
            return
        px = self.sizes.big_px
        t0 = time.perf_counter()
        path = sample_slide_path(px)
        print(f"4. {px} x {px} slide ready in {time.perf_counter() - t0:.1f} s "
              f"({path.stat().st_size / 2**30:.2f} GiB, {path})", flush=True)
        options = dataclasses.replace(self.options, level=0,
                                      tissue_threshold=BIG_TISSUE_THRESHOLD)
        with open_slide(path) as s:
            names = [n for n in ("dab", "MobileNetV2") if n in models]
            for i, name in enumerate(names):
                left = self.clock.left()
                if left <= 0:
                    print(f"4. {name}: skipped, the time cap is reached", flush=True)
                    return
                share = left / (len(names) - i)  # the time left, shared by the runs to come
                t0 = time.perf_counter()
                r = run_until(s, models[name], options, time.monotonic() + share, self.on_gpu)
                print(f"4. {name} over {px} x {px}, tissue >= {BIG_TISSUE_THRESHOLD}: "
                      f"{r.describe()}; {time.perf_counter() - t0:.1f} s from the run's start "
                      f"(its tissue mask included)", flush=True)


def gpu_name() -> str | None:
    """The first GPU TensorFlow sees, by name (memory growth on), or None."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return str(tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller slides (10k, and 32k for 4)")
    ap.add_argument("--parts", default="1,2,3,4", help="comma-separated parts to run")
    ap.add_argument("--max-s", type=float, default=285.0, help="time cap in seconds (285)")
    ap.add_argument("--cpu-check", action="store_true",
                    help="run on a CPU at toy sizes, to check the script (figures meaningless)")
    args = ap.parse_args()
    clock = Clock(args.max_s)
    parts = {int(p) for p in args.parts.split(",")}
    import tensorflow as tf

    gpu = gpu_name()
    if gpu is None and not args.cpu_check:
        print(NEEDS_GPU, flush=True)
        return
    profile = "cpu-check" if args.cpu_check else "quick" if args.quick else "full"
    sizes = PROFILES[profile]
    print(f"TF {tf.__version__} on {gpu or 'the CPU'}, {os.cpu_count()} CPUs; profile {profile} "
          f"({sizes}); cap {args.max_s:.0f} s", flush=True)
    bench = Bench(sizes, clock, gpu is not None, parts)
    slide_path = sample_slide_path(sizes.slide_px)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        patches = sample_patches(slide_path, sizes.level)
        paths = {name: cnn_path(name, Path(tmp), patches) for name in CNNS}
        models = {"dab": load_model("dab"), **{n: load_model(p) for n, p in paths.items()}}
        print(f"models built, BatchNorm statistics set, loaded: {time.perf_counter() - t0:.1f} s",
              flush=True)
        with open_slide(slide_path) as slide:
            if 1 in parts:
                bench.part_models(slide, models)
            if 2 in parts:
                bench.part_backends(slide, models)
            if 3 in parts:
                bench.part_mixed(slide, models)
        if 4 in parts:
            bench.part_big(models)
    print(f"done in {args.max_s - clock.left():.0f} s of the {args.max_s:.0f} s cap", flush=True)


if __name__ == "__main__":
    main()
