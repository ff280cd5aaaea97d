"""One atomic write and one file-name sanitiser for every file the package writes."""

from __future__ import annotations

import os
import stat

import pytest

from napari_patchheat.files import atomic_write, check_writable_folder, safe_name


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


def test_check_writable_folder_fails_fast_on_a_file(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("")
    with pytest.raises(OSError):
        check_writable_folder(a_file)
    with pytest.raises(OSError):
        check_writable_folder(a_file / "sub")
    assert check_writable_folder(tmp_path / "new" / "sub").is_dir()
    assert os.listdir(tmp_path / "new" / "sub") == []
