"""The resume cache: its folders, keys, and memory-mapped values."""

from __future__ import annotations

import numpy as np

from napari_patchheat import cache
from napari_patchheat.grid import PatchGrid


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
    assert key == "150a3327d10be7fa8fab"  # as it has always been: existing caches are found
    assert key == cache.run_key("slide-id", 0, PatchGrid(512, 512, (32, 32), 16), "model-fp")
    others = [cache.run_key("other", 0, grid, "model-fp"),
              cache.run_key("slide-id", 1, grid, "model-fp"),
              cache.run_key("slide-id", 0, PatchGrid(512, 512, 32, 8), "model-fp"),
              cache.run_key("slide-id", 0, PatchGrid(512, 512, 32, 16, 2), "model-fp"),
              cache.run_key("slide-id", 0, PatchGrid(512, 512, 32, 16, 1, "SAME"), "model-fp"),
              cache.run_key("slide-id", 0, grid, "other")]
    assert len({key, *others}) == 7


def test_run_cache_path(tmp_path, monkeypatch):
    assert cache.run_cache_path("abc", tmp_path) == tmp_path / "abc.npy"
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "root"))
    assert cache.run_cache_path("abc") == tmp_path / "root" / "runs" / "abc.npy"


def test_open_values_creates_nan_then_reopens_what_was_written(tmp_path):
    path = tmp_path / "runs" / "k.npy"
    values = cache.open_values(path, (3, 4, 2))
    assert values.dtype == np.float32 and values.shape == (3, 4, 2) and np.isnan(values).all()
    values[1, 2] = [0.25, 0.75]
    values.flush()
    del values
    again = cache.open_values(path, (3, 4, 2))
    np.testing.assert_array_equal(again[1, 2], [0.25, 0.75])
    assert np.isnan(again).sum() == 3 * 4 * 2 - 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["k.npy"]  # no temporary left
