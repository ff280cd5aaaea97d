"""Benchmark: opening and reading a 100k x 100k slide, against tifffile in the same run.

    .venv/bin/python benchmarks/bench_read.py [--size 100000] [--cache bench-out] [--repeat 5]

Prints: the time to write the generated slide (first run only; then it is reused from the
cache), to open it, and to get the first screenful (the whole level that fits 1920 x 1080);
level-0 region reads in MPix/s through ``Slide.levels`` (dask) against tifffile decoding the
same tiles itself (same threads), and against tifffile's zarr store; the same on the real
CMU SVS when ../shared/data/real is there, the SVS through the OpenSlide backend against
the tifffile backend and its DICOM conversion through wsidicom against OpenSlide
(``--backends-only`` runs just these); peak memory (tracemalloc, RSS). Then the remote
case: the same regions of the same file served over HTTP with range requests
(tests/remote_servers.py) that each wait ``--remote-latency-ms`` (a distant object store),
read through fsspec's block cache, in MPix/s against the local file in the same run, with the
requests per tile and the bytes fetched per byte of tiles. ``--remote-only`` runs just that.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_patchheat.samples import sample_slide_path  # noqa: E402
from napari_patchheat.slide import open_slide  # noqa: E402

SCREEN_PX = (1080, 1920)  # (height, width)
REGION_PX = 2048  # level-0 region side (the extraction's read block)
REAL_SVS = ROOT.parent / "shared" / "data" / "real" / "CMU-1-Small-Region.svs"
REAL_DICOM = REAL_SVS.with_name("CMU-1-Small-Region-dicom")  # its DICOM WSI conversion


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Shortest wall time of ``repeat`` calls (seconds), and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def tifffile_decode(path: Path, regions: list[tuple[int, int, int, int]],
                    threads: int) -> list[np.ndarray]:
    """Level-0 regions decoded by tifffile itself: its tile reads and decoder, ``threads`` wide."""
    import tifffile

    out = []
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].levels[0].keyframe
        fh = tif.filehandle
        th, tw = page.tilelength, page.tilewidth
        across = -(-page.imagewidth // tw)
        args = {"jpegtables": page.jpegtables} if page.jpegtables is not None else {}
        with ThreadPoolExecutor(threads) as pool:
            for y0, x0, y1, x1 in regions:
                region = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
                index = [ty * across + tx for ty in range(y0 // th, (y1 - 1) // th + 1)
                         for tx in range(x0 // tw, (x1 - 1) // tw + 1)]  # fmt: skip
                segments = list(fh.read_segments(
                    [page.dataoffsets[i] for i in index], [page.databytecounts[i] for i in index],
                    index, sort=True,
                ))  # fmt: skip

                def place(segment: tuple[bytes, int], region: np.ndarray = region,
                          y0: int = y0, x0: int = x0, y1: int = y1,
                          x1: int = x1) -> None:
                    data, i = segment
                    tile = page.decode(data, i, **args)[0][0]
                    ty, tx = divmod(i, across)
                    ya, yb = max(y0, ty * th), min(y1, ty * th + th)
                    xa, xb = max(x0, tx * tw), min(x1, tx * tw + tw)
                    region[ya - y0 : yb - y0, xa - x0 : xb - x0] = tile[
                        ya - ty * th : yb - ty * th, xa - tx * tw : xb - tx * tw
                    ]

                list(pool.map(place, segments))
                out.append(region)
    return out


def tifffile_zarr(path: Path, regions: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """The same regions through tifffile's zarr store (a route slide/ does not take)."""
    import tifffile
    import zarr

    with tifffile.TiffFile(path) as tif:
        z = zarr.open(tif.series[0].aszarr(level=0), mode="r")
        return [np.asarray(z[y0:y1, x0:x1]) for y0, x0, y1, x1 in regions]


def tissue_regions(slide: Any, n: int, size: tuple[int, int],
                   seed: int = 0) -> list[tuple[int, int, int, int]]:
    """``n`` level-0 regions (y0, x0, y1, x1) of ``size`` (h, w), tile-unaligned, on tissue."""
    top = np.asarray(slide.levels[-1])
    tissue = np.argwhere(np.abs(top.astype(int) - 240).sum(axis=2) > 40)
    dy, dx = slide.downsamples[-1]
    (h, w), (rh, rw) = slide.shape, size
    rng = np.random.default_rng(seed)
    out = []
    for cy, cx in tissue[rng.choice(len(tissue), n, replace=False)]:
        y0 = int(min(max(cy * dy - rh / 2, 0) + 7, h - rh))
        x0 = int(min(max(cx * dx - rw / 2, 0) + 5, w - rw))
        out.append((y0, x0, y0 + rh, x0 + rw))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="slide side, px (level 0)")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-out",
                        help="where the slide is kept")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--regions", type=int, default=8, help="level-0 regions per read pass")
    parser.add_argument("--remote-latency-ms", type=float, default=20.0,
                        help="the HTTP server's wait per request in the remote case")
    parser.add_argument("--remote-only", action="store_true",
                        help="only the remote case (and the slide it reads)")
    parser.add_argument("--backends-only", action="store_true",
                        help="only the real slides through two backends each")
    args = parser.parse_args(argv)
    threads = os.cpu_count() or 1
    if args.backends_only:
        real_backends(args.repeat)
        return 0
    print(f"bench_read: {args.size} x {args.size} px slide, {threads} CPU threads, "
          f"Python {sys.version.split()[0]}")  # fmt: skip

    cached = (args.cache / f"patchheat-sample-{args.size}x{args.size}-v1.ome.tif").is_file()
    t0 = time.perf_counter()
    path = sample_slide_path(args.size, cache_dir=args.cache)
    size_gb = path.stat().st_size / 1e9
    if cached:
        print(f"  generated slide (from the cache) {path} ({size_gb:.2f} GB)")
    else:
        print(f"  write the generated slide        {time.perf_counter() - t0:8.1f} s  "
              f"({size_gb:.2f} GB)")

    if args.remote_only:
        with open_slide(path) as slide:
            regions = tissue_regions(slide, args.regions, (REGION_PX, REGION_PX))
            tile = slide.tile_shapes[0]
        remote_case(path, regions, tile, args.repeat, args.remote_latency_ms)
        return 0
    t_open, slide = best_of(lambda: open_slide(path), args.repeat)
    screen_level = next(
        (k for k, lv in enumerate(slide.levels)
         if lv.shape[0] <= SCREEN_PX[0] and lv.shape[1] <= SCREEN_PX[1]),
        len(slide.levels) - 1,
    )

    def first_screen() -> np.ndarray:
        with open_slide(path) as s:
            return np.asarray(s.levels[screen_level])

    t_first, screen = best_of(first_screen, args.repeat)
    print(f"  open_slide                       {t_open * 1e3:8.1f} ms  "
          f"({len(slide.levels)} levels)")
    print(f"  open + first screenful           {t_first * 1e3:8.1f} ms  (level {screen_level}, "
          f"{screen.shape[1]} x {screen.shape[0]} px)")  # fmt: skip
    [(y0, x0, y1, x1)] = tissue_regions(slide, 1, SCREEN_PX)
    t_view, _ = best_of(lambda: np.asarray(slide.levels[0][y0:y1, x0:x1]), args.repeat)
    print(f"  a level-0 screenful (on tissue)  {t_view * 1e3:8.1f} ms")

    regions = tissue_regions(slide, args.regions, (REGION_PX, REGION_PX))
    mpix = sum((y1 - y0) * (x1 - x0) for y0, x0, y1, x1 in regions) / 1e6
    t_ours, ours = best_of(
        lambda: [np.asarray(slide.levels[0][a:c, b:d]) for a, b, c, d in regions], args.repeat
    )
    t_tiff, theirs = best_of(lambda: tifffile_decode(path, regions, threads), args.repeat)
    t_zarr, zarred = best_of(lambda: tifffile_zarr(path, regions), args.repeat)
    for a, b, c in zip(ours, theirs, zarred):
        assert np.array_equal(a, b) and np.array_equal(a, c), "readers disagree"
    del ours, theirs, zarred
    slide.close()
    print(f"  level-0 regions {REGION_PX} px, {args.regions} on tissue:")
    print(f"    Slide.levels[0] (dask)         {mpix / t_ours:8.1f} MPix/s")
    print(f"    tifffile decoding the tiles    {mpix / t_tiff:8.1f} MPix/s   ratio ours/tifffile "
          f"{t_tiff / t_ours:.2f}")  # fmt: skip
    print(f"    tifffile zarr store            {mpix / t_zarr:8.1f} MPix/s   ratio ours/zarr "
          f"{t_zarr / t_ours:.2f}")  # fmt: skip

    tracemalloc.start()  # memory, apart from the timings (tracemalloc slows allocation)
    with open_slide(path) as s:
        np.asarray(s.levels[screen_level])
        y0, x0, y1, x1 = regions[0]
        region = np.asarray(s.levels[0][y0:y1, x0:x1])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pixels = args.size * args.size * 3
    print(f"  peak memory: open, first screenful, one {REGION_PX} px region "
          f"({region.nbytes / 2**20:.0f} MiB): {peak / 2**20:.1f} MiB (tracemalloc); "
          f"the slide's pixels: {pixels / 2**30:.0f} GiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"  peak RSS of the whole benchmark  {rss:8.1f} MiB  "
          "(Python, numpy, dask, tifffile included)")

    if REAL_SVS.is_file():
        import tifffile

        with open_slide(REAL_SVS) as s:
            t_ours, a = best_of(lambda: np.asarray(s.levels[0]), args.repeat)
        t_tiff, b = best_of(lambda: tifffile.imread(REAL_SVS), args.repeat)
        assert np.array_equal(a, b)
        mpix = a.shape[0] * a.shape[1] / 1e6
        print(f"  real CMU SVS, whole level 0 (240 px JPEG tiles): ours {mpix / t_ours:.1f} "
              f"MPix/s, tifffile.imread {mpix / t_tiff:.1f} MPix/s, "
              f"ratio ours/tifffile {t_tiff / t_ours:.2f}")
        real_backends(args.repeat)
    remote_case(path, regions, slide.tile_shapes[0], args.repeat, args.remote_latency_ms)
    return 0


def backends_compared(path: Path, base: str, other: str, what: str, repeat: int) -> None:
    """``path`` through backends ``base`` and ``other``, same run: the whole level 0 and 16
    tile-unaligned 512 px regions (one dask graph each, as napari reads); equal pixels."""
    times: dict[str, Any] = {}
    regions: list[tuple[int, int]] = []
    for backend in (base, other):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OpenSlide's levels left out (DICOM)
            slide = open_slide(path, backend=backend)
        with slide:
            level = slide.levels[0]
            if not regions:
                h, w = level.shape[:2]
                rng = np.random.default_rng(0)
                regions = [(int(y), int(x)) for y, x in zip(rng.integers(0, h - 512, 16),
                                                            rng.integers(0, w - 512, 16))]
            t_whole, whole = best_of(lambda level=level: np.asarray(level), repeat)
            t_regions, parts = best_of(
                lambda level=level, regions=regions: [
                    np.asarray(level[y:y + 512, x:x + 512]) for y, x in regions],
                repeat)
        times[backend] = (t_whole, t_regions, whole, parts)
    (tw, tr, a, pa), (ow, orr, b, pb) = times[base], times[other]
    assert np.array_equal(a, b) and all(np.array_equal(x, y) for x, y in zip(pa, pb))
    mpix, rpix = a.shape[0] * a.shape[1] / 1e6, 16 * 512 * 512 / 1e6
    print(f"  {what}, backend {other!r} vs {base!r} (same pixels): whole level 0 "
          f"{mpix / ow:.1f} vs {mpix / tw:.1f} MPix/s ({ow * 1e3:.0f} vs {tw * 1e3:.0f} ms), "
          f"ratio {other}/{base} {tw / ow:.2f}; 16 regions of 512 px {rpix / orr:.1f} vs "
          f"{rpix / tr:.1f} MPix/s, ratio {tr / orr:.2f}")


def real_backends(repeat: int) -> None:
    """The real slides through two backends each: the SVS (OpenSlide vs tifffile), its DICOM
    conversion (wsidicom vs OpenSlide)."""
    backends_compared(REAL_SVS, "tifffile", "openslide", "real CMU SVS", repeat)
    if REAL_DICOM.is_dir():
        backends_compared(REAL_DICOM, "openslide", "dicom", "real CMU DICOM folder", repeat)


def remote_case(path: Path, regions: list[tuple[int, int, int, int]], tile: tuple[int, int],
                repeat: int, latency_ms: float) -> None:
    """The level-0 ``regions`` of ``path`` over HTTP (each request waiting ``latency_ms``)
    against the local file, each pass from a fresh open (an empty block cache): MPix/s, the
    ratio, requests per tile read, bytes fetched per byte of the tiles' data."""
    sys.path.insert(0, str(ROOT / "tests"))
    from remote_servers import RangeServer

    from napari_patchheat.slide.remote import REMOTE_BLOCK_BYTES, REMOTE_CACHE_BLOCKS

    def tiles_of(y0: int, x0: int, y1: int, x1: int) -> list[tuple[int, int]]:
        return [(ty, tx) for ty in range(y0 // tile[0], (y1 - 1) // tile[0] + 1)
                for tx in range(x0 // tile[1], (x1 - 1) // tile[1] + 1)]

    touched = sorted({t for r in regions for t in tiles_of(*r)})
    mpix = sum((y1 - y0) * (x1 - x0) for y0, x0, y1, x1 in regions) / 1e6
    with RangeServer(path.parent, latency_s=latency_ms / 1e3) as server:
        url = server.url(path.name)
        counts: list[tuple[int, int, int]] = []  # requests, bytes fetched, bytes of the tiles

        def read(source: str | Path) -> list[np.ndarray]:
            with open_slide(source) as s:
                before = (server.requests, server.bytes_sent)
                out = [np.asarray(s.levels[0][a:c, b:d]) for a, b, c, d in regions]
                level = s.tile_readers[0]
                tile_bytes = sum(int(level.pages[0].databytecounts[ty * level.across + tx])
                                 for ty, tx in touched)
                counts.append((server.requests - before[0], server.bytes_sent - before[1],
                               tile_bytes))
            return out

        t_open, s = best_of(lambda: open_slide(url), repeat)
        s.close()
        t_local, local = best_of(lambda: read(path), repeat)
        t_remote, remote = best_of(lambda: read(url), repeat)
        for a, b in zip(local, remote):
            assert np.array_equal(a, b), "remote and local reads disagree"
    requests, fetched, tile_bytes = counts[-1]
    print(f"  remote: the same {len(regions)} regions over HTTP, {latency_ms:g} ms per request, "
          f"block cache {REMOTE_CACHE_BLOCKS} x {REMOTE_BLOCK_BYTES / 2**20:g} MiB, read-ahead:")
    print(f"    open_slide over HTTP           {t_open * 1e3:8.1f} ms")
    print(f"    local file (fresh open)        {mpix / t_local:8.1f} MPix/s")
    print(f"    HTTP (fresh open)              {mpix / t_remote:8.1f} MPix/s   ratio "
          f"remote/local {t_local / t_remote:.2f}")
    print(f"    {requests} requests for {len(touched)} tiles: {requests / len(touched):.3f} "
          f"requests per tile; {fetched / 2**20:.1f} MiB fetched for {tile_bytes / 2**20:.1f} MiB "
          f"of tiles ({fetched / max(tile_bytes, 1):.2f}x)")
    remote_run_pass(path, latency_ms)


def remote_run_pass(path: Path, latency_ms: float) -> None:
    """The whole level 0 read as a run reads it (blocks of READ_BLOCK_PX, row after row,
    through the level's reader), from the local file and over HTTP: MPix/s, requests per tile,
    bytes fetched per byte of the level's tiles (1.0: each tile fetched once)."""
    from remote_servers import RangeServer

    from napari_patchheat.grid import READ_BLOCK_PX

    def run_pass(source: str | Path) -> tuple[float, int, int]:
        with open_slide(source) as s:
            level = s.reader(0)
            h, w = level.shape[:2]
            t0 = time.perf_counter()
            for y in range(0, h, READ_BLOCK_PX):
                for x in range(0, w, READ_BLOCK_PX):
                    level[y:y + READ_BLOCK_PX, x:x + READ_BLOCK_PX]
            page = level.pages[0]
            return time.perf_counter() - t0, len(page.databytecounts), sum(page.databytecounts)

    with RangeServer(path.parent, latency_s=latency_ms / 1e3) as server:
        t_local, tiles, level_bytes = run_pass(path)
        before = (server.requests, server.bytes_sent)
        t_remote, _, _ = run_pass(server.url(path.name))
        requests, fetched = server.requests - before[0], server.bytes_sent - before[1]
    with open_slide(path) as s:
        mpix = s.shape[0] * s.shape[1] / 1e6
    print(f"  remote: a run's pass over level 0 ({mpix:.0f} MPix, {tiles} tiles, blocks of "
          f"{READ_BLOCK_PX} px, one thread):")
    print(f"    local file {mpix / t_local:.1f} MPix/s, HTTP {mpix / t_remote:.1f} MPix/s, ratio "
          f"remote/local {t_local / t_remote:.2f}; {requests} requests "
          f"({requests / tiles:.3f} per tile), {fetched / 2**20:.1f} MiB fetched for "
          f"{level_bytes / 2**20:.1f} MiB of tiles ({fetched / level_bytes:.2f}x)")


if __name__ == "__main__":
    raise SystemExit(main())
