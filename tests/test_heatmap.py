"""Heatmap names: one rule for the dock's layers, the reader's and the CLI's file stems."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap, slide_stem


@pytest.mark.parametrize("name, stem", [
    ("CMU-1-Small-Region.svs", "CMU-1-Small-Region"), ("a.ome.tif", "a"), ("A.OME.TIFF", "A"),
    ("scan.2024.ndpi", "scan.2024"), ("ihc", "ihc"), ("notes.txt", "notes.txt"),
])
def test_slide_stem_drops_slide_extensions_only(name, stem):
    assert slide_stem(name) == stem


def heatmap(classes: tuple[str, ...]) -> Heatmap:
    grid = PatchGrid(64, 64, 32, 32)
    values = np.zeros((*grid.shape, len(classes)), np.float32)
    return Heatmap(values, grid, 0, (1.0, 1.0), classes, model_name="dab",
                   slide_path="/data/CMU-1.svs")


def test_layer_names_are_model_slide_class_and_run():
    one, two = heatmap(("dab_positive",)), heatmap(("normal", "tumour"))
    assert one.title() == "dab · CMU-1" and one.title("ihc x16.png") == "dab · ihc x16"
    assert one.layer_name() == "dab · CMU-1"  # one class: not repeated in the name
    assert two.layer_name("tumour") == "dab · CMU-1 · tumour"
    assert two.layer_name(0, title="dab · other", run=3) == "dab · other · normal (3)"


# --- the .npz file: written atomically, read back or refused with a sentence -----------------


def big_heatmap() -> Heatmap:
    grid = PatchGrid(4096, 4096, 8, 8)  # 512 x 512 cells: a write takes a while
    values = np.random.default_rng(0).random((*grid.shape, 2), dtype=np.float32)
    return Heatmap(values, grid, 0, (1.0, 1.0), ("a", "b"), model_name="m")


def test_npz_round_trips(tmp_path):
    h = big_heatmap()
    back = Heatmap.load_npz(h.save_npz(tmp_path / "h.npz"))
    np.testing.assert_array_equal(back.values, h.values)
    assert back.metadata() == h.metadata()
    assert [p.name for p in tmp_path.iterdir()] == ["h.npz"]  # no temporary left


def test_two_writers_of_one_npz_always_leave_a_valid_file(tmp_path):
    """The issue's race: two writers of one path with the same temporary name corrupted it."""
    import threading

    ones = big_heatmap()
    twos = big_heatmap()
    twos.values[:] += 1
    path = tmp_path / "h.npz"
    start = threading.Barrier(2)

    def write(h: Heatmap) -> None:
        start.wait()
        h.save_npz(path)

    for _ in range(12):
        writers = [threading.Thread(target=write, args=(h,)) for h in (ones, twos)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        back = Heatmap.load_npz(path).values  # one writer's whole file, never a mix
        assert np.array_equal(back, ones.values) or np.array_equal(back, twos.values)
    assert [p.name for p in tmp_path.iterdir()] == ["h.npz"]


def test_a_failed_npz_write_leaves_no_file(tmp_path, monkeypatch):
    """RLIMIT_FSIZE makes the write fail as a full disk does (EFBIG), in this process."""
    import resource
    import signal

    h = big_heatmap()
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, old[1]))
    try:
        with pytest.raises(OSError):
            h.save_npz(tmp_path / "h.npz")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, previous)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [
    b"", b"\0" * 1000, b"garbage, not a zip",
    "truncated", "no metadata", "metadata not JSON", "grid missing", "values misshapen",
])
def test_a_file_that_is_not_a_heatmap_is_one_sentence(tmp_path, content):
    path = tmp_path / "bad.npz"
    h = heatmap(("a",))
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "truncated":
        h.save_npz(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        meta = h.metadata()
        if content == "grid missing":
            del meta["grid"]
        values = np.zeros((5, 5, 1)) if content == "values misshapen" else h.values
        fields = {"values": values}
        if content != "no metadata":
            fields["metadata"] = "{" if content == "metadata not JSON" else json.dumps(meta)
        np.savez(path, **fields)
    with pytest.raises(ValueError, match="cannot be read as a heatmap written by") as err:
        Heatmap.load_npz(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_heatmap_files_record_the_grid_by_its_params(tmp_path):
    grid = PatchGrid(40, 30, (5, 3), 4, 2, "SAME")
    h = Heatmap(np.random.default_rng(0).random((*grid.shape, 1)), grid, 1, (2.0, 2.0), ("a",))
    meta = h.metadata()["grid"]
    assert {k: meta[k] for k in grid.params()} == grid.params()
    assert (meta["rows"], meta["cols"]) == grid.shape
    assert Heatmap.load_npz(h.save_npz(tmp_path / "h.npz")).grid == grid


def test_a_npz_of_python_objects_is_refused_in_our_words(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, values=np.array([{"x": 1}], dtype=object), metadata=np.array("{}"))
    with pytest.raises(ValueError) as info:
        Heatmap.load_npz(path)
    assert str(info.value) == (f"{path} cannot be read as a heatmap written by napari-patchheat "
                               "(its 'values' array holds Python objects, not numbers): it is "
                               "damaged or another kind of file.")
    assert "allow_pickle" not in str(info.value)
