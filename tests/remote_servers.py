"""Servers for the remote-slide tests and benchmark: an HTTP file server with range requests
(:class:`RangeServer`) and a real S3 API (moto's server, :func:`start_s3`), both on 127.0.0.1.

``tests/conftest.py`` re-exports the fixtures ``s3`` (a bucket holding the real SVS and NDPI,
with its endpoint and keys) and ``s3_env`` (those in the environment, as a user sets them).
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

S3_BUCKET = "slides"


class RangeServer(ThreadingHTTPServer):
    """Serves the files of ``root``; ``ranges``: "honour" (``Range: bytes=a-b`` -> 206),
    "ignore" (200 with the whole file) or "refuse" (416). Counts requests and body bytes sent;
    each request waits ``latency_s`` first (a distant server)."""

    daemon_threads = True

    def __init__(self, root: Path, ranges: str = "honour", latency_s: float = 0.0):
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.root, self.ranges, self.latency_s = root, ranges, latency_s
        self.requests, self.bytes_sent, self.lock = 0, 0, threading.Lock()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"

    def count(self, sent: int) -> None:
        with self.lock:
            self.requests += 1
            self.bytes_sent += sent

    def __enter__(self) -> RangeServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up on a whole-file answer (ranges "ignore") is expected


class _RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    server: RangeServer

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        server = self.server
        time.sleep(server.latency_s)
        path = server.root / unquote(urlsplit(self.path).path).lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        code, start, end = 200, 0, size - 1
        if match and server.ranges == "refuse":
            code, end = 416, -1
        elif match and server.ranges == "honour":
            code, start = 206, int(match[1])
            end = min(int(match[2]) if match[2] else size - 1, size - 1)
        self.send_response(code)
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end + 1 - start))
        self.send_header("ETag", f'"{size}-{path.stat().st_mtime_ns}"')
        self.end_headers()
        if body:
            with path.open("rb") as f:  # the part asked for only (slides can be GBs)
                f.seek(start)
                part = f.read(end + 1 - start)
            server.count(len(part))
            self.wfile.write(part)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class S3:
    """A running S3 API: its endpoint, a user's keys, the bucket and the local files in it."""

    endpoint: str
    key: str
    secret: str
    files: dict[str, Path]

    def url(self, name: str) -> str:
        return f"s3://{S3_BUCKET}/{name}"

    @property
    def storage_options(self) -> dict[str, Any]:
        return {"key": self.key, "secret": self.secret,
                "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"}}


def start_s3(files: dict[str, Path]) -> tuple[Any, S3]:
    """moto's server on a free port with ``files`` (object name -> local file) in the bucket
    S3_BUCKET, readable with the keys of an IAM user; every later request is authenticated
    (wrong keys are refused). Returns the server (``.stop()`` it) and its :class:`S3`."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    admin = {"endpoint_url": endpoint, "region_name": "us-east-1",
             "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
    iam = boto3.client("iam", **admin)
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="s3", PolicyDocument=(
        '{"Version": "2012-10-17", "Statement": '
        '[{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'))
    keys = iam.create_access_key(UserName="reader")["AccessKey"]
    s3 = boto3.client("s3", **admin)
    s3.create_bucket(Bucket=S3_BUCKET)
    for name, path in files.items():
        s3.upload_file(str(path), S3_BUCKET, name)
    _set_auth(endpoint, "0")  # from now on, every request needs the user's keys
    return server, S3(endpoint, keys["AccessKeyId"], keys["SecretAccessKey"], files)


def _set_auth(endpoint: str, free_requests: str) -> None:
    """moto's count of requests it serves before it checks credentials ("inf": never)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth",
                                     data=free_requests.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=10).close()


def clear_s3_clients() -> None:
    """Forget s3fs' cached filesystems: the next open reads the environment's keys anew."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def s3(svs_path: Path, ndpi_path: Path) -> Iterator[S3]:
    """A bucket holding the real SVS and NDPI, on moto's S3 server."""
    server, api = start_s3({svs_path.name: svs_path, ndpi_path.name: ndpi_path})
    yield api
    _set_auth(api.endpoint, "inf")
    server.stop()


@pytest.fixture
def s3_env(s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """``s3`` with its endpoint and keys in the environment (and no other AWS settings)."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clear_s3_clients()
    yield s3
    clear_s3_clients()
