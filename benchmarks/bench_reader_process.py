"""A design probe for #25 item 1: the run's reading side in a process of its own.

The built-in `dab` over level 0 of the generated 16384 px slide (5,329 patches of 224 px,
batches of 64), one warm process, alternated, REPEATS of each:

- threads (the run today): ``HeatmapRun.run``, blocks decoded on ``--threads`` threads and
  their patches written into reused batch buffers on another, the model on this thread;
- process (the probe): the same reading code (``read_blocks``, ``write_batches``) in a spawned
  child, writing into batch buffers in shared memory, the model in this process.

Prints the best and the median seconds of each and checks that the values are equal (and vary).
Not the product's path: no focus, no cancel, no cache, whole level only.
Built into the run (a fork server's child per run, after the run's tuning) it took 1.05-1.07x
the threaded run's time: see docs/benchmarks.md, "The probe built into the run".
Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_reader_process.py [--threads 2]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from multiprocessing import shared_memory
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

PATCH, BATCH, BUFFERS, SLIDE_PX, REPEATS = 224, 64, 4, 16384, 6


def _reader(path: str, names: list[str], jobs: Any, free: Any, ready: Any,
            threads: int) -> None:
    """The child: for each job, read the level and write batches into the shared buffers
    (a buffer's number from ``free``; ``(number, count, indices)`` to ``ready``; None ends)."""
    from napari_patchheat import PatchGrid, open_slide
    from napari_patchheat.extract import read_blocks, write_batches
    from napari_patchheat.pipeline import LevelReader, Prefetch

    memory = [shared_memory.SharedMemory(name=n) for n in names]
    buffers = [np.ndarray((BATCH, PATCH, PATCH, 3), np.uint8, buffer=m.buf) for m in memory]
    number = {b.ctypes.data: i for i, b in enumerate(buffers)}

    class Shared:  # write_batches' BatchBuffers, backed by the shared buffers
        size = BATCH

        def take(self) -> np.ndarray:
            return buffers[free.get()]

    with open_slide(path) as slide:
        while jobs.get() is not None:
            level = slide.reader(0)
            grid = PatchGrid(level.shape[0], level.shape[1], PATCH, PATCH)
            reader = LevelReader(level, threads)
            blocks = Prefetch(read_blocks(reader, grid, backend="numpy"), 1, None)
            for batch in write_batches(iter(blocks), Shared()):  # type: ignore[arg-type]
                ready.put((number[batch.buffer.ctypes.data], len(batch), batch.indices))
            blocks.close()
            reader.close()
            ready.put(None)
    for m in memory:
        m.close()


def main() -> None:
    from napari_patchheat import load_model, open_slide
    from napari_patchheat.inference import HeatmapRun
    from napari_patchheat.options import RunOptions
    from napari_patchheat.samples import sample_slide_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="decoding threads, both ways")
    args = ap.parse_args()
    path, model = str(sample_slide_path(SLIDE_PX)), load_model("dab")
    options = RunOptions(size=PATCH, stride=PATCH, use_cache=False, batch_size=BATCH,
                         decode_threads=args.threads, tissue_threshold=0)
    ctx = mp.get_context("spawn")
    memory = [shared_memory.SharedMemory(create=True, size=BATCH * PATCH * PATCH * 3)
              for _ in range(BUFFERS)]
    buffers = [np.ndarray((BATCH, PATCH, PATCH, 3), np.uint8, buffer=m.buf) for m in memory]
    jobs, free, ready = ctx.Queue(), ctx.Queue(), ctx.Queue()
    for i in range(BUFFERS):  # they circulate between the processes across runs
        free.put(i)
    child = ctx.Process(target=_reader, args=(path, [m.name for m in memory], jobs, free,
                                              ready, args.threads))
    child.start()

    def in_process(shape: tuple[int, int]) -> np.ndarray:
        values = np.full(shape, np.nan, np.float32)
        jobs.put(True)
        while (item := ready.get()) is not None:
            i, count, indices = item
            values[indices[:, 0], indices[:, 1]] = model.predict(buffers[i])[:count, 0]
            free.put(i)
        return values

    def in_threads(slide: Any) -> np.ndarray:
        run = HeatmapRun(slide, model, options)
        for _ in run.run():
            pass
        return run.heatmap.values[..., 0]

    seconds: dict[str, list[float]] = {"threads": [], "process": []}
    try:
        with open_slide(path) as slide:
            want = in_threads(slide)  # warm-ups: traced and compiled, the child's imports done
            assert np.nanstd(want) > 0 and np.array_equal(in_process(want.shape), want)
            for _ in range(REPEATS):
                for name, fn in (("threads", lambda: in_threads(slide)),
                                 ("process", lambda: in_process(want.shape))):
                    t0 = time.perf_counter()
                    got = fn()
                    seconds[name].append(time.perf_counter() - t0)
                    assert np.array_equal(got, want, equal_nan=True), name
    finally:
        jobs.put(None)
        child.join(10)
        for m in memory:
            m.close()
            m.unlink()
    print(f"`dab`, {want.size} patches, {args.threads} decode threads, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; values equal", flush=True)
    for name, s in seconds.items():
        print(f"{name}: best {min(s):.3f} s, median {np.median(s):.3f} s "
              f"({', '.join(f'{x:.2f}' for x in s)})")
    ratio = np.median(np.array(seconds["process"]) / np.array(seconds["threads"]))
    print(f"process / threads: best {min(seconds['process']) / min(seconds['threads']):.2f}, "
          f"median of pairs {ratio:.2f}")


if __name__ == "__main__":
    main()
