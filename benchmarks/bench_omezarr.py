"""Benchmark: OME-Zarr slides read through ``open_slide`` against zarr itself, and the heatmap
OME-Zarr export against the OME-TIFF one, in the same run.

    .venv/bin/python benchmarks/bench_omezarr.py [--size 16384] [--out bench-out]

Writes an OME-Zarr (NGFF 0.5, chunks of 256 px, 3 levels) of ``--size`` px a side tiled from
real pixels (the CMU SVS, else scikit-image's IHC image), then prints: the time to open it;
256 px view regions (what napari asks for) and 2048 px regions (an extraction block) read
through ``Slide.levels`` against zarr reading the same region itself (channels stacked last);
and writing / reading a 2500 x 1875 cell heatmap as OME-Zarr against OME-TIFF.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _util import median_ms  # noqa: E402

from napari_patchheat import export  # noqa: E402
from napari_patchheat.grid import PatchGrid  # noqa: E402
from napari_patchheat.heatmap import Heatmap  # noqa: E402
from napari_patchheat.slide import open_slide  # noqa: E402

REAL_SVS = ROOT.parent / "shared" / "data" / "real" / "CMU-1-Small-Region.svs"
CHUNK_PX = 256


def real_tile() -> np.ndarray:
    """Real H&E (the CMU SVS) or IHC pixels, Y X 3 uint8."""
    if REAL_SVS.is_file():
        import tifffile

        return tifffile.imread(REAL_SVS)
    from skimage.data import immunohistochemistry

    return immunohistochemistry()


def write_slide(path: Path, size: int) -> None:
    """An OME-Zarr of ``size`` x ``size`` px tiled from real pixels, 3 levels 2x apart."""
    import zarr
    from ome_zarr.writer import write_multiscale

    tile = real_tile()
    image = np.tile(tile, (-(-size // tile.shape[0]), -(-size // tile.shape[1]), 1))[:size, :size]
    levels = [np.moveaxis(image, -1, 0)]
    for _ in range(2):
        levels.append(levels[-1][:, ::2, ::2].copy())
    group = zarr.open_group(path, mode="w", zarr_format=3)
    write_multiscale(levels, group, axes="cyx", scale={"y": 0.5, "x": 0.5},
                     axes_units={"y": "micrometer", "x": "micrometer"},
                     storage_options={"chunks": (3, CHUNK_PX, CHUNK_PX)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import zarr

    path = args.out / f"bench-{args.size}.zarr"
    if not path.exists():
        t0 = time.perf_counter()
        write_slide(path, args.size)
        print(f"wrote {path}: {time.perf_counter() - t0:.1f} s")
    print(f"open_slide: {median_ms(lambda: open_slide(path)):.1f} ms")
    slide = open_slide(path)
    array = zarr.open_group(path, mode="r")["s0"]
    rng = np.random.default_rng(0)
    for side in (256, 2048):
        corners = rng.integers(0, args.size - side, (8, 2))

        def ours(side: int = side, corners: np.ndarray = corners) -> None:
            for y, x in corners:
                slide.levels[0][y:y + side, x:x + side].compute()

        def direct(side: int = side, corners: np.ndarray = corners) -> None:
            for y, x in corners:
                np.stack(list(array[:, y:y + side, x:x + side]), axis=-1)

        a, b = median_ms(ours, 9) / len(corners), median_ms(direct, 9) / len(corners)
        print(f"{side} px regions: Slide.levels {a:.1f} ms, zarr itself {b:.1f} ms "
              f"(ratio {a / b:.2f})")

    grid = PatchGrid(40000, 30000, 16, 16)
    values = np.random.default_rng(1).random((*grid.shape, 2), np.float32)
    values[values[..., 0] < 0.3] = np.nan
    heatmap = Heatmap(values, grid, 0, (1.0, 1.0), ("a", "b"), mpp=(0.25, 0.25))
    times = {}
    for fmt, write, read, suffix in (
            ("ometiff", export.write_ome_tiff, export.read_ome_tiff, ".ome.tif"),
            ("omezarr", export.write_ome_zarr, export.read_ome_zarr, ".ome.zarr")):
        target = args.out / f"bench-heatmap{suffix}"
        times[fmt] = (median_ms(lambda w=write, t=target: w(heatmap, t), 3),
                      median_ms(lambda r=read, t=target: r(t), 3))
    (wt, rt), (wz, rz) = times["ometiff"], times["omezarr"]
    print(f"heatmap {grid.rows} x {grid.cols} x 2: OME-Zarr write {wz:.0f} ms, read {rz:.0f} ms;"
          f" OME-TIFF write {wt:.0f} ms, read {rt:.0f} ms (ratios {wz / wt:.2f}, "
          f"{rz / rt:.2f})")
    shutil.rmtree(args.out / "bench-heatmap.ome.zarr", ignore_errors=True)


if __name__ == "__main__":
    main()
