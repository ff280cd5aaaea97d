"""``patchheat batch`` meets hostile input calmly: each case is one line on stderr naming the
option or file and what to do, exit code 2 (bad input) or 1 (a failed slide), no traceback and
no hang. The hostile inputs are made here: zero and negative sizes, a missing and a binary
``--list``, a scheduler file that is not JSON, an address dask cannot parse, a web server and a
TCP server that answers garbage where a scheduler should be (real dask, no mocks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_patchheat.cli import main

LIST_HINT = "give a .txt file of slide paths (one a line) or a .csv with a 'slide' column."


def batch(tmp_path: Path, *extra: str) -> list[str]:
    return ["batch", str(tmp_path / "a.svs"), "--size", "64", "--out", str(tmp_path / "out"),
            *extra]


@pytest.mark.parametrize(("flag", "value", "least", "example"), [
    ("--workers", "0", 1, 4), ("--workers", "-1", 1, 4), ("--threads-per-worker", "0", 1, 2),
    ("--split-px", "0", 1, 8192), ("--retries", "-1", 0, 2)])
def test_sizes_below_their_least_are_refused_before_a_cluster_starts(capsys, tmp_path, flag,
                                                                     value, least, example):
    with pytest.raises(SystemExit) as exited:
        main(batch(tmp_path, flag, value))
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        f"patchheat batch: error: argument {flag}: {value} is below {least}: give a whole "
        f"number of at least {least}, e.g. {example} (see patchheat batch --help)\n")


def test_a_missing_slide_list_is_one_sentence(capsys, tmp_path):
    missing = tmp_path / "slides.txt"
    assert main(batch(tmp_path, "--list", str(missing))) == 2
    assert capsys.readouterr().err == (
        f"patchheat: error: cannot read the slide list {missing} (No such file or directory): "
        f"{LIST_HINT}\n")


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"a.svs\n\x00\x01\x02\n"])
def test_a_binary_slide_list_is_one_sentence(capsys, tmp_path, content):
    binary = tmp_path / "slides.csv"
    binary.write_bytes(content)
    assert main(batch(tmp_path, "--list", str(binary))) == 2
    assert capsys.readouterr().err == (
        f"patchheat: error: the slide list {binary} is not a text file: {LIST_HINT}\n")


