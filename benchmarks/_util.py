"""Shared benchmark helpers: wall time and peak resident memory of a piece of work.

Benchmarks print ratios against a baseline measured in the same run, because the machines are
noisy; absolute numbers are printed for context only.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RSS_SAMPLE_S = 0.005
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def median_ms(fn: Callable[[], object], repeats: int = 7) -> float:
    """Median wall time of ``repeats`` calls of ``fn``, ms."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def encoded_tiles(strip: Any, folder: Path, **options: Any) -> list[bytes]:
    """The encoded bytes of each tile of ``strip`` (one row of tiles, H x (n H) x C) written by
    tifffile with ``options`` (tile, compression, ...): a file of any size can then repeat
    them, every tile stored, written as fast as the disk takes it."""
    import tifffile

    sample = folder / "encoded-tiles.tif"
    tifffile.imwrite(sample, strip, **options)
    try:
        with tifffile.TiffFile(sample) as tif:
            page, fh = tif.pages[0], tif.filehandle
            encoded = []
            for offset, length in zip(page.dataoffsets, page.databytecounts):
                fh.seek(offset)
                encoded.append(fh.read(length))
    finally:
        sample.unlink()
    return encoded


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_BYTES


@dataclass
class Measure:
    """Filled by :func:`measure`: seconds, peak RSS and its rise over the start, in bytes."""

    seconds: float = 0.0
    peak_rss: int = 0
    rss_rise: int = 0


@contextmanager
def measure() -> Iterator[Measure]:
    """Time the block and sample RSS every few ms (catches TensorFlow's allocations too)."""
    m = Measure()
    start_rss = rss_bytes()
    peak = [start_rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            stop.wait(RSS_SAMPLE_S)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - t0
        stop.set()
        t.join()
        m.peak_rss = max(peak[0], rss_bytes())
        m.rss_rise = m.peak_rss - start_rss


def gib(n: float) -> str:
    """Bytes as GiB with two decimals."""
    return f"{n / 2**30:.2f} GiB"
