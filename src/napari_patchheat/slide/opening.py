"""``open_slide(path_or_url, backend="auto") -> Slide``: which backend reads a slide.

Backends (see docs/slides.md for the table of formats x backends and the file that tests each):

- ``"tifffile"``: TIFF-based formats (:func:`tiff.open_tiff`, tile by tile, computed levels from
  their built file where :mod:`.coarse` made one), local or remote (:mod:`.remote`);
- ``"openslide"``: OpenSlide 4 (``openslide-bin`` wheel): MRXS, VMS/VMU, SVSLIDE, the TIFF
  variants tifffile cannot read, and DICOM WSI when asked for (:mod:`.openslide_reader`); local
  files only;
- ``"dicom"``: DICOM WSI folders and ``.dcm`` files through wsidicom (:mod:`.dicom`); local only;
- ``"zarr"``: OME-Zarr (NGFF 0.4, 0.5), local or remote (:mod:`.omezarr`);
- ``"image"``: PNG and JPEG, decoded whole on first read (:func:`image.open_image`).

``"auto"`` picks by the first bytes, the suffix and the folder's content. No Qt, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .coarse import use_built_levels
from .errors import SlideError
from .formats import (
    DICOM_MAGIC_AT,
    DICOM_SUFFIXES,
    JPEG_MAGIC,
    OPENSLIDE_SUFFIXES,
    PNG_MAGIC,
    READS,
    TIFF_MAGIC,
    unreadable,
)
from .image import open_image
from .location import URL_SCHEMES, is_url, scheme_of
from .pyramid import Slide
from .tiff import open_tiff

BACKENDS = ("auto", "tifffile", "openslide", "dicom", "zarr", "image")


def open_slide(path: str | Path, backend: str = "auto",
               storage_options: Mapping[str, Any] | None = None) -> Slide:
    """Open a slide lazily (reads metadata and one tile) from a local path or an fsspec URL
    (``s3://``, ``gs://``, ``az://``, ``http(s)://``; ``storage_options`` go to fsspec).

    ``backend``: one of :data:`BACKENDS`; ``"auto"`` picks one by the file's first bytes, its
    suffix and, for a folder, what it holds (a DICOM series, an OME-Zarr).
    Raises :class:`SlideError` with one sentence naming the file and the problem.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}.")
    if is_url(path):
        from .remote import open_remote

        return open_remote(str(path), backend, storage_options or {})
    if scheme_of(path):
        raise SlideError(f"Cannot open {path}: {scheme_of(path)}:// URLs are not read; give a "
                         f"local path or a URL starting with {', '.join(URL_SCHEMES)}.", path)
    return _open_local(Path(path).expanduser(), backend)


def _open_local(path: Path, backend: str) -> Slide:
    if not path.exists():
        raise SlideError(f"Cannot open {path}: there is no such file.", path)
    if backend == "zarr" or (backend == "auto" and _is_zarr(path)):
        from .omezarr import open_omezarr

        return open_omezarr(path)
    if backend == "openslide":
        from .openslide_reader import open_openslide

        return open_openslide(path)
    if backend == "dicom" or (backend == "auto" and _is_dicom_folder(path)):
        from .dicom import open_dicom

        return open_dicom(path)
    if path.is_dir() and backend != "auto":
        raise SlideError(f"Cannot open {path} with backend {backend!r}: it is a folder (a DICOM "
                         "WSI folder opens with 'dicom' or 'openslide', an OME-Zarr with "
                         "'zarr'); try backend 'auto'.", path)
    if path.is_dir():
        raise SlideError(f"Cannot open {path}: it is a directory that holds no DICOM slide or "
                         f"OME-Zarr image; the plugin reads {READS}.", path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(DICOM_MAGIC_AT + 4)
    except OSError as exc:
        raise SlideError(f"Cannot open {path}: {exc.strerror or exc}.", path) from exc
    # before the magic numbers: a DICOM file can be a TIFF too (dual personality)
    if backend == "auto" and (path.suffix.lower() in DICOM_SUFFIXES
                              or head[DICOM_MAGIC_AT:] == b"DICM"):
        from .dicom import open_dicom

        return open_dicom(path)
    if backend == "auto" and path.suffix.lower() in OPENSLIDE_SUFFIXES:
        from .openslide_reader import open_openslide

        return open_openslide(path)
    if backend in ("auto", "tifffile") and head[:4] in TIFF_MAGIC:
        try:
            return use_built_levels(open_tiff(path))
        except SlideError as tiff_error:
            if backend == "tifffile" or _openslide_format(path) in (None, "generic-tiff"):
                raise
            from .openslide_reader import open_openslide

            try:  # a vendor TIFF tifffile cannot read (Philips, some BIF, SCN)
                return open_openslide(path)
            except SlideError:
                raise tiff_error from None
    if backend in ("auto", "image") and head.startswith(PNG_MAGIC):
        return open_image(path, "png")
    if backend in ("auto", "image") and head.startswith(JPEG_MAGIC):
        return open_image(path, "jpeg")
    if backend == "auto" and _openslide_format(path):
        from .openslide_reader import open_openslide

        return open_openslide(path)
    raise unreadable(path, head, backend)


def is_slide_folder(path: str | Path) -> bool:
    """A folder that :func:`open_slide` reads: a DICOM WSI series or an OME-Zarr."""
    path = Path(path)
    return _is_zarr(path) or _is_dicom_folder(path)


def _is_zarr(path: Path) -> bool:
    """A folder holding a zarr group (v2 ``.zgroup``/``.zattrs``, v3 ``zarr.json``)."""
    return path.is_dir() and any((path / n).is_file() for n in ("zarr.json", ".zattrs",
                                                                ".zgroup"))


def _is_dicom_folder(path: Path) -> bool:
    """A folder holding DICOM files (a DICOM WSI series): ``.dcm`` files, or files that start
    as DICOM among the first few others."""
    if not path.is_dir():
        return False
    from .openslide_reader import DICOM_PROBE_FILES, dicom_files

    return bool(dicom_files(path, DICOM_PROBE_FILES))


def _openslide_format(path: Path) -> str | None:
    """The vendor OpenSlide recognises the file as ("aperio", "mrxs", "generic-tiff", ...), or
    None (not recognised, or OpenSlide not installed)."""
    try:
        import openslide
    except ImportError:
        return None
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except Exception:  # an unreadable file: the caller's error says so
        return None
