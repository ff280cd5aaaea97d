"""DICOM WSI (VL Whole Slide Microscopy) read by wsidicom: a folder of instances, or one of its
``.dcm`` files (then the folder's instances of that file's series).

Each pyramid level wsidicom finds is a :class:`DicomLevel`, read frame by frame (wsidicom gives
the encoded frames), never resampled. JPEG frames are decoded by imagecodecs' libjpeg-turbo (as
tifffile and OpenSlide decode them) in the colours the JPEG stream says (a JFIF or Adobe
marker), else as the header's photometric interpretation says: converters write YCbCr JFIF
frames under a header that says RGB (the test folder's levels 1-4), which wsidicom's own
decoder and OpenSlide show with wrong colours. Other transfer syntaxes use wsidicom's decoder.
A frame shorter than the tile (converters write short frames at the right and bottom edges) is
placed as it is; the level's extent cuts the rest. Frames a read covers only in part stay in
the shared edge-tile cache (``tile_cache.EDGE_TILES``). wsidicom reads a file's frames under
its own lock per file, so dask's threads decode in parallel. No Qt, no TensorFlow.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..grid import Needed
from .arrays import as_dask, read_tiled, region_key
from .errors import SlideError
from .openslide_reader import dicom_files
from .pyramid import Slide, as_rgb8, local_source_key
from .tiff_level import _check_samples
from .tile_cache import EDGE_TILES

VENDOR = "dicom"  # OpenSlide's vendor name for DICOM WSI
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
JPEG_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")  # baseline, extended
JPEG_SOS, JPEG_APP0, JPEG_APP14 = 0xDA, 0xE0, 0xEE  # start of scan, JFIF, Adobe markers
WSIDICOM_CACHE_BYTES = 16 * 2**20  # wsidicom's frame caches per slide (decoded tiles: ours)
HEADER_END = 0x5200  # the functional groups' group: headers are read up to it
NOT_LEVELS = ("LABEL", "OVERVIEW", "THUMBNAIL")  # ImageType values of instances besides levels

_LEVEL_NUMBERS = itertools.count()  # edge-tile cache keys: a number per level reader


def open_dicom(path: Path) -> Slide:
    """Open the DICOM WSI folder ``path``, or the slide of its file ``path``, with wsidicom
    (reads the instances' headers and one frame). ``Slide.path`` is ``path`` as given.

    Raises :class:`SlideError` with one sentence naming the path and the problem.
    """
    files = _series_files(path)
    handle = DicomHandle(path, files)
    try:
        return _slide_of(handle)
    except BaseException:
        handle.close()
        raise


class DicomHandle:
    """An open ``WsiDicom`` that the levels of one :class:`Slide` share; :meth:`close` closes
    its files and makes later reads a :class:`SlideError`."""

    def __init__(self, path: Path, files: list[Path]) -> None:
        from wsidicom import WsiDicom
        from wsidicom.errors import WsiDicomNotFoundError

        self.path, self.closed = path, False
        try:
            self.wsi = WsiDicom.open(files)
        except WsiDicomNotFoundError:
            raise SlideError(f"Cannot open {path}: {_why_no_levels(files)}.", path) from None
        except Exception as exc:  # wsidicom, pydicom: many types on broken files
            raise SlideError(f"Cannot open {path}: wsidicom cannot read it "
                             f"({type(exc).__name__}: {exc}).", path) from exc
        self.wsi.resize_cache(WSIDICOM_CACHE_BYTES)

    def call(self, what: str, read: Callable[[], Any]) -> Any:
        """``read()``; its error, or a closed slide, is a SlideError on ``what``."""
        if self.closed:
            raise SlideError(f"Cannot read {what} of {self.path}: the slide was closed.",
                             self.path)
        try:
            return read()
        except Exception as exc:
            problem = "the slide was closed" if self.closed else f"{type(exc).__name__}: {exc}"
            raise SlideError(f"Cannot read {what} of {self.path}: {problem}.",
                             self.path) from exc

    def close(self) -> None:
        """Close the files (once); later reads raise :class:`SlideError`."""
        if not self.closed:
            self.closed = True
            self.wsi.close()


class DicomLevel:
    """One pyramid level as a numpy-like (Y, X, C) array that decodes frames on demand."""

    def __init__(self, handle: DicomHandle, level: Any, where: str) -> None:
        self.handle, self.where = handle, where
        instance = level.default_instance
        self.data = instance.image_data
        self.z, self.optical_path = self.data.default_z, self.data.default_path
        size, tile = self.data.image_size, self.data.tile_size
        self.dtype = np.dtype(np.uint8 if self.data.bits <= 8 else np.uint16)
        self.fill = 255 if self.dtype == np.uint8 else 65535  # glass, past a short frame
        channels = int(self.data.samples_per_pixel)
        _check_samples(handle.path, where, self.dtype, channels, 0)
        self.shape, self.ndim = (int(size.height), int(size.width), channels), 3
        self.tile = (int(tile.height), int(tile.width))
        self.file = Path(str(self.data.files[0]))  # the level's (first) instance file
        self.jpeg = str(self.data.transfer_syntax) in JPEG_SYNTAXES
        self.rgb = self.data.photometric_interpretation == "RGB"
        self.has_absent_tiles = False  # a sparse instance's missing frames read as blank
        self._number = next(_LEVEL_NUMBERS)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read_tiles(key)

    def read_tiles(self, key: Any, map_fn: Callable[..., Iterable[Any]] = map,
                   needed: Needed | None = None) -> np.ndarray:
        """``self[key]``, decoding the frames it touches through ``map_fn`` (an executor's
        ``map``: on its threads); with ``needed``, only the frames whose level-pixel extent it
        says True to (the others' pixels are undefined)."""
        region, sub = region_key(key, self.shape)
        return read_tiled(region, self.shape, self.dtype, self.tile, self.fill, self._tile,
                          map_fn=map_fn, needed=needed)[sub]

    def _tile(self, layer: int, ty: int, tx: int, whole: bool) -> np.ndarray:
        """Frame (tx, ty) (``layer`` 0: one frame holds every channel), through the edge-tile
        cache where a read covers it only in part (not ``whole``)."""
        return self.decode_tile(ty, tx) if whole else self._edge_tile(ty, tx)

    def decode_tile(self, ty: int, tx: int) -> np.ndarray:
        """Frame (tx, ty) of the level decoded to (h, w, samples), as stored (an edge frame
        may be shorter than the tile)."""
        from wsidicom.geometry import Point

        def read() -> np.ndarray:
            frame = self.data.get_encoded_tile(Point(tx, ty), self.z, self.optical_path)
            if not self.jpeg:
                return np.asarray(self.data.decoder.decode(frame))
            import imagecodecs

            colors = "RGB" if self.rgb and not _jpeg_says_its_colors(frame) else None
            return imagecodecs.jpeg8_decode(frame, colorspace=colors, outcolorspace=colors)

        tile = self.handle.call(f"tile ({tx}, {ty}) of the {self.where}", read)
        return tile.reshape(tile.shape[:2] + (self.shape[2],))

    def _edge_tile(self, ty: int, tx: int) -> np.ndarray:
        """Frame (tx, ty) through the shared cache of tiles read in part."""
        tile = EDGE_TILES.through((self._number, ty, tx), lambda: self.decode_tile(ty, tx))
        assert tile is not None  # a frame always decodes to pixels
        return tile

    @property
    def cached_edge_tiles(self) -> int:
        """How many of this level's frames the edge-tile cache holds now."""
        return EDGE_TILES.count(self._number)

    def forget_tiles(self) -> None:
        """Drop this level's frames from the edge-tile cache (the slide is closed)."""
        EDGE_TILES.drop(self._number)


def _jpeg_says_its_colors(frame: bytes) -> bool:
    """True when a JPEG stream's header holds a JFIF (APP0) or Adobe (APP14) marker, which say
    its colour transform (libjpeg-turbo follows them when not told otherwise)."""
    i = 2  # after SOI
    while i + 4 <= len(frame) and frame[i] == 0xFF:
        marker, length = frame[i + 1], int.from_bytes(frame[i + 2 : i + 4], "big")
        if marker == JPEG_SOS:
            return False
        body = frame[i + 4 : i + 4 + 5]
        if (marker, body) in ((JPEG_APP0, b"JFIF\0"), (JPEG_APP14, b"Adobe")):
            return True
        i += 2 + length
    return False


def _slide_of(handle: DicomHandle) -> Slide:
    wsi, path = handle.wsi, handle.path
    readers = [DicomLevel(handle, level, f"level {k}")
               for k, level in enumerate(wsi.pyramid.levels)]
    readers[-1].decode_tile(0, 0)  # codec and data fail at open, not in napari
    spacing = wsi.pyramid.pixel_spacing  # mm per pixel
    mpp = None if spacing is None else (float(spacing.height) * 1000,
                                        float(spacing.width) * 1000)
    optical = _optical_path(wsi)
    objective = getattr(optical, "objective", None)
    power = getattr(objective, "objective_power", None)
    return Slide(
        path,
        [as_dask(r, f"{r.where} of {path}") for r in readers],
        vendor=VENDOR,
        mpp=mpp,
        objective_power=None if power is None else float(power),
        associated=_associated(handle),
        tile_shapes=[r.tile for r in readers],
        close=handle.close,
        tile_readers=readers,
        icc_profile=getattr(optical, "icc_profile", None) or None,
        source_key=local_source_key(readers[0].file),  # the level-0 instance's file
    )


def _optical_path(wsi: Any) -> Any:
    """The pyramid's first optical path's metadata (ICC profile, objective), or None."""
    try:
        paths = wsi.pyramid.metadata.optical_paths
    except Exception:  # metadata wsidicom cannot parse: the pixels still read
        return None
    return paths[0] if paths else None


def _associated(handle: DicomHandle) -> dict[str, Any]:
    """Label, overview (named "macro", as OpenSlide does) and thumbnail as lazy RGB dask
    arrays read frame by frame as the levels are (the largest of each kind)."""
    wsi = handle.wsi
    series = {"label": wsi.labels, "macro": wsi.overviews, "thumbnail": wsi.pyramid.thumbnails}
    associated = {}
    for name, images in series.items():
        groups = list(images.groups) if images is not None else []
        if not groups:
            continue
        group = max(groups, key=lambda g: g.size.width * g.size.height)
        reader = DicomLevel(handle, group, f"{name} image")
        associated[name] = as_rgb8(as_dask(reader, f"{name} of {handle.path}"))
    return associated


def _series_files(path: Path) -> list[Path]:
    """The DICOM files wsidicom opens for ``path``: a folder's DICOM files, or the files of a
    file's folder that belong to its series (the file's own slide)."""
    if path.is_dir():
        files = dicom_files(path)
        if not files:
            raise SlideError(f"Cannot open {path}: the folder holds no DICOM file.", path)
        return files
    series = _header(path).get("SeriesInstanceUID") if _is_dicom(path) else None
    if series is None:
        raise SlideError(f"Cannot open {path}: it is not a DICOM file (no 'DICM' after its "
                         "128-byte preamble, or no series UID); open a DICOM WSI folder or "
                         "one of its .dcm files.", path)
    return [f for f in dicom_files(path.parent)
            if f == path or _header(f).get("SeriesInstanceUID") == series]


def _is_dicom(path: Path) -> bool:
    from .openslide_reader import starts_as_dicom

    return starts_as_dicom(path)


def _header(path: Path) -> Any:
    """A DICOM file's header up to its functional groups (which can be large), or an empty
    dict where pydicom cannot read it."""
    from pydicom.filereader import read_partial

    try:
        with open(path, "rb") as fh:
            return read_partial(fh, stop_when=lambda tag, vr, length: tag.group >= HEADER_END)
    except Exception:  # pydicom raises many types on broken files
        return {}


def _why_no_levels(files: list[Path]) -> str:
    """Why wsidicom found no pyramid level in ``files``: what each kind of file holds."""
    from pydicom.uid import UID
    from wsidicom.codec.decoder import Decoder

    kinds: dict[str, int] = {}
    for file in files:
        header: Any = _header(file) if _is_dicom(file) else {}
        if not header:
            kind = "not DICOM"
        elif str(header.get("SOPClassUID", "")) != WSI_SOP_CLASS:
            kind = "DICOM but not a slide image"
        else:
            image_type = str((list(header.get("ImageType", [])) + ["", "", ""])[2]).upper()
            syntax = UID(str(header.file_meta.TransferSyntaxUID))
            if image_type not in NOT_LEVELS and Decoder.select_decoder(
                    syntax, int(header.get("SamplesPerPixel", 3)),
                    int(header.get("BitsStored", 8))) is None:
                return (f"{file.name} is compressed as {syntax.name or syntax}, which this "
                        "installation cannot decode; install or update imagecodecs "
                        "(pip install -U imagecodecs)")
            kind = (f"{image_type.lower()} image" if image_type in NOT_LEVELS
                    else "unreadable level")
        kinds[kind] = kinds.get(kind, 0) + 1
    what = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    files_hold = "file holds" if len(files) == 1 else "files hold"
    return (f"its {len(files)} DICOM {files_hold} no whole-slide pyramid level ({what}); "
            "open the folder that holds the whole slide")
