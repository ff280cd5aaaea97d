"""Where a slide is: a local path or an fsspec URL (``s3://``, ``https://``, ...), and the
names and recorded forms both give. Standard library only: no fsspec here.

A URL is never a :class:`pathlib.Path` (which collapses ``//`` and would resolve it against the
working folder): a remote slide's ``Slide.path`` is a :class:`SlideURL`, whose ``name`` and
``suffix`` read like a path's and whose ``str()`` is the URL as given.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

URL_SCHEMES = ("s3://", "s3a://", "gs://", "gcs://", "az://", "abfs://", "abfss://", "http://",
               "https://")


def is_url(path: object) -> bool:
    """True for an fsspec URL this package opens remotely (``s3://``, ``https://``, ...), given
    as a string or a :class:`SlideURL`."""
    if isinstance(path, SlideURL):
        return True
    return isinstance(path, str) and path.lower().startswith(URL_SCHEMES)


def scheme_of(path: object) -> str | None:
    """The scheme of a string that looks like a URL ('ftp' of 'ftp://host/a.svs'), else None
    (a local path, a Windows drive letter)."""
    if isinstance(path, SlideURL):
        path = path.url
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]+)://", path) if isinstance(path, str) else None
    return match.group(1).lower() if match else None


def url_key(url: str) -> str:
    """The object's path in ``url``, without a query string or fragment ('https://h/a.svs?x=1'
    -> '/a.svs'; 's3://b/a.svs' -> '/a.svs'), unquoted: what its name and suffix come from."""
    return unquote(urlsplit(url).path)


@dataclass(frozen=True)
class SlideURL:
    """A remote slide's location: ``str()`` is the URL, ``name`` and ``suffix`` its object's
    (the last part of its path, without a query string), as a Path's would be."""

    url: str

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        """The object's name: 'CMU-1.svs' of 's3://bucket/slides/CMU-1.svs'."""
        return PurePosixPath(url_key(self.url)).name or urlsplit(self.url).netloc

    @property
    def suffix(self) -> str:
        """The object's suffix, as given ('.svs')."""
        return PurePosixPath(self.name).suffix


def as_location(path: str | os.PathLike[str] | SlideURL) -> Path | SlideURL:
    """``path`` as a Slide's ``path``: a :class:`SlideURL` for a URL, else a :class:`Path`."""
    if is_url(path):
        return path if isinstance(path, SlideURL) else SlideURL(str(path))
    return Path(path)  # type: ignore[arg-type]


def source_name(path: str | os.PathLike[str] | SlideURL) -> str:
    """The file or object name of a slide given by path or URL ('CMU-1.svs')."""
    return as_location(path).name


def recorded_location(path: str | os.PathLike[str] | SlideURL) -> str:
    """How heatmaps and manifests record a slide: a URL as it is; a local path absolute, its
    symbolic links kept (the name the user gave the slide names the files)."""
    if is_url(path):
        return str(path)
    return os.path.abspath(os.fspath(path))  # type: ignore[arg-type]


def same_file_key(path: str | os.PathLike[str] | SlideURL) -> str:
    """What tells two slides given apart are one: a URL as it is, a path with its links
    followed."""
    if is_url(path):
        return str(path)
    return str(Path(path).resolve())  # type: ignore[arg-type]
