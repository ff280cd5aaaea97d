"""``open_slide(path) -> Slide``: which reader a file goes to, by its first bytes.

TIFF-based formats go to :func:`tiff.open_tiff` (read tile by tile; computed levels from
their built file where :mod:`.coarse` made one), PNG and JPEG to :func:`image.open_image`
(decoded whole on first read). No Qt, no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from .coarse import use_built_levels
from .errors import SlideError
from .image import open_image
from .pyramid import Slide
from .tiff import open_tiff

# the file names a slide reader takes (napari's reader claims these)
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".png", ".jpg", ".jpeg")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC, _JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


def open_slide(path: str | Path) -> Slide:
    """Open a slide lazily (reads metadata and one tile): TIFF-based formats, PNG or JPEG.

    Raises :class:`SlideError` with one sentence naming the file and the problem.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise SlideError(f"Cannot open {path}: there is no such file.", path)
    if path.is_dir():
        raise SlideError(f"Cannot open {path}: it is a directory, not a slide file.", path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise SlideError(f"Cannot open {path}: {exc.strerror or exc}.", path) from exc
    if head[:4] in _TIFF_MAGIC:
        return use_built_levels(open_tiff(path))
    if head.startswith(_PNG_MAGIC):
        return open_image(path, "png")
    if head.startswith(_JPEG_MAGIC):
        return open_image(path, "jpeg")
    what = "it is empty" if not head else f"it starts with bytes {head.hex(' ')}"
    raise SlideError(f"Cannot open {path}: it is not a TIFF, PNG or JPEG file ({what}).", path)
