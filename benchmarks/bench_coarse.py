"""Zoomed-out views of a dense single-level TIFF: built once (slide/coarse.py) against the lazy
computed levels (the baseline: what every zoomed-out view did before), in the same run.

1. Core: the thumbnail from the lazy levels (decodes the whole image) against the build (one
   pass: seconds, level-0 MB/s, peak RSS rise) and the thumbnail from the built file.
2. napari: ``viewer.open``'s time, then the longest time the GUI event loop is blocked (a
   QTimer probe ticking every PROBE_MS) from a zoomed-out view until it shows real pixels:
   with the lazy levels (baseline) and with the build on a worker thread.

The image is generated (JPEG tiles of noisy stripes, 64 of them repeated) in a temporary
folder and deleted; ``COARSE_BUILD_MIN_PX`` is lowered so that it counts as huge.
Run under Xvfb (started through pyvirtualdisplay when there is no $DISPLAY):
`PYTHONPATH=src .venv/bin/python benchmarks/bench_coarse.py [--px 16000] [--core]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np
from _util import encoded_tiles, measure
from bench_widget import ensure_display

TILE_PX = 512
DISTINCT_TILES = 64  # tiles encoded; the image repeats them
PROBE_MS = 10


def write_image(path: Path, px: int) -> None:
    """A px x px RGB TIFF of JPEG tiles (stripes plus noise). Up to DISTINCT_TILES tiles are
    encoded; the file repeats their bytes (every tile stored, so it is dense, and written fast:
    a 100,000 px one is ~40k tiles)."""
    import tifffile

    rng = np.random.default_rng(0)
    base = (np.arange(TILE_PX)[:, None, None] * np.array([1, 2, 3]) % 256).astype(np.uint8)
    count = (-(-px // TILE_PX)) ** 2
    distinct = min(count, DISTINCT_TILES)
    options = dict(dtype=np.uint8, tile=(TILE_PX, TILE_PX), photometric="rgb",
                   compression="jpeg")
    strip = np.concatenate([base + rng.integers(0, 24, (TILE_PX, TILE_PX, 3), np.uint8)
                            for _ in range(distinct)], 1)
    encoded = encoded_tiles(strip, path.parent, **options)
    tifffile.imwrite(path, (encoded[i % distinct] for i in range(count)), shape=(px, px, 3),
                     bigtiff=True, **options)


def core(path: Path) -> None:
    from napari_patchheat.slide import coarse, open_slide

    with open_slide(path) as s, measure() as lazy:
        s.thumbnail()
    with open_slide(path) as s, measure() as build:
        coarse.build_coarse_levels(s)
    with open_slide(path) as s, measure() as after:
        assert s.coarse_path is not None
        s.thumbnail()
    mb = os.path.getsize(coarse.coarse_file(path)) / 2**20
    px = s.shape[0] * s.shape[1]
    print(f"thumbnail, lazy levels (baseline): {lazy.seconds:7.2f} s, "
          f"RSS +{lazy.rss_rise / 2**20:.0f} MB")
    print(f"build (one pass)                 : {build.seconds:7.2f} s, "
          f"{px * 3 / 2**20 / build.seconds:.0f} MB/s of level-0 RGB, "
          f"RSS +{build.rss_rise / 2**20:.0f} MB, file {mb:.0f} MB "
          f"({build.seconds / lazy.seconds:.2f} x the lazy thumbnail)")
    print(f"thumbnail, built levels          : {after.seconds:7.2f} s "
          f"({lazy.seconds / after.seconds:.0f} x faster than the baseline)")
    os.remove(coarse.coarse_file(path))


def gui(path: Path, build: bool) -> tuple[float, float, float]:
    """(seconds of ``viewer.open``, longest event-loop block after it, seconds to real
    zoomed-out pixels on screen) of opening ``path`` in napari and showing it whole; ``build``
    False: the lazy levels (the baseline)."""
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_patchheat._qt import coarse_build

    viewer = napari.Viewer(show=True)
    QApplication.processEvents()
    original = coarse_build.start_build
    if not build:
        coarse_build.start_build = lambda slide: False
    try:
        start = time.monotonic()
        [layer] = viewer.open(str(path), plugin="napari-patchheat")
        opened = time.monotonic() - start
        ticks = [time.monotonic()]
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.monotonic()))
        timer.start(PROBE_MS)
        viewer.reset_view()
        QApplication.processEvents()
        while coarse_build.is_pending(layer) or coarse_build.running_builds():
            QApplication.processEvents()
            time.sleep(0.005)
        viewer.reset_view()  # the built levels on screen
        QApplication.processEvents()
        ticks.append(time.monotonic())
        timer.stop()
    finally:
        coarse_build.start_build = original
    done = time.monotonic() - start
    viewer.close()
    return opened, float(np.diff(ticks).max()), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--px", type=int, default=16_000, help="image side (px)")
    parser.add_argument("--core", action="store_true", help="skip napari (part 2)")
    args = parser.parse_args()
    display = ensure_display()  # noqa: F841 (kept alive)
    from napari_patchheat.slide import coarse

    coarse.COARSE_BUILD_MIN_PX = 2**20
    with tempfile.TemporaryDirectory() as folder:
        os.environ["PATCHHEAT_CACHE_DIR"] = str(Path(folder) / "cache")
        path = Path(folder) / "dense.tif"
        write_image(path, args.px)
        print(f"{args.px:,} x {args.px:,} px dense single-level TIFF, "
              f"{path.stat().st_size / 2**20:.0f} MB of JPEG tiles, {os.cpu_count()} CPUs")
        core(path)
        for name, build in () if args.core else (("lazy levels (baseline)  ", False),
                                                  ("build on a worker thread", True)):
            opened, block, done = gui(path, build)
            print(f"napari, {name}: viewer.open {opened:.2f} s, then GUI blocked up to "
                  f"{block:.2f} s, zoomed-out view after {done:.1f} s")

if __name__ == "__main__":
    main()
