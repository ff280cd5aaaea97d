"""Remote slides (slide/remote.py) on real servers: moto's S3 API and an HTTP server with range
requests (tests/remote_servers.py), against the same files read locally, bit for bit; what a
run fetches; and one sentence, quickly, for every way a remote slide fails to open."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from remote_servers import S3, RangeServer, clear_s3_clients

from napari_patchheat.slide import SlideError, open_slide
from napari_patchheat.slide.coarse import coarse_file
from napari_patchheat.slide.location import SlideURL, recorded_location, source_name
from napari_patchheat.slide.remote import REMOTE_BLOCK_BYTES, content_key

FAST_S = 10  # an error is reported well within this (the default timeouts are longer)


def assert_same_slide(remote, local) -> None:
    """Every level (stored and computed) and the metadata equal the local file's."""
    assert [lv.shape for lv in remote.levels] == [lv.shape for lv in local.levels]
    for a, b in zip(remote.levels, local.levels):
        want = np.asarray(b)
        assert want.std() > 0  # the reference varies
        np.testing.assert_array_equal(np.asarray(a), want)
    assert (remote.mpp, remote.vendor, remote.objective_power, remote.downsamples) == (
        local.mpp, local.vendor, local.objective_power, local.downsamples)


def one_sentence(exc: SlideError, url: str) -> str:
    text = str(exc)
    assert text.startswith(f"Cannot open {url}: ") and text.endswith(".") and "\n" not in text
    assert "Traceback" not in text and exc.path == url
    return text


def expect_slide_error(url: str, match: str, **storage_options) -> str:
    t0 = time.perf_counter()
    with pytest.raises(SlideError, match=match) as info:
        open_slide(url, storage_options=storage_options)
    assert time.perf_counter() - t0 < FAST_S
    return one_sentence(info.value, url)


# --- S3 (moto's server) --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["svs", "ndpi"])
def test_s3_slide_equals_the_local_file(s3_env: S3, name):
    local_path = next(p for p in s3_env.files.values() if p.suffix == f".{name}")
    url = s3_env.url(local_path.name)
    with open_slide(url) as remote, open_slide(local_path) as local:
        assert_same_slide(remote, local)
        assert remote.path == SlideURL(url) and str(remote.path) == url
        assert remote.path.name == local_path.name and remote.path.suffix == f".{name}"
        assert remote.tile_shapes == local.tile_shapes
        assert f"size={local_path.stat().st_size}" in remote.source_key
        assert "etag=" in remote.source_key
        identity = remote.identity
    with open_slide(url) as again:  # the same object: the same identity (cache key)
        assert again.identity == identity != local.identity
    if name == "svs":  # ... in another process too (a batch worker, a later run)
        code = f"from napari_patchheat.slide import open_slide; print(open_slide({url!r}).identity)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120, check=True)
        assert out.stdout.split() == [identity]


def test_s3_with_storage_options_instead_of_the_environment(s3: S3, svs_path, monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    clear_s3_clients()
    with open_slide(s3.url(svs_path.name), storage_options=s3.storage_options) as remote, \
            open_slide(svs_path) as local:
        assert_same_slide(remote, local)


def test_s3_errors_are_one_sentence_and_fast(s3_env: S3, svs_path, monkeypatch):
    url = s3_env.url(svs_path.name)
    wrong = {**s3_env.storage_options, "key": "AKIAWRONGWRONGWRONG0", "secret": "wrong"}
    text = expect_slide_error(url, "access was denied", **wrong)
    assert "AWS_ACCESS_KEY_ID" in text and "storage_options" in text
    text = expect_slide_error("s3://no-such-bucket/a.svs", "there is no such object")
    assert "bucket" in text
    expect_slide_error(s3_env.url("missing.svs"), "there is no such object")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    clear_s3_clients()  # s3fs keeps a process's first keys
    text = expect_slide_error(url, "no credentials were found")
    assert "anon" in text


def test_a_silent_or_absent_endpoint_fails_within_its_timeouts(s3_env: S3, svs_path):
    with socket.socket() as silent:  # accepts connections (its backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        quick = {"client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
                 "config_kwargs": {"connect_timeout": 0.5, "read_timeout": 0.5}}
        text = expect_slide_error(s3_env.url(svs_path.name), "did not answer in time", **quick)
        assert "AWS_ENDPOINT_URL" in text
    # the port is closed now: nothing listens there
    refused = {"client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
    expect_slide_error(s3_env.url(svs_path.name), "cannot connect to the server", **refused)


# --- HTTP with range requests ------------------------------------------------------------------


@pytest.fixture
def served(real_data: Path, tmp_path: Path) -> Path:
    """A folder of copies of the real slides, for the HTTP server."""
    for name in ("CMU-1-Small-Region.svs", "test3-DAPI-2-387.ndpi", "ihc.png"):
        shutil.copy(real_data / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("name", ["CMU-1-Small-Region.svs", "ihc.png"])
def test_http_slide_equals_the_local_file(served, name):
    with RangeServer(served) as server, open_slide(server.url(name)) as remote, \
            open_slide(served / name) as local:
        assert_same_slide(remote, local)
        assert remote.path.name == name and "etag=" in remote.source_key


def test_a_run_over_a_level_fetches_each_byte_about_once(served):
    """The NDPI (3.5 MB, more than 3 blocks): its whole level 0, read in the regions a run
    reads, costs at most 1.5 x the file in bytes, in requests of a block each."""
    path = served / "test3-DAPI-2-387.ndpi"
    with RangeServer(served) as server, open_slide(server.url(path.name)) as slide:
        opened = server.requests
        reader = slide.reader(0)
        h, w = slide.levels[0].shape[:2]
        for y in range(0, h, 1024):
            for x in range(0, w, 1024):
                region = reader[y:y + 1024, x:x + 1024]
        with open_slide(path) as local:
            np.testing.assert_array_equal(region, local.reader(0)[y:y + 1024, x:x + 1024])
        size = path.stat().st_size
        assert server.bytes_sent <= 1.5 * size
        assert server.requests - opened <= 1.5 * size / REMOTE_BLOCK_BYTES + 1
        assert opened <= 6  # HEAD, the first and last blocks, the directories


def test_the_object_changing_changes_the_identity(served):
    path = served / "CMU-1-Small-Region.svs"
    with RangeServer(served) as server:
        with open_slide(server.url(path.name)) as slide:
            before = slide.identity
            built = coarse_file(slide.path, served / "coarse", slide.source_key)
        with path.open("ab") as f:  # bytes after the TIFF's data: the same pixels
            f.write(b"\0" * 16)
        with open_slide(server.url(path.name)) as slide:
            assert slide.identity != before
            assert coarse_file(slide.path, served / "coarse", slide.source_key) != built


def test_a_server_without_range_requests_is_one_sentence(served):
    name = "test3-DAPI-2-387.ndpi"  # larger than a block: its end needs a range request
    with RangeServer(served, ranges="ignore") as server:
        text = expect_slide_error(server.url(name), "cannot send parts of the file")
        assert "range requests" in text and "download" in text
    with RangeServer(served, ranges="refuse") as server:
        expect_slide_error(server.url(name), "answers a range request with no data")
    with RangeServer(served) as server:
        expect_slide_error(server.url("missing.svs"), "there is no such object")


def test_a_silent_web_server_fails_within_its_timeouts():
    import aiohttp

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/a.svs"
        quick = aiohttp.ClientTimeout(sock_connect=0.5, sock_read=0.5)
        expect_slide_error(url, "did not answer in time", client_kwargs={"timeout": quick})


# --- what is not read remotely ------------------------------------------------------------------


def test_formats_and_schemes_not_read_remotely_are_one_sentence():
    text = expect_slide_error("s3://bucket/slide.mrxs", "read from local files only")
    assert "download" in text and "mount" in text
    expect_slide_error("https://example.org/a/b.dcm?sig=1", "read from local files only")
    expect_slide_error("ftp://example.org/a.svs", "ftp:// URLs are not read")
    for scheme, package in (("gs", "gcsfs"), ("az", "adlfs")):
        if importlib.util.find_spec(package) is None:
            text = expect_slide_error(f"{scheme}://bucket/a.svs", f"needs {package}")
            assert "napari-patchheat[cloud]" in text


def test_locations_name_and_record_a_url_as_it_is():
    url = "https://host/slides/a%20b.svs?X-Amz-Signature=abc"
    assert source_name(url) == "a b.svs" and SlideURL(url).suffix == ".svs"
    assert recorded_location(url) == url and recorded_location("s3://b/x//y.svs") == \
        "s3://b/x//y.svs"
    assert content_key({"size": 5, "ETag": '"e"', "LastModified": "t"}) == 'size=5|etag="e"'
    assert content_key({"size": 5, "Last-Modified": "t"}) == "size=5|lastmodified=t"


def test_a_huge_remote_slides_zoomed_out_views_are_built_into_the_local_cache(
        monkeypatch, tmp_path):
    """A single-level TIFF counted as huge, over HTTP: its computed levels are built once into
    the local cache, named for its URL and source_key, equal to the lazily computed ones, and a
    later open of the URL reads them from there."""
    import tifffile

    from napari_patchheat.slide import coarse

    monkeypatch.setattr(coarse, "COARSE_BUILD_MIN_PX", 2**20)
    monkeypatch.setenv("PATCHHEAT_CACHE_DIR", str(tmp_path / "cache"))
    image = np.random.default_rng(0).integers(0, 256, (2600, 4100, 3), np.uint8)
    tifffile.imwrite(tmp_path / "huge.tif", image, photometric="rgb", tile=(256, 256),
                     compression="zlib")
    with RangeServer(tmp_path) as server:
        url = server.url("huge.tif")
        with open_slide(url) as slide:
            assert coarse.needs_build(slide)
            expected = [np.asarray(lv) for lv in slide.levels[1:]]
            assert expected[0].std() > 0
            built = coarse.build_coarse_levels(slide)
        assert built == coarse_file(SlideURL(url), None, slide.source_key)
        assert built.parent == tmp_path / "cache" / "coarse"
        with open_slide(url) as slide:
            assert slide.coarse_path == built and not coarse.needs_build(slide)
            for k, level in enumerate(expected, start=1):
                np.testing.assert_array_equal(np.asarray(slide.levels[k]), level)
