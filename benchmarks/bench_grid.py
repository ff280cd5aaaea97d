"""PatchGrid on a grid of about 10^6 patches: every query, in ms (median of 7).

The baseline is a plain NumPy pass over the same number of values (``np.arange(n) * 2``), so the
ratio says how many such passes each query costs. Run: `.venv/bin/python benchmarks/bench_grid.py`.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from _util import median_ms

from napari_patchheat import PatchGrid


def main() -> None:
    grid = PatchGrid(128_100, 128_100, 224, 128, rate=2, padding="SAME")
    n = grid.n_patches
    rr, cc = np.meshgrid(np.arange(grid.rows), np.arange(grid.cols), indexing="ij")
    image = np.zeros((2000, 2000, 3), np.uint8)
    small = PatchGrid(2000, 2000, 224, 128, rate=2, padding="SAME")
    base = median_ms(lambda: np.arange(n) * 2)
    queries = {
        "construct + rows/cols/pads":
            lambda: PatchGrid(128_100, 128_100, 224, 128, 2, "SAME").pad_before,
        "boxes of every patch (level-0, d=4)": lambda: grid.boxes(rr, cc, downsample=4.0),
        "centres of every patch": lambda: grid.centers(rr, cc, downsample=4.0),
        "patches in a 5000 x 9000 px view": lambda: grid.patches_in(1e5, 2e5, 1.05e5, 2.09e5, 4.0),
        "placement": lambda: grid.placement(4.0),
        "read one patch (numpy, rate 2)": lambda: small.read_patch(image, 3, 4),
        "blocks of 2048 px": lambda: grid.blocks(2048),
    }
    print(f"grid {grid.rows} x {grid.cols} = {n:,} patches; "
          f"baseline np.arange(n) * 2: {base:.2f} ms")
    for name, fn in queries.items():
        ms = median_ms(fn)
        print(f"{name:38s} {ms:9.3f} ms  ({ms / base:6.2f} x baseline)")


if __name__ == "__main__":
    main()
