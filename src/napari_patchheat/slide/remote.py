"""Slides in object storage or on web servers (``s3://``, ``gs://``, ``az://``, ``http(s)://``),
read through fsspec, never copied whole.

- TIFF-family slides (SVS, NDPI, OME-TIFF, ...) are read by the tifffile backend over an fsspec
  file object with a bounded block cache and read-ahead (``REMOTE_BLOCK_BYTES`` x
  ``REMOTE_CACHE_BLOCKS``): each request fetches a block of many tiles, the next block is
  fetched in the background, and a run over a level fetches each byte about once.
- PNG and JPEG are fetched once, whole, and decoded on first read.
- OME-Zarr (``.zarr``, or a folder holding ``zarr.json``/``.zattrs``) goes to
  :func:`.omezarr.open_omezarr_url`.
- OpenSlide formats and DICOM are refused: OpenSlide reads local files only.

Credentials and endpoints come from the environment as the fsspec implementation reads them
(s3fs: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ...), or from
``storage_options``. Connect and read timeouts keep a silent server from hanging a reader;
every failure is one :class:`SlideError` sentence naming the URL. No Qt, no TensorFlow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import SlideError
from .formats import LOCAL_ONLY_SUFFIXES, sniff, unreadable
from .location import SlideURL, is_url, scheme_of
from .pyramid import Slide

__all__ = ["is_url", "open_remote"]

# one request fetches this much: dozens of tiles (JPEG tiles of slides are 10-60 kB), so a
# request's latency (10-100 ms to object storage) is paid once per dozens of tiles, and its
# transfer (~20 ms at 50 MB/s) about equals that latency. Measured (benchmarks/bench_read.py,
# 20 ms per request): a run's pass over a level makes 0.008 requests per tile and fetches 1.17x
# the tiles' bytes; 4 MiB blocks fetch 1.41x, 256 KiB ones make 3.6x the requests
REMOTE_BLOCK_BYTES = 2**20
# blocks kept per open slide (64 MiB at most): a run reads a level in blocks of tile rows
# (grid.READ_BLOCK_PX high, ~10 tile rows, one block fetched per tile row); kept, those blocks
# serve the next read blocks to the right instead of being fetched again, and panning back is
# instant. With one block per tile row, a level up to ~6 blocks per tile row wide (~150,000 px
# of 30 kB JPEG tiles) is fetched about once
REMOTE_CACHE_BLOCKS = 64
REMOTE_CACHE_TYPE = "background"  # fsspec's LRU block cache that fetches the next block ahead
CONNECT_TIMEOUT_S = 10  # a server that does not accept the connection in this time fails
READ_TIMEOUT_S = 20  # a server that sends nothing for this long fails (each attempt)
S3_ATTEMPTS = 2  # botocore's attempts per request, s3fs' own tries of them: 1 (its default, 5,
# made a silent endpoint cost 5 x 2 x READ_TIMEOUT_S)
CLOUD_INSTALL = "pip install 'napari-patchheat[cloud]'"
NO_DATA = "it answers a range request with no data"
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs",
             "abfs": "adlfs", "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp"}


def open_remote(url: str, backend: str, storage_options: Mapping[str, Any]) -> Slide:
    """Open the slide at the fsspec ``url`` with ``backend`` (see ``open_slide``), fsspec
    taking ``storage_options`` (over this module's timeouts). Reads its metadata and one tile.

    Raises :class:`SlideError` with one sentence naming the URL, the problem and what to do.
    """
    location = SlideURL(url)
    suffix = location.suffix.lower()
    if backend in ("openslide", "dicom") or suffix in LOCAL_ONLY_SUFFIXES:
        raise SlideError(f"Cannot open {url}: OpenSlide formats and DICOM are read from local "
                         "files only; download the slide, or mount its bucket (e.g. rclone "
                         "mount, mount-s3) and open the local path.", url)
    if backend == "zarr" or suffix == ".zarr" or url.split("?")[0].endswith("/"):
        return _open_omezarr(url, storage_options)
    with remote_errors(url):
        fs, key = filesystem(url, storage_options)
        fs.invalidate_cache(key)  # the object as it is now, not as listed before
        info = fs.info(key)
        if info.get("type") == "directory":
            if any(fs.exists(f"{key.rstrip('/')}/{n}") for n in ("zarr.json", ".zattrs")):
                return _open_omezarr(url, storage_options)
            raise SlideError(f"Cannot open {url}: it is a folder that holds no OME-Zarr image; "
                             "give the URL of a slide file.", url)
        source_key = content_key(info)
        if info.get("partial") is False:  # the server said "Accept-Ranges: none"
            raise SlideError(f"Cannot open {url}: {_no_ranges('it says Accept-Ranges: none')}.",
                             url)
        fileobj = fs.open(key, "rb", block_size=REMOTE_BLOCK_BYTES, cache_type=REMOTE_CACHE_TYPE,
                          cache_options={"maxblocks": REMOTE_CACHE_BLOCKS})
    try:
        with remote_errors(url):
            head = _head_and_ranges(fileobj, url)
        return _open_file(location, fileobj, head, backend, source_key)
    except BaseException:
        fileobj.close()
        raise


def _open_file(location: SlideURL, fileobj: Any, head: bytes, backend: str,
               source_key: str) -> Slide:
    """The slide in the open remote file: TIFF (tile by tile; computed levels from their built
    file in the local cache where :mod:`.coarse` made one) or PNG/JPEG (fetched whole)."""
    from .coarse import use_built_levels
    from .image import open_image
    from .tiff import open_tiff

    url, kind = str(location), sniff(head)
    if kind == "tiff" and backend in ("auto", "tifffile"):
        return use_built_levels(open_tiff(location, fileobj, source_key))
    if kind in ("png", "jpeg") and backend in ("auto", "image"):
        with remote_errors(url):
            fileobj.seek(0)
            data = fileobj.read()
        fileobj.close()
        return open_image(location, kind, data, source_key)
    raise unreadable(url, head, backend, remote=True)


def _head_and_ranges(fileobj: Any, url: str) -> bytes:
    """The file's first bytes, after one read of its last byte: a server that ignores or
    refuses range requests fails here, at open, not in the middle of a run. Leaves the file at
    its start."""
    size = int(fileobj.size)
    if size > REMOTE_BLOCK_BYTES:
        fileobj.seek(size - 1)
        if len(fileobj.read(1)) != 1:
            raise SlideError(f"Cannot open {url}: {_no_ranges(NO_DATA)}.", url)
    fileobj.seek(0)
    head = bytes(fileobj.read(16))
    if len(head) < min(size, 16):
        raise SlideError(f"Cannot open {url}: {_no_ranges(NO_DATA)}.", url)
    fileobj.seek(0)  # tifffile reads a file object from where it stands
    return head


def filesystem(url: str, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` (this module's timeouts under ``storage_options``)
    and the object's path in it."""
    from fsspec.core import url_to_fs

    options = _merged(_default_options(scheme_of(url) or ""), storage_options)
    fs, key = url_to_fs(url, **options)
    if type(fs).__name__ == "S3FileSystem":
        fs.retries = 1  # botocore retries (S3_ATTEMPTS): s3fs need not retry those again
    return fs, key


def content_key(info: Mapping[str, Any]) -> str:
    """What identifies a remote object's content besides its URL, from fsspec's ``info``:
    its ETag (or generation, version) and size; its modification time where it has no ETag."""
    fields = {k.lower().replace("-", "").replace("_", ""): v for k, v in info.items()}
    tags = [f"{k}={fields[k]}" for k in ("etag", "versionid", "generation", "contentmd5",
                                         "md5hash") if fields.get(k)]
    if not tags:
        tags = [f"{k}={fields[k]}" for k in ("lastmodified", "mtime", "updated", "created")
                if fields.get(k)]
    return "|".join([f"size={info.get('size')}", *tags])


def _default_options(scheme: str) -> dict[str, Any]:
    """Timeouts (and few retries) for the schemes whose libraries take them."""
    if scheme in ("s3", "s3a"):
        return {"config_kwargs": {"connect_timeout": CONNECT_TIMEOUT_S,
                                  "read_timeout": READ_TIMEOUT_S,
                                  "retries": {"max_attempts": S3_ATTEMPTS, "mode": "standard"}}}
    if scheme in ("http", "https"):
        import aiohttp

        return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)}}
    return {}


def _merged(base: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` over ``base``, dictionaries merged key by key (the user's values win)."""
    out = dict(base)
    for k, v in given.items():
        out[k] = _merged(out[k], v) if isinstance(v, Mapping) and isinstance(
            out.get(k), Mapping) else v
    return out


def _open_omezarr(url: str, storage_options: Mapping[str, Any]) -> Slide:
    from .omezarr import open_omezarr_url

    return open_omezarr_url(url, storage_options)


def _no_ranges(why: str = "it ignores range requests: it sends the whole file when asked "
               "for a part") -> str:
    """The problem of a server that cannot send parts of a file (``why``)."""
    return (f"the server cannot send parts of the file ({why}), so the slide cannot be read "
            "tile by tile; download the file, or serve it from a server that supports HTTP "
            "range requests")


@contextlib.contextmanager
def remote_errors(url: str) -> Iterator[None]:
    """Whatever fsspec and its libraries raise about ``url``, as one :class:`SlideError`
    sentence naming it, the problem and what to do."""
    try:
        yield
    except SlideError:
        raise
    except Exception as exc:
        raise SlideError(f"Cannot open {url}: {problem(exc, url)}.", url) from exc


def problem(exc: BaseException, url: str) -> str:
    """What went wrong reading ``url``, as the part of a sentence after "Cannot open URL: "."""
    scheme, name = scheme_of(url) or "", type(exc).__name__
    text = " ".join(str(exc).split()).rstrip(".") or name
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    if isinstance(exc, ImportError) or "Install" in text and "protocol" in text.lower():
        package = _PACKAGES.get(scheme, "the fsspec implementation of its scheme")
        return (f"reading {scheme}:// URLs needs {package}, which is not installed; install it "
                f"with {CLOUD_INSTALL}")
    if "NoCredentialsError" in names:
        return ("no credentials were found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE), pass key and secret in storage_options, or anon: true for a "
                "public bucket")
    # before the rest: fsspec's http says FileNotFoundError for a server that did not answer
    if any(isinstance(e, (TimeoutError, asyncio.TimeoutError)) or "Timeout" in type(e).__name__
           for e in chain):
        return (f"the server did not answer in time (timeouts: {CONNECT_TIMEOUT_S} s to connect, "
                f"{READ_TIMEOUT_S} s to read, unless storage_options set others); check the "
                "endpoint (AWS_ENDPOINT_URL or the URL's host) and the network")
    refused = next((e for e in chain if isinstance(e, ConnectionError)
                    or "Connect" in type(e).__name__), None)
    if refused is not None:
        return (f"cannot connect to the server ({' '.join(str(refused).split()).rstrip('.')}); "
                "check the endpoint (AWS_ENDPOINT_URL or the URL's host) and the network")
    if isinstance(exc, PermissionError) or _status(chain) in (401, 403):
        return (f"access was denied ({text}); check the credentials (for s3://, "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or key and secret in "
                "storage_options) and that they may read this object")
    if isinstance(exc, FileNotFoundError) or _status(chain) == 404:
        return (f"there is no such object ({text}); check the bucket and the path in the URL")
    if isinstance(exc, ValueError) and "range requests" in text:
        return _no_ranges()
    if isinstance(exc, ValueError) and "protocol" in text.lower():
        return f"fsspec does not know {scheme}:// URLs ({text})"
    return f"{name}: {text}"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _status(chain: list[BaseException]) -> int | None:
    """The HTTP status an exception of ``chain`` carries (aiohttp's ``status``, botocore's
    ``response``), or None."""
    for e in chain:
        status = getattr(e, "status", None)
        if isinstance(status, int):
            return status
        response = getattr(e, "response", None)
        if isinstance(response, Mapping):
            code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(code, int):
                return code
    return None
