"""What a view costs a cheap model: `dab` over the CMU SVS with a focus (focus.py: the dock's
"view first" order, small blocks until the run's pace is known) against reading order, in one
process, median of alternating runs; the values must be identical.

Run: `.venv/bin/python benchmarks/bench_focus.py [--size 32] [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from napari_patchheat.focus import ViewFocus
from napari_patchheat.inference import HeatmapRun
from napari_patchheat.options import RunOptions

SVS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "CMU-1-Small-Region.svs"
VIEW = (1000.0, 800.0, 1400.0, 1300.0)  # level pixels: a view inside the slide


def timed(options: RunOptions, focus: ViewFocus | None) -> tuple[float, int, np.ndarray]:
    """Seconds of one run, its patches, its values."""
    run = HeatmapRun(SVS, "dab", options)
    t0 = time.perf_counter()
    n = sum(len(p.indices) for p in run.run(focus=focus))
    return time.perf_counter() - t0, n, run.heatmap.values


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32, help="patch size and stride (px)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if not SVS.exists():
        print(f"needs {SVS}")
        return 0
    options = RunOptions(size=args.size, stride=args.size, tissue_threshold=0, use_cache=False,
                         batch_size=64)
    timed(options, None)  # the model's first batch compiles
    times: dict[str, list[float]] = {"reading order": [], "view first": []}
    values = {}
    for _ in range(args.repeats):
        for name in times:
            seconds, n, values[name] = timed(options, None if name == "reading order"
                                             else ViewFocus(VIEW))
            times[name].append(seconds)
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name}: {n} patches, median {med:.3f} s ({n / med:,.0f} patches/s)")
    ratio = statistics.median(times["view first"]) / statistics.median(times["reading order"])
    same = np.array_equal(values["view first"], values["reading order"], equal_nan=True)
    print(f"summary: view first / reading order time {ratio:.2f}x; values identical: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
