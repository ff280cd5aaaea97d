"""One atomic write (its folder errors one WriteError) and one file-name sanitiser for every
file the package writes."""

from __future__ import annotations

import errno
import os
import pickle
import stat
from pathlib import Path

import pytest

from napari_patchheat.files import (
    WriteError,
    atomic_folder,
    atomic_write,
    ensure_folder,
    prepare_output_folder,
    safe_name,
)
from napari_patchheat.slide import SlideError


@pytest.mark.parametrize("text, name", [
    ("H&E / IHC tumour model", "H_E_IHC_tumour_model"),
    ("x/../../../escaped", "x_.._.._.._escaped"),
    ("..", "heatmap"), ("", "heatmap"), (".hidden", "hidden"), ("CMU-1.dab", "CMU-1.dab"),
])
def test_safe_name_is_one_plain_file_name(text, name):
    assert safe_name(text) == name
    assert "/" not in name and name not in (".", "..") and not name.startswith(".")


def test_atomic_write_replaces_whole_files_with_normal_permissions(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with atomic_write(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path
        tmp.write_text("new")
        assert path.read_text() == "old"  # nothing visible until the block succeeds
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["out.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_atomic_write_removes_its_temporary_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert os.listdir(tmp_path) == []


def test_atomic_folder_replaces_a_whole_folder_with_normal_permissions(tmp_path):
    path = tmp_path / "out.zarr"
    path.mkdir()
    (path / "old.txt").write_text("old")
    with atomic_folder(path) as tmp:
        assert tmp.parent == tmp_path and tmp.is_dir() and tmp != path
        (tmp / "sub").mkdir()
        (tmp / "sub" / "new.txt").write_text("new")
        assert (path / "old.txt").read_text() == "old"  # nothing visible until it succeeds
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == ["sub", "sub/new.txt"]
    assert os.listdir(tmp_path) == ["out.zarr"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~umask


def test_atomic_folder_puts_the_old_folder_back_when_the_new_cannot_take_its_place(
        tmp_path, monkeypatch):
    path = tmp_path / "out.zarr"
    path.mkdir()
    (path / "old.txt").write_text("old")
    real = os.replace

    def the_new_one_fails(src, dst):
        if str(src).endswith(".part"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", the_new_one_fails)
    with pytest.raises(WriteError, match="disk is full"), atomic_folder(path) as tmp:
        (tmp / "new.txt").write_text("new")
    assert os.listdir(tmp_path) == ["out.zarr"] and os.listdir(path) == ["old.txt"]
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "other.zarr") as tmp:
        (tmp / "half").write_text("half")
        raise RuntimeError("the writer failed")
    assert os.listdir(tmp_path) == ["out.zarr"]


def test_the_output_folder_is_made_and_probed_with_a_real_write(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("")
    for bad, why in ((a_file, "File exists"), (a_file / "sub", "a file, not a folder"),
                     (tmp_path / ("x" * 300), "File name too long"),
                     (Path("/proc/patchheat-out"), "No such file or directory")):
        with pytest.raises(WriteError, match=why):
            prepare_output_folder(bad)
    assert prepare_output_folder(tmp_path / "new" / "sub") == tmp_path / "new" / "sub"
    assert os.listdir(tmp_path / "new" / "sub") == []  # the probe is gone


def test_the_output_folder_probe_refuses_a_read_only_file_system(tmp_path):
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()  # it exists: only a write shows that its file system is read-only
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                                 capture_output=True).returncode == 0
    except OSError:  # no mount command
        mounted = False
    if not mounted:
        pytest.skip("cannot mount a read-only tmpfs here (needs root and mount)")
    try:
        with pytest.raises(WriteError, match="Read-only file system"):
            prepare_output_folder(ro)
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_a_system_error_inside_an_atomic_write_is_one_write_error(tmp_path):
    with pytest.raises(WriteError, match=f"folder '{tmp_path}': No space left on device. "
                                         "The disk is full") as info:
        with atomic_write(tmp_path / "out.txt"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_our_own_oserrors_inside_an_atomic_write_pass_as_they_are(tmp_path):
    bad_tile = SlideError("Cannot read tile 5 of a.tif: bad JPEG.", "a.tif")
    with pytest.raises(SlideError) as info, atomic_write(tmp_path / "out.tif"):
        raise bad_tile
    assert info.value is bad_tile and list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_take_the_temporary_is_a_write_error(tmp_path):
    with pytest.raises(WriteError, match="does not exist: create it"):
        with atomic_write(tmp_path / "missing" / "out.txt"):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="a file, not a folder"):
        ensure_folder(tmp_path / "file" / "sub")
    assert ensure_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"


def test_a_write_error_survives_pickling():
    error = WriteError(Path("/data/out"), PermissionError(errno.EACCES, "Permission denied"))
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is WriteError and str(again) == str(error)
    assert (again.errno, again.strerror, again.filename) == (errno.EACCES, "Permission denied",
                                                             "/data/out")
