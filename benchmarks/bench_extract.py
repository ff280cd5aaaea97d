"""Streaming patch extraction over one 16k x 16k uint8 RGB level, against two baselines.

For each (size, stride, rate): patches/s and output GB/s of the streaming extraction
(`iter_patch_batches`, TF and NumPy backends), over (a) NumPy's strided copy of the same patches
from the whole level at once (the memory-bandwidth floor) and (b) one whole-level
`tf.image.extract_patches` call; ratios > 1 mean faster than the baseline. Plus the peak RSS
rise of each. Run: `.venv/bin/python benchmarks/bench_extract.py [--px 16384] [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from _util import gib, measure

from napari_patchheat import PatchGrid
from napari_patchheat.extract import iter_patch_batches, numpy_extract_valid

BATCH = 64
CONFIGS = [(k, s, r) for k in (224, 299) for s in (128, k) for r in (1, 2)]


def tissue_like_level(px: int) -> np.ndarray:
    """A px x px uint8 RGB level: smooth pink texture (content does not change copy speed)."""
    rng = np.random.default_rng(0)
    small = rng.integers(120, 250, (px // 64 + 1, px // 64 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 64, 0), 64, 1)[:px, :px].copy()


def stream(level: np.ndarray, grid: PatchGrid, backend: str) -> int:
    n = 0
    for batch in iter_patch_batches(level, grid, BATCH, backend=backend):
        n += len(batch)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--px", type=int, default=16384, help="level height and width (default 16384)")
    ap.add_argument("--quick", action="store_true", help="only size 224, stride 128, rate 1 and 2")
    args = ap.parse_args()

    import tensorflow as tf

    level = tissue_like_level(args.px)
    print(f"level {level.shape} uint8 ({gib(level.nbytes)}), batch {BATCH}, "
          f"TF {tf.__version__} on {[d.device_type for d in tf.config.list_physical_devices()]}")
    configs = [(224, 128, 1), (224, 128, 2)] if args.quick else CONFIGS
    print("size stride rate  patches | stream-tf p/s GB/s | stream-np p/s GB/s | floor GB/s | "
          "whole-tf GB/s | np/floor tf/floor np/whole-tf tf/whole-tf | peak rise: np, tf, whole-tf")
    for k, s, r in configs:
        grid = PatchGrid(args.px, args.px, k, s, r)
        nbytes = grid.n_patches * k * k * 3
        tf.image.extract_patches(level[None, :1024, :1024], [1, k, k, 1], [1, s, s, 1],
                                 [1, r, r, 1], "VALID")  # warm-up
        with measure() as floor:
            out = numpy_extract_valid(level, grid)
        del out
        with measure() as snp:
            assert stream(level, grid, "numpy") == grid.n_patches
        with measure() as stf:
            assert stream(level, grid, "tf") == grid.n_patches
        with measure() as whole:
            out = tf.image.extract_patches(level[None], [1, k, k, 1], [1, s, s, 1], [1, r, r, 1],
                                           "VALID").numpy()
        del out
        gbs = lambda m, nbytes=nbytes: nbytes / m.seconds / 1e9  # noqa: E731
        print(f"{k:4d} {s:6d} {r:4d} {grid.n_patches:8d} | {grid.n_patches / stf.seconds:8.0f} "
              f"{gbs(stf):5.2f} | {grid.n_patches / snp.seconds:8.0f} {gbs(snp):5.2f} | "
              f"{gbs(floor):6.2f} | {gbs(whole):6.2f} | {floor.seconds / snp.seconds:5.2f} "
              f"{floor.seconds / stf.seconds:5.2f} {whole.seconds / snp.seconds:7.2f} "
              f"{whole.seconds / stf.seconds:7.2f} | {gib(snp.rss_rise)}, {gib(stf.rss_rise)}, "
              f"{gib(whole.rss_rise)}", flush=True)


if __name__ == "__main__":
    main()
