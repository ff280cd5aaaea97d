"""The resume cache: its folders and keys; a store that cannot lie and never stops a run.

Damaged files are made the way users make them (truncate, zero, garbage); full and read-only
disks are real tmpfs mounts where this process may mount (root), else skipped with the reason.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_patchheat import cache
from napari_patchheat.grid import PatchGrid

RUN = dict(size=16, stride=4, batch_size=64)  # the IHC image: 125 x 125 patches, ~190 kB cached


def test_cache_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "mine"))
    assert cache.cache_root() == tmp_path / "mine"
    assert cache.runs_dir() == tmp_path / "mine" / "runs"
    monkeypatch.delenv(cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_root() == tmp_path / "xdg" / "napari-patchheat"


def test_run_key_is_stable_and_names_every_part():
    grid = PatchGrid(512, 512, 32, 16)
    key = cache.run_key("slide-id", 0, grid, "model-fp")
    assert key == "150a3327d10be7fa8fab"  # as it has always been
    assert key == cache.run_key("slide-id", 0, PatchGrid(512, 512, (32, 32), 16), "model-fp")
    others = [cache.run_key("other", 0, grid, "model-fp"),
              cache.run_key("slide-id", 1, grid, "model-fp"),
              cache.run_key("slide-id", 0, PatchGrid(512, 512, 32, 8), "model-fp"),
              cache.run_key("slide-id", 0, PatchGrid(512, 512, 32, 16, 2), "model-fp"),
              cache.run_key("slide-id", 0, PatchGrid(512, 512, 32, 16, 1, "SAME"), "model-fp"),
              cache.run_key("slide-id", 0, grid, "other")]
    assert len({key, *others}) == 7


def test_run_key_of_converted_colours_stands_apart():
    grid = PatchGrid(512, 512, 32, 16)
    key = cache.run_key("slide-id", 0, grid, "model-fp")
    assert key == cache.run_key("slide-id", 0, grid, "model-fp", "")  # as stored: unchanged
    srgb = cache.run_key("slide-id", 0, grid, "model-fp", color="sRGB")
    assert srgb != key and srgb == cache.run_key("slide-id", 0, grid, "model-fp", "sRGB")


def test_run_cache_path(tmp_path, monkeypatch):
    assert cache.run_cache_path("abc", tmp_path) == tmp_path / "abc.sqlite"
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "root"))
    assert cache.run_cache_path("abc") == tmp_path / "root" / "runs" / "abc.sqlite"


GRID = PatchGrid(64, 80, 16, 16)  # 4 x 5 patches


def test_done_is_recorded_not_inferred_from_the_values(tmp_path):
    path = tmp_path / "runs" / "k.sqlite"
    first = cache.RunCache.open(path, "k", GRID, 2)
    assert first.values.shape == (4, 5, 2) and np.isnan(first.values).all()
    first.add(np.array([[1, 2], [3, 4]]), np.array([[0.0, 0.0], [0.25, 0.75]]))
    first.close()
    again = cache.RunCache.open(path, "k", GRID, 2).values
    np.testing.assert_array_equal(again[1, 2], [0.0, 0.0])  # zeros that were computed
    np.testing.assert_array_equal(again[3, 4], [0.25, 0.75])
    assert np.isnan(again).sum() == 4 * 5 * 2 - 4
    assert sorted(p.name for p in path.parent.iterdir()) == ["k.sqlite"]  # no journal left


def test_two_runs_sharing_one_file_keep_each_others_results(tmp_path):
    path = tmp_path / "k.sqlite"
    a = cache.RunCache.open(path, "k", GRID, 1)
    b = cache.RunCache.open(path, "k", GRID, 1)
    a.add(np.array([[0, 0]]), np.array([[0.5]]))
    b.add(np.array([[3, 4]]), np.array([[0.25]]))
    a.close()
    b.close()
    values = cache.RunCache.open(path, "k", GRID, 1).values
    assert values[0, 0, 0] == 0.5 and values[3, 4, 0] == 0.25 and np.isnan(values).sum() == 18


def _damage_record(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("UPDATE batches SET vals = zeroblob(length(vals)) WHERE id = 1")
    db.commit()
    db.close()


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.write_bytes(b"\0" * p.stat().st_size), "not a database"),
    (lambda p: p.write_bytes(os.urandom(p.stat().st_size)), "not a database"),
    (_damage_record, "checksum"),
])
def test_a_cache_that_does_not_verify_is_set_aside_with_a_warning(tmp_path, damage, why):
    path = tmp_path / "k.sqlite"
    c = cache.RunCache.open(path, "k", GRID, 1)
    c.add(np.array([[0, 0], [1, 1]]), np.array([[0.5], [0.5]]))
    c.close()
    damage(path)
    with pytest.warns(cache.CacheWarning) as record:
        again = cache.RunCache.open(path, "k", GRID, 1)
    assert len(record) == 1
    text = str(record[0].message)
    assert str(path) in text and why in text and "set aside as k.sqlite.bad-" in text
    assert np.isnan(again.values).all() and again.writable  # afresh, and cached from now on
    assert len(list(tmp_path.glob("k.sqlite.bad-*"))) == 1


def test_one_bad_record_makes_the_whole_file_untrusted(tmp_path):
    path = tmp_path / "k.sqlite"
    c = cache.RunCache.open(path, "k", GRID, 1)
    c.add(np.array([[0, 0]]), np.array([[0.5]]))
    c.flush()
    c.add(np.array([[1, 1]]), np.array([[0.25]]))
    c.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE batches SET crc = crc + 1 WHERE id = 2")
    db.commit()
    db.close()
    with pytest.warns(cache.CacheWarning, match="checksum"):
        values = cache.RunCache.open(path, "k", GRID, 1).values
    assert np.isnan(values).all()  # the good first record is not kept from a bad file either


def test_a_cache_of_another_grid_or_shape_is_set_aside(tmp_path):
    path = tmp_path / "k.sqlite"
    cache.RunCache.open(path, "k", GRID, 1).close()
    with pytest.warns(cache.CacheWarning, match="its shape is"):
        assert cache.RunCache.open(path, "k", GRID, 3).values.shape == (4, 5, 3)
    with pytest.warns(cache.CacheWarning, match="its grid is"):
        cache.RunCache.open(path, "k", PatchGrid(64, 80, 16, 16, 1, "SAME"), 3)


def test_cache_info_and_clear(tmp_path):
    cache.RunCache.open(tmp_path / "runs" / "a.sqlite", "a", GRID, 1).close()
    (tmp_path / "runs" / "b.sqlite.bad-1").write_bytes(b"x" * 10)
    (tmp_path / "runs" / "old.npy").write_bytes(b"y" * 5)  # version 0.1's cache
    info = cache.cache_info(tmp_path / "runs")
    assert (info.runs, info.set_aside, info.other) == (1, 1, 1)
    assert info.total_bytes == sum(p.stat().st_size for p in (tmp_path / "runs").iterdir())
    assert cache.clear_cache(tmp_path / "runs") == info.total_bytes
    assert not (tmp_path / "runs").exists()
    assert cache.cache_info(tmp_path / "runs").runs == 0


# --- whole runs through damaged, full, read-only and impossible caches -----------------------


@pytest.fixture(scope="module")
def ihc_tif(tmp_path_factory) -> Path:
    import skimage.data
    import tifffile

    path = tmp_path_factory.mktemp("slide") / "ihc.tif"
    tifffile.imwrite(path, skimage.data.immunohistochemistry(), photometric="rgb")
    return path


@pytest.fixture(scope="module")
def uncached(ihc_tif) -> np.ndarray:
    pytest.importorskip("tensorflow")
    from napari_patchheat import compute_heatmap

    return compute_heatmap(ihc_tif, "dab", use_cache=False, **RUN).values


def _run(slide: Path, cache_dir: Path, stop_after: int | None = None):
    """A dab run over ``slide`` with the cache in ``cache_dir``; its warnings' texts."""
    from napari_patchheat.inference import HeatmapRun
    from napari_patchheat.options import RunOptions

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = HeatmapRun(slide, "dab", RunOptions(cache_dir=cache_dir, **RUN))
        todo = int(run.todo.sum())
        for i, _ in enumerate(run.run()):
            if stop_after is not None and i + 1 == stop_after:
                break
        run.cache.close()
    texts = [str(w.message) for w in caught if issubclass(w.category, cache.CacheWarning)]
    return run, todo, texts


@pytest.mark.parametrize("damage", ["truncate", "zero", "garbage", "empty"])
def test_a_damaged_cache_gives_the_right_values_on_rerun(ihc_tif, uncached, tmp_path, damage):
    """The issue's case: run, stop, damage the file, run again: every value right."""
    run, _, _ = _run(ihc_tif, tmp_path, stop_after=100)
    path = run.cache.path
    size = path.stat().st_size
    if damage == "truncate":
        os.truncate(path, size // 2)
    else:
        path.write_bytes({"zero": b"\0" * size, "garbage": os.urandom(size), "empty": b""}[damage])
    again, todo, texts = _run(ihc_tif, tmp_path)
    np.testing.assert_array_equal(again.result().values, uncached)
    assert todo == uncached.shape[0] * uncached.shape[1]  # nothing trusted
    if damage != "empty":  # an empty file is an empty SQLite database: nothing to set aside
        assert len(texts) == 1 and str(path) in texts[0] and "set aside" in texts[0]
    third, todo, texts = _run(ihc_tif, tmp_path)
    assert todo == 0 and texts == []  # the recomputed cache is whole and trusted
    np.testing.assert_array_equal(third.result().values, uncached)


def test_a_truncated_finished_cache_gives_the_right_values(ihc_tif, uncached, tmp_path):
    run, _, _ = _run(ihc_tif, tmp_path)
    os.truncate(run.cache.path, run.cache.path.stat().st_size // 2)
    again, _, texts = _run(ihc_tif, tmp_path)
    np.testing.assert_array_equal(again.result().values, uncached)
    assert len(texts) == 1 and "set aside" in texts[0]


def test_a_full_cache_disk_warns_once_and_the_run_goes_on(ihc_tif, uncached, mounts):
    full = mounts("full", "200k")  # the cache needs about 300 kB
    run, todo, texts = _run(ihc_tif, full)
    np.testing.assert_array_equal(run.result().values, uncached)
    assert len(texts) == 1 and texts[0].startswith("results will not be cached: ")
    assert "full" in texts[0] or "space" in texts[0]
    again, todo_again, _ = _run(ihc_tif, full)  # what was cached before the disk filled is kept
    assert 0 < todo_again < todo
    np.testing.assert_array_equal(again.result().values, uncached)


def test_a_read_only_cache_is_read_and_the_run_goes_on(ihc_tif, uncached, mounts):
    ro = mounts("ro", "2m")
    _run(ihc_tif, ro, stop_after=100)
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    run, todo, texts = _run(ihc_tif, ro)
    assert todo == uncached.shape[0] * uncached.shape[1] - 100 * RUN["batch_size"]
    np.testing.assert_array_equal(run.result().values, uncached)
    assert len(texts) == 1 and texts[0].startswith("results will not be cached: ")
    assert "read-only" in texts[0] or "readonly" in texts[0]


def test_a_cache_folder_that_is_a_file_warns_and_the_run_goes_on(ihc_tif, uncached, tmp_path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    run, _, texts = _run(ihc_tif, a_file)
    np.testing.assert_array_equal(run.result().values, uncached)
    assert len(texts) == 1 and texts[0].startswith("results will not be cached: ")
    assert a_file.read_text() == "x"


def test_the_cache_file_records_the_grid_by_its_params(tmp_path):
    grid = PatchGrid(64, 48, 8, (4, 6), 1, "SAME")
    run = cache.RunCache.open(tmp_path / "r.sqlite", "k", grid, 2)
    run.close()
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        (stored,), = db.execute("SELECT value FROM header WHERE name = 'grid'")
    assert json.loads(stored) == grid.params()


def test_a_damaged_tree_is_one_line_in_the_warning(tmp_path):
    grid = PatchGrid(512, 512, 8, 8)
    path = tmp_path / "r.sqlite"
    run = cache.RunCache.open(path, "k", grid, 2)
    for i in range(64):
        run.add(np.array([[i, j] for j in range(64)]), np.full((64, 2), 0.5, np.float32))
        run.flush()
    run.close()
    damaged = bytearray(path.read_bytes())
    damaged[4096 * 2 + 8:4096 * 2 + 40] = b"\xff" * 32  # a tree page's cell pointers
    path.write_bytes(bytes(damaged))
    with sqlite3.connect(path) as db:
        (report,), = db.execute("PRAGMA quick_check")
        assert len(report.splitlines()) > 2  # SQLite's own report: several lines
        with pytest.raises(cache.CacheInvalid) as info:
            cache._load(db, {})
    assert str(info.value).startswith("SQLite finds it damaged: ")  # SQLite's words vary
    assert "\n" not in str(info.value) and str(info.value).endswith(" more)")
    # opened for a run (which may meet the damage before its check), the warning is one line
    with pytest.warns(cache.CacheWarning) as caught:
        cache.RunCache.open(path, "k", grid, 2)
    (message,) = [str(w.message) for w in caught]
    assert "\n" not in message and "cannot be trusted (" in message
