"""``Slide``: an open whole-slide image as a lazy pyramid of dask arrays, and its RGB rule.

``Slide.levels`` are what models and napari get, RGB uint8 (Y X 3), by one rule:

- 8-bit samples are kept; 16-bit samples are scaled to 8 bits (x * 255 / 65535, rounded); other
  sample types (float, signed, 32-bit) are refused when the slide is opened;
- 1 channel (grayscale) is copied to R, G and B; 2 channels are grayscale + alpha;
- alpha is composited over white (the glass): c * a + 255 * (1 - a), or c + 255 * (1 - a) where
  the file says its alpha is premultiplied; missing tiles of RGB slides read as white;
- more than 4 channels (multiplexed fluorescence), CMYK and volumes are refused.

``Slide.raw_levels`` keep the file's own samples (its dtype, Y X C) of the stored levels; levels
are added by 2x coarsening (computed lazily) until the smallest fits ``PYRAMID_TOP_PX``.
Nothing here imports Qt or TensorFlow.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from ..grid import as_numpy
from .arrays import CHUNK_TARGET_PX, LoadedOnce, as_dask
from .errors import SlideError
from .location import SlideURL, same_file_key

if TYPE_CHECKING:
    from .color import SrgbTransform

PYRAMID_TOP_PX = 2048  # levels are added by 2x coarsening until the longer side fits this
COMPUTED_CACHE_BYTES = 64 * 2**20  # computed levels this small are kept once computed
MPP_MATCH_FACTOR = 2.0  # --mpp picks a level at most this many times finer or coarser


class Slide:
    """An open whole-slide image: a lazy pyramid (``levels``) and what the file says about it.

    ``levels``: dask arrays, RGB uint8, Y X 3, largest first, chunked on the file's tiles
    (grouped to ~``CHUNK_TARGET_PX``); stored levels first, then computed ones (2x coarsenings)
    until the smallest fits ``PYRAMID_TOP_PX``. ``downsamples[k]``: level-0 px per level-k px
    (dy, dx); level-0 size / level-k size for stored levels, the last stored level's times
    2**n for the n-th computed one (see :func:`rgb_pyramid`). ``mpp``: (y, x) µm per level-0
    pixel, or None. ``path``: the file or folder (a Path) or, for a remote slide, a
    :class:`SlideURL`. ``source_key``: what identifies the source's content besides its path (a
    folder's metadata file's size and mtime, a remote object's ETag, size and time); None: the
    local file's size and modification time. ``identity`` hashes path, key and level shapes.
    Use as a context manager, or call ``close()``: reading afterwards raises
    :class:`SlideError`.
    """

    def __init__(
        self,
        path: Path | SlideURL,
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
        channel_names: tuple[str, ...] | None = None,
        icc_profile: bytes | None = None,
        source_key: str | None = None,
    ) -> None:
        self.path = path
        self._tile_readers = tile_readers or []
        self.raw_levels = raw_levels
        self.vendor = vendor
        self.mpp = mpp
        self.objective_power = objective_power
        self.channel_names = channel_names  # as the file names them (OME, NDPI), or None
        self.associated = associated or {}
        self.icc_profile = icc_profile  # the file's ICC colour profile (bytes), or None
        self.tile_shapes = tile_shapes or [
            (int(r.chunksize[0]), int(r.chunksize[1])) for r in raw_levels
        ]
        self.stored_level_count = len(raw_levels)
        self.levels, self.downsamples = rgb_pyramid(raw_levels, premultiplied,
                                                    self._absent_region(premultiplied))
        self.source_key = local_source_key(path) if source_key is None else source_key
        shapes = [lv.shape for lv in self.levels]
        key = f"{same_file_key(path)}|{self.source_key}|{shapes}"
        self.identity = hashlib.sha1(key.encode()).hexdigest()
        self._close = close
        self.coarse_path: Path | None = None  # the file computed levels are read from, if any
        self._coarse_readers: list[Any] = []

    @property
    def tile_readers(self) -> list[Any]:
        """The file's reader of each stored level (:class:`TiffLevel`; [] for PNG, JPEG)."""
        return self._tile_readers

    def use_computed_levels(self, levels: list[da.Array], readers: list[Any], path: Path,
                            close: Callable[[], None]) -> None:
        """Read the computed levels from ``levels`` (same shapes and pixels, built into the file
        ``path`` by :mod:`.coarse`; ``readers`` read them without dask; ``close`` closes it)."""
        self.levels[self.stored_level_count:] = levels
        self._coarse_readers, self.coarse_path = readers, path
        close_slide = self._close

        def close_both() -> None:
            close()
            if close_slide is not None:
                close_slide()

        self._close = close_both

    def _absent_region(self, premultiplied: bool) -> AbsentRegion | None:
        """Where the last stored level has tiles missing from the file (a sparse TIFF): its
        ``absent(y0, y1, x0, x1)`` and the RGB colour such regions read as; else None."""
        if len(self._tile_readers) != len(self.raw_levels):
            return None
        last = self._tile_readers[-1]
        if not getattr(last, "has_absent_tiles", False):
            return None
        pixel = np.full((1, 1, last.shape[2]), last.fill, last.dtype)
        return AbsentRegion(last.absent, rgb8_block(pixel, premultiplied)[0, 0])

    def reader(self, level: int) -> Any:
        """An array-like of ``levels[level]`` for reading large regions: the file's tile reader
        where the level is stored as 8-bit RGB, or built (:mod:`.coarse`) (no dask graph per
        read; ``read_tiles(key, map_fn)`` decodes on the threads of an executor's map), else
        the dask level itself."""
        if level < len(self._tile_readers) and self.levels[level] is self.raw_levels[level]:
            return self._tile_readers[level]
        if 0 <= level - self.stored_level_count < len(self._coarse_readers):
            return self._coarse_readers[level - self.stored_level_count]
        return self.levels[level]

    def srgb_transform(self) -> SrgbTransform:
        """The conversion of this slide's pixels from its ICC profile to sRGB
        (:func:`.color.srgb_transform`); a :class:`SlideError` where the file carries no profile
        or littlecms cannot use it."""
        from .color import srgb_transform

        if self.icc_profile is None:
            raise SlideError(f"Cannot convert {self.path} to sRGB: the file carries no ICC "
                             "colour profile; use its colours as stored.", self.path)
        try:
            return srgb_transform(self.icc_profile)
        except ValueError as exc:
            raise SlideError(f"Cannot convert {self.path} to sRGB: {exc}; use its colours as "
                             "stored.", self.path) from None

    def srgb_levels(self) -> list[da.Array]:
        """``levels`` converted from the file's ICC profile to sRGB, lazily, chunk by chunk
        (same shapes and chunks; each level converted, computed ones too); a
        :class:`SlideError` as :meth:`srgb_transform` says."""
        from .color import as_srgb

        transform = self.srgb_transform()
        return [as_srgb(level, transform) for level in self.levels]

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
        """Index of the level whose µm/px is closest to ``mpp`` (on a log scale); a ValueError
        where every level is more than MPP_MATCH_FACTOR times finer or coarser than it."""
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
        if min(errors) > math.log(MPP_MATCH_FACTOR):
            finest, coarsest = (math.sqrt(math.prod(self.level_mpp(k)))  # type: ignore[arg-type]
                                for k in (0, len(self.levels) - 1))
            raise ValueError(f"mpp={mpp:g} is far from every level of {self.path.name}, "
                             f"{finest:.3g} to {coarsest:.3g} µm/px: choose a pixel size in "
                             "that range, or a level by its index.")
        return int(np.argmin(errors))

    def thumbnail(self, max_px: int = 512) -> np.ndarray:
        """The whole slide as RGB uint8 (H, W, 3) whose longer side is ``max_px`` (or less)."""
        from PIL import Image

        level = thumbnail_level([lv.shape for lv in self.levels], max_px)
        image = Image.fromarray(as_numpy(self.levels[level]))
        image.thumbnail((max_px, max_px), Image.Resampling.BOX)
        return np.asarray(image)

    def close(self) -> None:
        """Close the file. The dask arrays cannot be read afterwards."""
        if self._close is not None:
            self._close()
            self._close = None
        for reader in self._tile_readers + self._coarse_readers:
            reader.forget_tiles()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        shapes = ", ".join(f"{lv.shape[0]}x{lv.shape[1]}" for lv in self.levels)
        return (f"Slide({str(self.path)!r}, vendor={self.vendor!r}, mpp={self.mpp}, "
                f"levels=[{shapes}])")


def local_source_key(path: Path | SlideURL) -> str:
    """What identifies a local file's content besides its path: its size and modification
    time ('123456|1700000000000000000')."""
    if isinstance(path, SlideURL):
        raise SlideError(f"{path} is remote: its Slide needs a source_key.", str(path))
    stat = path.stat()
    return f"{stat.st_size}|{stat.st_mtime_ns}"


def thumbnail_level(shapes: Sequence[Sequence[int]], max_px: int) -> int:
    """The level a thumbnail of ``max_px`` is made from, given the levels' (height, width, ...):
    the coarsest whose longer side is at least ``max_px`` (level 0 when none is), so it is
    never upsampled nor read larger than needed."""
    sizes = [max(shape[:2]) for shape in shapes]
    return max((k for k, s in enumerate(sizes) if s >= max_px), default=0)


@dataclass(frozen=True)
class AbsentRegion:
    """Where the last stored level is absent from the file: ``absent(y0, y1, x0, x1)`` (its
    pixels) says a region has no tile in the file; such a region reads as ``rgb``."""

    absent: Callable[[int, int, int, int], bool]
    rgb: np.ndarray


def rgb_pyramid(raw_levels: Sequence[da.Array], premultiplied: bool = False,
                absent: AbsentRegion | None = None
                ) -> tuple[list[da.Array], list[tuple[float, float]]]:
    """RGB uint8 levels of ``raw_levels`` (Y X C, largest first; the RGB rule above) plus 2x
    coarser levels computed lazily until the smallest fits ``PYRAMID_TOP_PX``, and each level's
    (dy, dx) level-0 px per level px: level-0 size / level size for the given levels (OpenSlide's
    rule), exactly twice the level above's for computed ones (a 2x2 mean, odd last px dropped).
    With ``absent`` (a sparse file), a computed chunk over no stored tile is its colour at once."""
    # one chunk across the colour axis (a stack of channel planes has one per channel)
    levels = [as_rgb8(raw.rechunk({2: -1}), premultiplied) for raw in raw_levels]
    h0, w0 = levels[0].shape[:2]
    downsamples = [(h0 / lv.shape[0], w0 / lv.shape[1]) for lv in levels]
    while max(levels[-1].shape[:2]) > PYRAMID_TOP_PX and min(levels[-1].shape[:2]) >= 2:
        factor = 2 ** (len(levels) - len(raw_levels) + 1)  # last stored level px per level px
        levels.append(_halved(levels[-1], None if absent is None else (absent, factor)))
        dy, dx = downsamples[-1]
        downsamples.append((2 * dy, 2 * dx))
    return levels, downsamples


def as_rgb8(raw: da.Array, premultiplied: bool = False) -> da.Array:
    """``raw`` (Y X C, the file's samples) as RGB uint8 by the module's RGB rule, lazily, chunk
    by chunk; 8-bit RGB is returned as it is."""
    if raw.dtype == np.uint8 and raw.shape[2] == 3:
        return raw
    return da.map_blocks(
        rgb8_block,
        raw,
        premultiplied,
        dtype=np.uint8,
        chunks=(raw.chunks[0], raw.chunks[1], (3,)),
        meta=np.empty((0, 0, 0), np.uint8),
    )


def rgb8_block(block: np.ndarray, premultiplied: bool = False) -> np.ndarray:
    """A block of samples (Y X C, the file's dtype) as RGB uint8 by the module's RGB rule."""
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


def _halved(level: da.Array, sparse: tuple[AbsentRegion, int] | None = None) -> da.Array:
    """The next pyramid level, 2x2 means of ``level`` (odd last rows/columns dropped); with
    ``sparse`` (where the file has no tiles, and stored px per px of the new level), each chunk
    over no stored tile is filled at once instead of computed (:class:`_SparseLevel`)."""
    h, w = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
    level = level[:h, :w]
    if any(c % 2 or c < CHUNK_TARGET_PX // 2 for c in level.chunks[0][:-1] + level.chunks[1][:-1]):
        level = level.rechunk((CHUNK_TARGET_PX, CHUNK_TARGET_PX, 3))
    half = da.map_blocks(
        halve_block,
        level,
        dtype=np.uint8,
        chunks=tuple(tuple(c // 2 for c in axis) for axis in level.chunks[:2]) + ((3,),),
        meta=np.empty((0, 0, 0), np.uint8),
    )
    if sparse is not None:
        half = as_dask(_SparseLevel(half, *sparse), f"sparse {half.name}", half.chunks)
    return _kept_once_computed(half) if half.nbytes <= COMPUTED_CACHE_BYTES else half


class _SparseLevel:
    """A computed level read region by region: a region over no stored tile is the absent
    colour at once, any other is computed from the level above (its own regions checked the
    same way), so a sparse huge TIFF is never decoded or averaged where it has no data."""

    def __init__(self, level: da.Array, where: AbsentRegion, factor: int):
        self.level, self.where, self.factor = level, where, factor
        self.shape, self.dtype, self.ndim = level.shape, level.dtype, 3

    def __getitem__(self, key: Any) -> np.ndarray:
        (y0, y1, _), (x0, x1, _) = (k.indices(n) for k, n in zip(key[:2], self.shape[:2]))
        f = self.factor
        if self.where.absent(y0 * f, y1 * f, x0 * f, x1 * f):
            out = np.empty((max(y1 - y0, 0), max(x1 - x0, 0), 3), np.uint8)
            out[...] = self.where.rgb
            return out[(slice(None), slice(None), *key[2:])]
        return as_numpy(self.level[key], scheduler="synchronous")


def _kept_once_computed(level: da.Array) -> da.Array:
    """``level`` computed whole on its first read and kept (zooming out is then fast)."""
    pixels = LoadedOnce(lambda: as_numpy(level), level.shape, level.dtype)
    return as_dask(pixels, f"computed {level.name}", level.chunks)


def halve_block(block: np.ndarray) -> np.ndarray:
    """2x2 means of an RGB uint8 block of even height and width: (sum + 2) // 4."""
    sums = block[0::2, 0::2].astype(np.uint16)
    sums += block[1::2, 0::2]
    sums += block[0::2, 1::2]
    sums += block[1::2, 1::2]
    sums += 2
    sums >>= 2
    return sums.astype(np.uint8)
