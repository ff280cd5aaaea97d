"""open_slide: which reader a file goes to, and files that are no slide at all."""

from __future__ import annotations

import threading

import numpy as np
from slide_checks import expect_error

from napari_patchheat.slide import open_slide


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope.svs", "no such file")


def test_directory(tmp_path):
    expect_error(tmp_path, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.tif"
    path.write_bytes(b"")
    expect_error(path, "empty")


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.svs"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expect_error(path, "no backend reads it", "OpenSlide", "OME-Zarr", "PNG, JPEG")


def test_open_from_many_threads(slide_writer, real_pixels):
    """Opening is thread-safe (the widget may open while a run reads)."""
    path, _ = slide_writer("t.ome.tif", real_pixels, layout="subifds")
    errors = []

    def job():
        try:
            with open_slide(path) as s:
                s.levels[1][:100, :100].compute()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
