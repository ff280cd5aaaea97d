"""Opening a TIFF slide: which series is the slide, its stored levels, associated images, metadata.

Aperio SVS, OME-TIFF with SubIFDs, multi-page pyramids, Hamamatsu NDPI, Leica SCN, Ventana BIF,
plain tiled or striped TIFF. Each stored level is read by a :class:`TiffLevel`; the metadata
comes from :func:`tiff_metadata`. No Qt, no TensorFlow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from .arrays import as_dask
from .errors import SlideError
from .location import SlideURL
from .metadata import channel_names, tiff_metadata
from .pyramid import Slide, as_rgb8
from .tiff_level import TiffLevel

ASSOCIATED_NAMES = ("thumbnail", "label", "macro", "map", "overview")
ICC_PROFILE_TAG = 34675  # InterColorProfile: the ICC profile of the page's colours


def open_tiff(path: Path | SlideURL, fileobj: BinaryIO | None = None,
              source_key: str | None = None) -> Slide:
    """Open the TIFF at ``path`` as a :class:`Slide` (reads its directories and one tile); a
    remote one (``path`` a :class:`SlideURL`) from ``fileobj``, an open seekable binary file
    (closed with the slide), whose content ``source_key`` identifies (see :class:`Slide`).

    Raises :class:`SlideError` with one sentence naming the file and the problem.
    """
    import tifffile

    try:
        tif = (tifffile.TiffFile(Path(str(path))) if fileobj is None
               else tifffile.TiffFile(fileobj, name=path.name))
        all_series = list(tif.series)
    except Exception as exc:  # tifffile raises many types on broken files
        raise SlideError(f"Cannot open {path}: it is not a readable TIFF ({exc}).", path) from exc
    close = tif.close if fileobj is None else _closing_both(tif, fileobj)
    try:
        return _slide_of(tif, all_series, path, close, source_key)
    except SlideError:
        close()
        raise
    except Exception as exc:
        close()
        raise SlideError(f"Cannot open {path}: {type(exc).__name__}: {exc}.", path) from exc


def _closing_both(tif: Any, fileobj: BinaryIO) -> Callable[[], None]:
    """Closes ``tif`` and the file object it reads (tifffile leaves a given one open)."""

    def close() -> None:
        tif.close()
        fileobj.close()

    return close


def _slide_of(tif: Any, all_series: list[Any], path: Path | SlideURL,
              close: Callable[[], None], source_key: str | None) -> Slide:
    """The slide of an open TIFF: its largest series not named as an associated image."""
    images = [s for s in all_series if len(s.shape) >= 2 and s.size > 0]
    if not images:
        raise SlideError(
            f"Cannot open {path}: the TIFF holds no readable image{_why_no_image(tif)}.", path
        )
    main = max(images, key=lambda s: (s.name.lower() not in ASSOCIATED_NAMES, _area(s)))
    readers = [
        TiffLevel(lv, path, f"level {k}")
        for k, lv in enumerate(sorted(main.levels, key=lambda s: -_area(s)))
    ]
    readers[-1].check_one_tile()  # codecs and data, on the smallest tile set
    page, index = readers[0].pages[0].keyframe, all_series.index(main)
    vendor, mpp, power = tiff_metadata(tif, page, index)
    return Slide(
        path,
        [as_dask(r, f"{r.where} of {path.name}") for r in readers],
        vendor=vendor,
        mpp=mpp,
        objective_power=power,
        associated=_associated(images, main, all_series, path),
        tile_shapes=[r.tile for r in readers],
        premultiplied=readers[0].premultiplied,
        close=close,
        tile_readers=readers,
        channel_names=channel_names(tif, page, index),
        icc_profile=_icc_profile(page),
        source_key=source_key,
    )


def _icc_profile(page: Any) -> bytes | None:
    """The ICC profile the level-0 page carries (tag InterColorProfile), or None."""
    value = page.tags.valueof(ICC_PROFILE_TAG)
    return bytes(value) if value else None


def _associated(images: list[Any], main: Any, all_series: list[Any], path: Path | SlideURL
                ) -> dict[str, Any]:
    """The other images (label, macro, thumbnail, ...) as RGB dask arrays, by lower-case name;
    an unreadable one is left out."""
    associated = {}
    for s in images:
        name = s.name.lower() or f"series {all_series.index(s)}"
        if s is not main and name not in associated:
            with contextlib.suppress(Exception):
                associated[name] = as_rgb8(as_dask(TiffLevel(s, path, name), name))
    return associated


def _why_no_image(tif: Any) -> str:
    """Where a TIFF's first image directory lies beyond its end: a truncated copy."""
    fh = tif.filehandle
    with fh.lock:
        fh.seek(0)
        head = fh.read(16)
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    offset = int.from_bytes(head[8:16] if big else head[4:8], "little" if order == "<" else "big")
    size = fh.size
    if offset >= size:
        return (f" (the file is truncated: its first image directory is at byte {offset}, "
                f"the file has {size})")
    return ""


def _area(series: Any) -> int:
    """Pixels (Y x X) of a tifffile series."""
    axes, shape = series.axes, series.shape
    return int(shape[axes.index("Y")]) * int(shape[axes.index("X")])
