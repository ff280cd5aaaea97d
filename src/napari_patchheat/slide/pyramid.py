"""Whole-slide images as lazy pyramids of dask arrays: ``open_slide(path) -> Slide``.

TIFF slides (Aperio SVS, OME-TIFF with SubIFDs, multi-page pyramids, Hamamatsu NDPI, Leica SCN,
Ventana BIF, plain tiled or striped TIFF) are read tile by tile: a read decodes only the file's
tiles (or NDPI strips) it touches, with tifffile's own decoders, straight from the file (no zarr
layer: a zarr 3 store costs ~0.5 ms per chunk and ties tifffile and zarr versions together).
PNG and JPEG are decoded whole, once, on first read. Nothing here imports Qt or TensorFlow.

``Slide.levels`` are what models and napari get, RGB uint8 (Y X 3), by one rule:

- 8-bit samples are kept; 16-bit samples are scaled to 8 bits (x * 255 / 65535, rounded); other
  sample types (float, signed, 32-bit) are refused when the slide is opened;
- 1 channel (grayscale) is copied to R, G and B; 2 channels are grayscale + alpha;
- alpha is composited over white (the glass): c * a + 255 * (1 - a), or c + 255 * (1 - a) where
  the file says its alpha is premultiplied; missing tiles of RGB slides read as white;
- more than 4 channels (multiplexed fluorescence), CMYK and volumes are refused.

``Slide.raw_levels`` keep the file's own samples (its dtype, Y X C) of the stored levels.
The tile reader is ``tiff_level``, the metadata parsing ``metadata``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import dask.array as da
import numpy as np

from .errors import SlideError
from .metadata import MPP_PLAUSIBLE_UM, _tiff_metadata  # noqa: F401 (public here)
from .tiff_level import CHUNK_TARGET_PX, _dask, _TiffLevel

PYRAMID_TOP_PX = 2048  # levels are added by 2x coarsening until the longer side fits this
COMPUTED_CACHE_BYTES = 64 * 2**20  # computed levels this small are kept once computed
ASSOCIATED_NAMES = ("thumbnail", "label", "macro", "map", "overview")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC, _JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


class Slide:
    """An open whole-slide image: a lazy pyramid (``levels``) and what the file says about it.

    ``levels``: dask arrays, RGB uint8, Y X 3, largest first, chunked on the file's tiles
    (grouped to ~``CHUNK_TARGET_PX``); stored levels first, then computed ones (2x coarsenings)
    until the smallest fits ``PYRAMID_TOP_PX``. ``downsamples[k]`` = level-0 size / level-k size
    per axis (dy, dx). ``mpp``: (y, x) µm per level-0 pixel, or None. Use as a context manager,
    or call ``close()``: reading afterwards raises :class:`SlideError`.
    """

    def __init__(
        self,
        path: Path,
        raw_levels: list[da.Array],
        *,
        vendor: str,
        mpp: tuple[float, float] | None = None,
        objective_power: float | None = None,
        associated: dict[str, da.Array] | None = None,
        tile_shapes: list[tuple[int, int]] | None = None,
        premultiplied: bool = False,
        close: Callable[[], None] | None = None,
        tile_readers: list[Any] | None = None,
    ) -> None:
        self.path = path
        self._tile_readers = tile_readers or []
        self.raw_levels = raw_levels
        self.vendor = vendor
        self.mpp = mpp
        self.objective_power = objective_power
        self.associated = associated or {}
        self.tile_shapes = tile_shapes or [tuple(r.chunksize[:2]) for r in raw_levels]
        self.stored_level_count = len(raw_levels)
        self.levels, self.downsamples = rgb_pyramid(raw_levels, premultiplied)
        stat = path.stat()
        shapes = [lv.shape for lv in self.levels]
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{shapes}"
        self.identity = hashlib.sha1(key.encode()).hexdigest()
        self._close = close

    def reader(self, level: int) -> Any:
        """An array-like of ``levels[level]`` for reading large regions: the file's tile reader
        where the level is stored as 8-bit RGB (no dask graph per read; ``read_tiles(key,
        map_fn)`` decodes on the threads of an executor's map), else the dask level itself."""
        if level < len(self._tile_readers) and self.levels[level] is self.raw_levels[level]:
            return self._tile_readers[level]
        return self.levels[level]

    @property
    def shape(self) -> tuple[int, int]:
        """Level-0 (height, width) in pixels."""
        return int(self.levels[0].shape[0]), int(self.levels[0].shape[1])

    def level_mpp(self, level: int) -> tuple[float, float] | None:
        """(y, x) µm per pixel of ``level``, or None when the slide's pixel size is unknown."""
        if self.mpp is None:
            return None
        dy, dx = self.downsamples[level]
        return self.mpp[0] * dy, self.mpp[1] * dx

    def level_for_mpp(self, mpp: float) -> int:
        """Index of the level whose µm/px is closest to ``mpp`` (on a log scale)."""
        if self.mpp is None:
            raise SlideError(
                f"{self.path} has no pixel size (µm/px) in its metadata, so no level can be "
                "chosen by µm/px: choose the level by its index.",
                self.path,
            )
        if not mpp > 0:
            raise ValueError(f"mpp={mpp!r} must be a positive number of µm per pixel.")
        errors = []
        for level in range(len(self.levels)):
            y, x = self.level_mpp(level)  # type: ignore[misc]
            errors.append(abs(math.log(math.sqrt(y * x) / mpp)))
        return int(np.argmin(errors))

    def thumbnail(self, max_px: int = 512) -> np.ndarray:
        """The whole slide as RGB uint8 (H, W, 3) whose longer side is ``max_px`` (or less)."""
        from PIL import Image

        level = thumbnail_level([lv.shape for lv in self.levels], max_px)
        image = Image.fromarray(np.asarray(self.levels[level]))
        image.thumbnail((max_px, max_px), Image.Resampling.BOX)
        return np.asarray(image)

    def close(self) -> None:
        """Close the file. The dask arrays cannot be read afterwards."""
        if self._close is not None:
            self._close()
            self._close = None
        for reader in self._tile_readers:
            reader.forget_tiles()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        shapes = ", ".join(f"{lv.shape[0]}x{lv.shape[1]}" for lv in self.levels)
        return f"Slide({str(self.path)!r}, vendor={self.vendor!r}, mpp={self.mpp}, levels=[{shapes}])"


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
        return _open_tiff(path)
    if head.startswith(_PNG_MAGIC):
        return _open_pillow(path, "png")
    if head.startswith(_JPEG_MAGIC):
        return _open_pillow(path, "jpeg")
    what = "it is empty" if not head else f"it starts with bytes {head.hex(' ')}"
    raise SlideError(f"Cannot open {path}: it is not a TIFF, PNG or JPEG file ({what}).", path)


# --- TIFF -------------------------------------------------------------------------------------


def _open_tiff(path: Path) -> Slide:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
        all_series = list(tif.series)
    except Exception as exc:  # tifffile raises many types on broken files
        raise SlideError(f"Cannot open {path}: it is not a readable TIFF ({exc}).", path) from exc
    try:
        images = [s for s in all_series if len(s.shape) >= 2 and s.size > 0]
        if not images:
            raise SlideError(f"Cannot open {path}: the TIFF holds no readable image{_why_no_image(path)}.", path)
        main = max(
            images, key=lambda s: (s.name.lower() not in ASSOCIATED_NAMES, _yx(s)[0] * _yx(s)[1])
        )
        readers = [
            _TiffLevel(lv, path, f"level {k}")
            for k, lv in enumerate(sorted(main.levels, key=lambda s: -_yx(s)[0] * _yx(s)[1]))
        ]
        readers[-1].check_one_tile()  # codecs and data, on the smallest tile set
        associated = {}
        for s in images:
            name = s.name.lower() or f"series {all_series.index(s)}"
            if s is not main and name not in associated:
                with contextlib.suppress(Exception):  # an unreadable label is left out
                    associated[name] = _as_rgb8(_dask(_TiffLevel(s, path, name), name))
        keyframe = readers[0].pages[0].keyframe
        vendor, mpp, power = _tiff_metadata(tif, keyframe, all_series.index(main))
        return Slide(
            path,
            [_dask(r, f"{r.where} of {path.name}") for r in readers],
            vendor=vendor,
            mpp=mpp,
            objective_power=power,
            associated=associated,
            tile_shapes=[r.tile for r in readers],
            premultiplied=readers[0].premultiplied,
            close=tif.close,
            tile_readers=readers,
        )
    except SlideError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise SlideError(f"Cannot open {path}: {type(exc).__name__}: {exc}.", path) from exc


def _why_no_image(path: Path) -> str:
    """Where a TIFF's first image directory lies beyond its end: a truncated copy."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    offset = int.from_bytes(head[8:16] if big else head[4:8], "little" if order == "<" else "big")
    size = path.stat().st_size
    if offset >= size:
        return f" (the file is truncated: its first image directory is at byte {offset}, the file has {size})"
    return ""


def _yx(series: Any) -> tuple[int, int]:
    axes, shape = series.axes, series.shape
    return int(shape[axes.index("Y")]), int(shape[axes.index("X")])




# --- PNG and JPEG -----------------------------------------------------------------------------


class _WholeImage:
    """A PNG or JPEG as a numpy-like (Y, X, C) array, decoded once, on the first read."""

    def __init__(self, path: Path, mode: str, size: tuple[int, int]) -> None:
        self.path, self.mode = path, mode
        wanted, channels, dtype = _PILLOW_MODES[mode]
        self.convert = wanted
        self.shape = (size[1], size[0], channels)
        self.dtype = np.dtype(dtype)
        self.ndim = 3
        self.tile = (CHUNK_TARGET_PX, CHUNK_TARGET_PX)
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()

    def __getitem__(self, key: Any) -> np.ndarray:
        with self._lock:
            if self._pixels is None:
                self._pixels = self._decode()
        return self._pixels[key]

    def _decode(self) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(self.path) as image:
                if self.convert:
                    image = image.convert(self.convert)
                pixels = np.asarray(image)
        except Exception as exc:
            raise SlideError(f"Cannot read {self.path}: {type(exc).__name__}: {exc}.", self.path) from exc
        return pixels.reshape(self.shape).astype(self.dtype, copy=False)

    def close(self) -> None:
        self._pixels = None


# Pillow mode -> (mode to convert to or None, channels, dtype)
_PILLOW_MODES = {
    "1": ("L", 1, "uint8"), "L": (None, 1, "uint8"), "LA": (None, 2, "uint8"),
    "P": ("RGBA", 4, "uint8"), "PA": ("RGBA", 4, "uint8"), "RGB": (None, 3, "uint8"),
    "RGBA": (None, 4, "uint8"), "RGBX": ("RGB", 3, "uint8"), "CMYK": ("RGB", 3, "uint8"),
    "YCbCr": ("RGB", 3, "uint8"), "I;16": (None, 1, "uint16"), "I;16B": (None, 1, "uint16"),
    "I;16L": (None, 1, "uint16"),
}  # fmt: skip


def _open_pillow(path: Path, vendor: str) -> Slide:
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode, size = image.mode, image.size
            if vendor == "png":
                image.verify()  # chunk checksums, without decoding: catches truncated files
    except Exception as exc:  # UnidentifiedImageError, DecompressionBombError, truncated data
        raise SlideError(f"Cannot open {path}: Pillow cannot read it ({exc}).", path) from exc
    if mode not in _PILLOW_MODES:
        raise SlideError(
            f"Cannot open {path}: its pixels are Pillow mode {mode!r}; RGB, RGBA, grayscale "
            "and 16-bit grayscale images are supported.",
            path,
        )
    image_array = _WholeImage(path, mode, size)
    return Slide(path, [_dask(image_array, str(path))], vendor=vendor, close=image_array.close)


# --- RGB for models, and computed levels -----------------------------------------------------


def thumbnail_level(shapes: Sequence[Sequence[int]], max_px: int) -> int:
    """The level a thumbnail of ``max_px`` is made from, given the levels' (height, width, ...):
    the coarsest whose longer side is at least ``max_px`` (level 0 when none is), so it is
    never upsampled nor read larger than needed."""
    sizes = [max(shape[:2]) for shape in shapes]
    return max((k for k, s in enumerate(sizes) if s >= max_px), default=0)


def rgb_pyramid(raw_levels: Sequence[da.Array], premultiplied: bool = False
                ) -> tuple[list[da.Array], list[tuple[float, float]]]:
    """RGB uint8 levels of ``raw_levels`` (Y X C, largest first; the RGB rule above) plus 2x
    coarser levels computed lazily until the smallest fits ``PYRAMID_TOP_PX``, and each level's
    downsample (level-0 size / level size, per axis)."""
    levels = [_as_rgb8(raw, premultiplied) for raw in raw_levels]
    while max(levels[-1].shape[:2]) > PYRAMID_TOP_PX and min(levels[-1].shape[:2]) >= 2:
        levels.append(_halved(levels[-1]))
    h0, w0 = levels[0].shape[:2]
    return levels, [(h0 / lv.shape[0], w0 / lv.shape[1]) for lv in levels]


def _as_rgb8(raw: da.Array, premultiplied: bool = False) -> da.Array:
    """The module's RGB rule (see its docstring), lazily, chunk by chunk."""
    if raw.dtype == np.uint8 and raw.shape[2] == 3:
        return raw
    return raw.map_blocks(
        _rgb8_block,
        premultiplied,
        dtype=np.uint8,
        chunks=(raw.chunks[0], raw.chunks[1], (3,)),
        meta=np.empty((0, 0, 0), np.uint8),
    )


def _rgb8_block(block: np.ndarray, premultiplied: bool) -> np.ndarray:
    if block.dtype == np.uint16:
        block = ((block.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    channels = block.shape[2]
    if channels in (2, 4):
        color = block[..., : channels - 1].astype(np.uint16)
        alpha = block[..., channels - 1 :].astype(np.uint16)
        if premultiplied:
            color = np.minimum(color + (255 - alpha), 255)
        else:
            color = (color * alpha + 255 * (255 - alpha) + 127) // 255
        block = color.astype(np.uint8)
    if block.shape[2] == 1:
        block = np.repeat(block, 3, axis=2)
    return block


def _halved(level: da.Array) -> da.Array:
    """The next pyramid level, 2x2 means of ``level`` (odd last rows/columns dropped)."""
    h, w = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
    level = level[:h, :w]
    if any(c % 2 or c < CHUNK_TARGET_PX // 2 for c in level.chunks[0][:-1] + level.chunks[1][:-1]):
        level = level.rechunk((CHUNK_TARGET_PX, CHUNK_TARGET_PX, 3))
    half = level.map_blocks(
        _halve_block,
        dtype=np.uint8,
        chunks=tuple(tuple(c // 2 for c in axis) for axis in level.chunks[:2]) + ((3,),),
        meta=np.empty((0, 0, 0), np.uint8),
    )
    if half.nbytes <= COMPUTED_CACHE_BYTES:
        cached = _ComputedOnce(half)
        half = da.from_array(
            cached, chunks=half.chunks, asarray=False, lock=False, inline_array=True,
            meta=np.empty((0, 0, 0), np.uint8), name=f"slide-cached-{half.name}",
        )  # fmt: skip
    return half


def _halve_block(block: np.ndarray) -> np.ndarray:
    h, w = block.shape[0] // 2, block.shape[1] // 2
    sums = block.reshape(h, 2, w, 2, 3).sum(axis=(1, 3), dtype=np.uint16)
    return ((sums + 2) // 4).astype(np.uint8)


class _ComputedOnce:
    """A small computed level, computed whole on its first read and kept (zooming out is fast)."""

    def __init__(self, array: da.Array) -> None:
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, 3
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()

    def __getitem__(self, key: Any) -> np.ndarray:
        with self._lock:
            if self._pixels is None:
                self._pixels = np.asarray(self.array)
        return self._pixels[key]
