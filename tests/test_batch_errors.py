"""``patchheat batch`` meets hostile input calmly: each case is one line on stderr naming the
option or file and what to do, exit code 2 (bad input) or 1 (a failed slide), no traceback and
no hang. The hostile inputs are made here: zero and negative sizes, a missing and a binary
``--list``, a scheduler file that is not JSON, an address dask cannot parse, a web server and a
TCP server that answers garbage where a scheduler should be (real dask, no mocks).
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from napari_patchheat.batch import SCHEDULER_CONNECT_S
from napari_patchheat.cli import main

CONNECT_MARGIN_S = 15.0  # the command's start (imports) and exit on two busy cores
LIST_HINT = "give a .txt file of slide paths (one a line) or a .csv with a 'slide' column."
SCHEDULER_HINT = "check the address (tcp://host:8786) or the scheduler file."


def batch(tmp_path: Path, *extra: str) -> list[str]:
    return ["batch", str(tmp_path / "a.svs"), "--size", "64", "--out", str(tmp_path / "out"),
            *extra]


def run_cli(args: list[str], timeout_s: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """``patchheat ARGS`` in a fresh process (its exit included); the result (its output as
    written: a progress line's carriage returns kept) and its seconds."""
    start = time.monotonic()
    # as a user runs it: scripts/test.sh's TF_CPP_MIN_LOG_LEVEL=2 would let TensorFlow's C++
    # errors through (e.g. "failed call to cuInit" where CUDA's libraries find no GPU)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "napari_patchheat.cli", *args],
                          capture_output=True, timeout=timeout_s, env=env)
    seconds = time.monotonic() - start
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode()), seconds


def test_the_connect_bound_is_at_most_dasks_own():
    assert 0 < SCHEDULER_CONNECT_S <= 30


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


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"address": 8786}'])
def test_a_scheduler_file_without_an_address_is_one_sentence(capsys, tmp_path, content):
    scheduler = tmp_path / "scheduler.json"
    scheduler.write_text(content)
    assert main(batch(tmp_path, "--scheduler", str(scheduler))) == 2
    assert capsys.readouterr().err == (
        f"patchheat: error: {scheduler} is not a dask scheduler file (JSON with an "
        "\"address\"): give the file 'dask scheduler --scheduler-file' wrote, or an address "
        "such as tcp://host:8786.\n")


def test_an_address_dask_cannot_parse_is_one_sentence(tmp_path):
    done, seconds = run_cli(batch(tmp_path, "--scheduler", "foo::bar"), 120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr == ("patchheat: error: cannot reach the dask scheduler foo::bar: invalid "
                           f"address 'foo::bar'; {SCHEDULER_HINT}\n")
    assert seconds < SCHEDULER_CONNECT_S + CONNECT_MARGIN_S


@pytest.fixture
def web_server() -> Iterator[str]:
    """A web server on 127.0.0.1 (as a dashboard is): its tcp:// address."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def garbage_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that sends every connection bytes dask cannot read."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(b"\xff" * 64 + b"garbage\n" * 8)
                    conn.recv(1)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_a_web_server_for_a_scheduler_gives_up_within_the_bound(tmp_path, web_server):
    done, seconds = run_cli(batch(tmp_path, "--scheduler", web_server), 120)
    assert done.returncode == 2, done.stderr[-3000:]
    # the web server waits for a request line, or (where dask's handshake holds a newline
    # byte, e.g. Python 3.x.10) answers 400 at once: either way one sentence, in time
    reasons = (f"no dask scheduler answered within {SCHEDULER_CONNECT_S:g} s",
               "what answers there does not speak dask's protocol")
    assert done.stderr in [f"patchheat: error: cannot reach the dask scheduler {web_server}: "
                           f"{reason}; {SCHEDULER_HINT}\n" for reason in reasons]
    assert seconds < SCHEDULER_CONNECT_S + CONNECT_MARGIN_S


def test_a_listener_that_never_answers_gives_up_within_the_bound(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never says a word
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        done, seconds = run_cli(batch(tmp_path, "--scheduler", address), 120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr == (
        f"patchheat: error: cannot reach the dask scheduler {address}: no dask scheduler "
        f"answered within {SCHEDULER_CONNECT_S:g} s; {SCHEDULER_HINT}\n")
    assert seconds < SCHEDULER_CONNECT_S + CONNECT_MARGIN_S


def test_garbage_for_a_scheduler_is_one_sentence_at_once(tmp_path, garbage_server):
    done, seconds = run_cli(batch(tmp_path, "--scheduler", garbage_server), 120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr == (
        f"patchheat: error: cannot reach the dask scheduler {garbage_server}: what answers "
        f"there does not speak dask's protocol; {SCHEDULER_HINT}\n")
    assert seconds < SCHEDULER_CONNECT_S + CONNECT_MARGIN_S


def test_a_failing_batch_prints_only_its_own_lines(tmp_path, slide_writer, real_pixels):
    good, _ = slide_writer("good.ome.tif", real_pixels[:600, :600], mpp=0.5)
    text = tmp_path / "x.svs"
    text.write_text("not a slide")
    missing = tmp_path / "missing.svs"
    done, _ = run_cli(["batch", str(good), str(text), str(missing), "--size", "64",
                       "--no-cache", "--out", str(tmp_path / "out"), "--workers", "1",
                       "--threads-per-worker", "1"], 300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "3 slides: 1 ok, 2 failed" in done.stdout
    lines = done.stderr.rstrip("\n").split("\n")  # the progress line redraws itself (\r)
    assert len(lines) == 4, done.stderr[-3000:]  # dashboard, progress, a line per failed slide
    assert lines[0].startswith("dask dashboard: ") and lines[1].startswith("\rslides ")
    assert lines[2].startswith(f"failed: {text}: Cannot open {text}: no backend reads it")
    assert lines[3] == f"failed: {missing}: {missing} does not exist: give the path of a " \
                       "slide file."
