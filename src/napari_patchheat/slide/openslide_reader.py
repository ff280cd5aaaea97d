"""Slides read by OpenSlide 4 (openslide-python and the openslide-bin wheel): MIRAX (.mrxs),
Hamamatsu VMS/VMU, Sakura SVSLIDE, the TIFF variants tifffile cannot read, and DICOM WSI (a
folder of ``.dcm`` instances, or one of them) with ``backend="openslide"`` (``"auto"`` reads
DICOM with wsidicom: :mod:`.dicom`, which shares this module's DICOM file finding).

Each level OpenSlide reports is an :class:`OpenSlideLevel`, read region by region with
``read_region`` as RGBA (OpenSlide's alpha, not premultiplied: transparent where the scanner
stored nothing) and made RGB at once by the RGB rule (alpha over white), so a region of a
level reads only what it covers (dask passes the region into the read). Levels are OpenSlide's
``level_dimensions`` as they are: ``openslide.bounds-*`` (MRXS, the scanned area) are not
applied. No Qt, no TensorFlow.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import LoadedOnce, as_dask, region_key
from .errors import SlideError
from .formats import READS
from .metadata import openslide_metadata
from .pyramid import Slide, as_rgb8, local_source_key, rgb8_block

OPENSLIDE_TILE_PX = 512  # chunks' tile where OpenSlide reports no tile size for a level
DICOM_MAGIC_AT = 128  # "DICM" follows a 128-byte preamble
DICOM_PROBE_FILES = 32  # files without .dcm whose first bytes a folder check reads


class OpenSlideLevelWarning(UserWarning):
    """A level of a slide that OpenSlide cannot read was left out."""


def open_openslide(path: Path) -> Slide:
    """Open ``path`` with OpenSlide: a slide file, a DICOM WSI folder or one of its ``.dcm``
    files. ``Slide.path`` is ``path`` as given. Reads the metadata and one pixel per level.

    Raises :class:`SlideError` with one sentence naming the file and the problem.
    """
    try:
        import openslide  # noqa: F401  (the wheel's library is loaded here)
    except ImportError as exc:
        raise SlideError(f"Cannot open {path}: it needs OpenSlide, which is not installed "
                         f"(pip install openslide-python openslide-bin) ({exc}).", path) from exc
    handle = OpenSlideHandle(_dicom_instance(path) if path.is_dir() else path, path)
    try:
        return _slide_of(handle, path)
    except BaseException:
        handle.close()
        raise


class OpenSlideHandle:
    """An open OpenSlide slide that the levels of one :class:`Slide` share. OpenSlide keeps an
    error for good (every later call fails), so a failed read opens the file again for the next
    ones. Reads run in parallel (OpenSlide is thread-safe); :meth:`close` waits for those
    running (closing under a read would free its memory) and later ones fail."""

    def __init__(self, file: Path, path: Path) -> None:
        self.file, self.path = file, path  # the file OpenSlide opens; the path the user gave
        self.closed = False
        self._state = threading.Condition()  # guards slide, closed and the reads running
        self._reading = 0
        self.slide = self._open()
        # read once, while no error is kept
        self.properties: dict[str, str] = dict(self.slide.properties)

    def _open(self) -> Any:
        import openslide

        try:
            return openslide.OpenSlide(str(self.file))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideError(f"Cannot open {self.path}: OpenSlide does not recognise it as a "
                             f"slide ({exc or 'unsupported format'}); the plugin reads {READS}.",
                             self.path) from exc
        except (openslide.OpenSlideError, OSError) as exc:
            raise SlideError(f"Cannot open {self.path}: OpenSlide cannot read it ({exc}).",
                             self.path) from exc

    def read(self, level: int, x: int, y: int, w: int, h: int, where: str) -> np.ndarray:
        """RGBA uint8 (h, w, 4) of ``level`` at level-0 location (x, y); ``where`` names the
        level in the error."""
        return self._call(f"a {w} x {h} px region of the {where}",
                          lambda slide: slide.read_region((x, y), level, (w, h)))

    def associated(self, name: str) -> np.ndarray:
        """The associated image ``name`` as RGBA uint8 (h, w, 4)."""
        return self._call(f"the {name} image", lambda slide: slide.associated_images[name])

    def _call(self, what: str, read: Callable[[Any], Any]) -> np.ndarray:
        """``read(slide)`` as an array; OpenSlide's error is a SlideError on ``what``, and the
        file is opened again for the next reads (``read`` runs on the one it failed in)."""
        with self._state:
            if self.closed:
                raise SlideError(f"Cannot read {what} of {self.path}: the slide was closed.",
                                 self.path)
            slide = self.slide
            self._reading += 1
        try:
            return np.asarray(read(slide))
        except Exception as exc:  # OpenSlideError
            self._reopen(slide)
            raise SlideError(f"Cannot read {what} of {self.path}: OpenSlide: {exc}.",
                             self.path) from exc
        finally:
            with self._state:
                self._reading -= 1
                self._state.notify_all()

    def _reopen(self, broken: Any) -> None:
        """Open the file again after OpenSlide's error in ``broken`` (closed by the garbage
        collector once no read runs on it)."""
        with self._state:
            if self.slide is broken and not self.closed:
                try:
                    self.slide = self._open()
                except SlideError:
                    pass  # the next read fails again, with OpenSlide's reason

    def close(self) -> None:
        """Close the slide once the reads running finish; later reads raise
        :class:`SlideError`."""
        with self._state:
            if not self.closed:
                self.closed = True
                self._state.wait_for(lambda: self._reading == 0)
                self.slide.close()


class OpenSlideLevel:
    """One OpenSlide level as a numpy-like (Y, X, 3) RGB uint8 array: each read is one
    ``read_region`` of the region it touches (OpenSlide decodes the tiles under it), its
    alpha composited over white by :func:`pyramid.rgb8_block`."""

    def __init__(self, handle: OpenSlideHandle, level: int, where: str) -> None:
        slide = handle.slide
        w, h = slide.level_dimensions[level]
        self.handle, self.level, self.where = handle, level, where
        self.downsample = float(slide.level_downsamples[level])
        self.shape, self.dtype, self.ndim = (int(h), int(w), 3), np.dtype(np.uint8), 3
        th = handle.properties.get(f"openslide.level[{level}].tile-height")
        tw = handle.properties.get(f"openslide.level[{level}].tile-width")
        self.tile = (int(th), int(tw)) if th and tw else (OPENSLIDE_TILE_PX, OPENSLIDE_TILE_PX)

    def __getitem__(self, key: Any) -> np.ndarray:
        (y0, y1, x0, x1), sub = region_key(key, self.shape)
        if y1 <= y0 or x1 <= x0:
            return np.empty((y1 - y0, x1 - x0, 3), np.uint8)[sub]
        # the level-0 location OpenSlide divides by the downsample again (see docs/slides.md)
        x, y = round(x0 * self.downsample), round(y0 * self.downsample)
        rgba = self.handle.read(self.level, x, y, x1 - x0, y1 - y0, self.where)
        opaque = bool((rgba[..., 3] == 255).all())  # the rule keeps opaque pixels as they are
        return (rgba[..., :3] if opaque else rgb8_block(rgba))[sub]


def _slide_of(handle: OpenSlideHandle, path: Path) -> Slide:
    readers = _readable_levels(handle, path)
    vendor, mpp, power = openslide_metadata(handle.properties)
    profile = handle.slide.color_profile
    return Slide(
        path,
        [as_dask(r, f"{r.where} of {path}") for r in readers],
        vendor=vendor,
        mpp=mpp,
        objective_power=power,
        associated=_associated(handle),
        tile_shapes=[r.tile for r in readers],
        close=handle.close,
        icc_profile=None if profile is None else profile.tobytes(),
        source_key=local_source_key(handle.file),  # the file read (a folder's instance)
    )


def _readable_levels(handle: OpenSlideHandle, path: Path) -> list[OpenSlideLevel]:
    """OpenSlide's levels whose last tile it can read (one pixel each, so a broken file fails
    at open, not in napari). A level it cannot read there (a converter's short edge tiles) is
    left out with a warning; the slide cannot open when level 0 is one."""
    readers, unreadable = [], []
    for k in range(handle.slide.level_count):
        reader = OpenSlideLevel(handle, k, f"level {k}")
        try:
            reader[reader.shape[0] - 1 :, reader.shape[1] - 1 :]
        except SlideError as exc:
            reason = exc.__cause__ or exc
            if k == 0:
                raise SlideError(f"Cannot open {path}: OpenSlide cannot read its level 0 "
                                 f"({reason}).", path) from exc
            unreadable.append((k, reason))
            continue
        readers.append(reader)
    if unreadable:
        which = (f"level {unreadable[0][0]}, which is" if len(unreadable) == 1 else
                 f"levels {', '.join(str(k) for k, _ in unreadable)}, which are")
        warnings.warn(f"{path.name}: OpenSlide cannot read the last tile of its {which} left "
                      f"out ({unreadable[0][1]}); the other levels serve instead.",
                      OpenSlideLevelWarning, stacklevel=6)
    return readers


def _associated(handle: OpenSlideHandle) -> dict[str, Any]:
    """The associated images (label, macro, thumbnail) as lazy RGB dask arrays, by lower-case
    name; each is decoded once, on its first read."""
    props, associated = handle.properties, {}
    for name in handle.slide.associated_images:
        shape = tuple(int(props.get(f"openslide.associated.{name}.{side}", 0))
                      for side in ("height", "width")) + (4,)
        if all(shape) and name.lower() not in associated:
            image = LoadedOnce(functools.partial(handle.associated, name), shape, "uint8")
            associated[name.lower()] = as_rgb8(as_dask(image, f"{name} of {handle.path}"))
    return associated


def dicom_files(folder: Path, probe: int | None = None) -> list[Path]:
    """The DICOM files of ``folder``: its ``.dcm`` files, and the files that start as DICOM
    ("DICM" after 128 bytes; exports often have no suffix) among the first ``probe`` others
    (all of them with None)."""
    entries = sorted(p for p in folder.iterdir() if p.is_file())
    named = [p for p in entries if p.suffix.lower() == ".dcm"]
    others = [p for p in entries if p.suffix.lower() != ".dcm"][:probe]
    return named + [p for p in others if starts_as_dicom(p)]


def starts_as_dicom(path: Path) -> bool:
    """True when the file ``path`` holds "DICM" after its 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            fh.seek(DICOM_MAGIC_AT)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_instance(folder: Path) -> Path:
    """The DICOM file of ``folder`` that OpenSlide opens as a DICOM slide: the first of them,
    largest first (a pyramid level, not a label), whose format OpenSlide detects as DICOM."""
    import openslide

    files = sorted(dicom_files(folder), key=lambda p: -p.stat().st_size)
    reasons = []  # OpenSlide's, largest file first
    for file in files:
        try:
            if openslide.OpenSlide.detect_format(str(file)) != "dicom":
                continue
            with openslide.OpenSlide(str(file)):
                return file
        except (openslide.OpenSlideError, OSError) as exc:
            reasons.append(str(exc))
    reason = reasons[0] if reasons else "none is a DICOM file OpenSlide recognises"
    plural = "" if len(files) == 1 else "s"
    raise SlideError(f"Cannot open {folder}: OpenSlide finds no DICOM slide in its {len(files)} "
                     f"DICOM file{plural} ({reason}: a label or overview without the pyramid's "
                     "levels is not a slide); open the folder that holds the whole slide.", folder)
