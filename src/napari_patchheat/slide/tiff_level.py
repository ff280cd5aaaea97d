"""One stored level of a TIFF slide as a numpy-like array that decodes tiles on demand.

``TiffLevel`` checks what ``open_slide`` can read (2-D, 8- or 16-bit, at most 4 channels, a codec
this installation decodes, a file long enough) and reads regions tile by tile with tifffile's own
decoders, straight from the file. Tiles a read covers only in part are kept in the shared
edge-tile cache (``tile_cache.EDGE_TILES``), so the next region of a run, which starts inside
them, does not decode them again. No Qt, no TensorFlow.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..grid import READ_BLOCK_PX, Needed
from .arrays import read_tiled, region_key
from .errors import SlideError
from .location import SlideURL
from .tile_cache import EDGE_TILE_CACHE_BYTES, EDGE_TILES

_CODEC_NAMES = {5: "LZW", 7: "JPEG", 8: "Deflate", 32946: "Deflate", 33003: "JPEG 2000",
                33004: "JPEG 2000", 33005: "JPEG 2000", 34712: "JPEG 2000", 34887: "LERC",
                34892: "JPEG", 34925: "LZMA", 34933: "PNG", 34934: "JPEG XR", 50000: "Zstd",
                50001: "WebP", 50002: "JPEG XL", 52546: "JPEG XL"}  # fmt: skip


_LEVEL_NUMBERS = itertools.count()  # cache keys: a number per reader, never reused like id()


class TiffLevel:
    """One pyramid level of a TIFF as a numpy-like (Y, X, C) array that decodes tiles on demand.

    Handles tiled and striped pages (NDPI's restart-marker strips included), contiguous or
    separate sample planes, and channels stored as separate pages (OME CYX).
    """

    def __init__(self, series: Any, path: Path | SlideURL, where: str) -> None:
        self.path, self.where = path, where
        self.pages = [p for p in series.pages if p is not None]
        for page in self.pages:
            # one lock per file for our reads and tifffile's own (it loads some tags lazily)
            page.parent.filehandle.set_lock(True)
        keyframe = self.pages[0].keyframe
        axes = "".join(a for a, n in zip(series.axes, series.shape) if n > 1 or a in "YX")
        sep, depth, height, width, contig = keyframe.shaped
        if depth > 1 or axes not in ("YX", "YXS", "SYX", "CYX"):
            raise SlideError(
                f"Cannot open {path}: its {where} has axes {series.axes} of shape "
                f"{series.shape}, not a 2-D image (stacks and volumes are not slides).",
                path,
            )
        self.planes, self.samples = sep, sep * contig
        channels = self.samples * len(self.pages)
        photometric = int(keyframe.photometric)
        _check_samples(path, where, np.dtype(keyframe.dtype), channels, photometric)
        self.shape = (height, width, channels)
        self.dtype = np.dtype(keyframe.dtype)
        self.ndim = 3
        if keyframe.is_tiled:
            self.tile = (int(keyframe.tilelength), int(keyframe.tilewidth))
        else:
            self.tile = (min(int(keyframe.rowsperstrip) or height, height), width)
        # keep partly read tiles only where one block edge's column of them fits the cache
        # many times over; wide strips (NDPI, striped TIFFs) can need hundreds of MB per block
        column = (READ_BLOCK_PX // self.tile[0] + 2) * self.tile[0] * self.tile[1] * channels
        self.caches_edges = column * self.dtype.itemsize <= EDGE_TILE_CACHE_BYTES // 4
        self.across = -(-width // self.tile[1])
        self.per_plane = self.across * -(-height // self.tile[0])
        extrasamples = tuple(keyframe.extrasamples or ())
        self.premultiplied = extrasamples[:1] == (1,)
        rgb = photometric in (2, 6) or channels >= 3  # RGB, YCbCr: missing tiles are glass
        self.fill = np.iinfo(self.dtype).max if rgb else 0
        self._check_codec(keyframe)
        self._check_extent()
        self._number = next(_LEVEL_NUMBERS)
        # id(keyframe) -> (decode, its arguments), built once, under the file's lock
        self._decoders: dict[int, tuple[Callable[..., Any], dict[str, Any]]] = {}
        for page in self.pages:
            kf = page.keyframe
            if id(kf) not in self._decoders:
                with page.parent.filehandle.lock:
                    args = {"jpegtables": kf.jpegtables,
                            "jpegheader": getattr(kf, "jpegheader", None)}
                    given = {k: v for k, v in args.items() if v is not None}
                    self._decoders[id(kf)] = (kf.decode, given)

    @functools.cached_property
    def _absent(self) -> np.ndarray:
        """(tile rows, tile columns) bool: True where a tile is in no page or plane of the file
        (byte count 0), so it reads as ``fill``; all False where the layout is not understood.
        Built when first asked (one level of a slide is: its last stored one)."""
        rows = -(-self.shape[0] // self.tile[0])
        absent = np.ones((rows, self.across), bool)
        for page in self.pages:
            with page.parent.filehandle.lock:  # tifffile may load the tag now, as reads run
                counts = np.asarray(page.databytecounts, np.int64)
            if counts.size != self.planes * rows * self.across:
                return np.zeros((rows, self.across), bool)
            absent &= (counts.reshape(self.planes, rows, self.across) == 0).all(axis=0)
        return absent

    @property
    def has_absent_tiles(self) -> bool:
        """True when some tile of this level is not in the file (a sparse TIFF)."""
        return bool(self._absent.any())

    def absent(self, y0: int, y1: int, x0: int, x1: int) -> bool:
        """True when every tile under the region [y0, y1) x [x0, x1) (level pixels) is absent
        from the file: the region reads as ``fill`` without decoding anything."""
        th, tw = self.tile
        block = self._absent[y0 // th: -(-y1 // th), x0 // tw: -(-x1 // tw)]
        return bool(block.size and block.all())

    def _check_codec(self, keyframe: Any) -> None:
        from tifffile import TIFF

        code = int(keyframe.compression)
        try:
            TIFF.DECOMPRESSORS[code]
        except KeyError as exc:
            name = _CODEC_NAMES.get(code, f"compression {code}")
            raise SlideError(
                f"Cannot open {self.path}: its {self.where} is compressed with {name}, which "
                f"this installation cannot decode ({exc.args[0] if exc.args else exc}); "
                "install or update imagecodecs (pip install -U imagecodecs).",
                self.path,
            ) from exc

    def _check_extent(self) -> None:
        size = self.pages[0].parent.filehandle.size  # a local file's or a remote object's
        for page in self.pages:
            ends = (np.asarray(page.dataoffsets, np.int64)
                    + np.asarray(page.databytecounts, np.int64))
            if ends.size and int(ends.max()) > size:
                raise SlideError(
                    f"Cannot open {self.path}: the file is truncated (its {self.where} needs "
                    f"{int(ends.max())} bytes, the file has {size}); copy it again.",
                    self.path,
                )

    def check_one_tile(self) -> None:
        """Decode one non-empty tile, so a broken codec or file fails at open, not in napari."""
        counts = self.pages[0].databytecounts
        index = next((i for i, n in enumerate(counts) if n), None)
        if index is not None:
            self.decode_tile(self.pages[0], index)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.read_tiles(key)

    def read_tiles(self, key: Any, map_fn: Callable[..., Iterable[Any]] = map,
                   needed: Needed | None = None) -> np.ndarray:
        """``self[key]``, decoding the tiles it touches through ``map_fn`` (``map``: one after
        the other; an executor's ``map``: on its threads); with ``needed``, only the tiles
        whose level-pixel extent it says True to (the others' pixels are undefined)."""
        region, sub = region_key(key, self.shape)
        layers = len(self.pages) * self.planes  # channel groups stored apart: pages x planes
        return read_tiled(region, self.shape, self.dtype, self.tile, self.fill, self._tile,
                          layers=layers, map_fn=map_fn, needed=needed)[sub]

    def _tile(self, layer: int, ty: int, tx: int, whole: bool) -> np.ndarray | None:
        """Tile (ty, tx) of channel group ``layer`` (page, plane), through the edge-tile cache
        where a read covers it only in part (not ``whole``)."""
        p, plane = divmod(layer, self.planes)
        page, index = self.pages[p], plane * self.per_plane + ty * self.across + tx
        if self.caches_edges and not whole:
            return self._edge_tile(p, page, index)
        return self.decode_tile(page, index)

    @property
    def cached_edge_tiles(self) -> int:
        """How many of this level's tiles the edge-tile cache holds now."""
        return EDGE_TILES.count(self._number)

    def forget_tiles(self) -> None:
        """Drop this level's tiles from the edge-tile cache (the slide is closed)."""
        EDGE_TILES.drop(self._number)

    def _edge_tile(self, p: int, page: Any, index: int) -> np.ndarray | None:
        """Tile ``index`` of page ``p`` through the shared cache of tiles read in part."""
        return EDGE_TILES.through((self._number, p, index),
                                  lambda: self.decode_tile(page, index))

    def decode_tile(self, page: Any, index: int) -> np.ndarray | None:
        """Tile (or strip) ``index`` of ``page`` decoded to (h, w, samples), None if empty."""
        offset, count = page.dataoffsets[index], page.databytecounts[index]
        if not offset or not count:
            return None
        decode, args = self._decoders[id(page.keyframe)]
        fh = page.parent.filehandle
        try:
            with fh.lock:
                fh.seek(offset)
                data = fh.read(count)
            decoded = decode(data, index, **args)[0]
        except Exception as exc:
            closed = getattr(fh, "closed", False)
            problem = "the slide was closed" if closed else f"{type(exc).__name__}: {exc}"
            raise SlideError(
                f"Cannot read tile {index} of the {self.where} of {self.path}: {problem}.",
                self.path,
            ) from exc
        if decoded is None:
            return None
        return decoded.reshape(decoded.shape[-3:])


def _check_samples(path: Path | SlideURL, where: str, dtype: np.dtype, channels: int,
                   photometric: int) -> None:
    """Refuse sample types and channel counts the RGB rule does not cover."""
    if dtype not in (np.uint8, np.uint16):
        raise SlideError(
            f"Cannot open {path}: its {where} has {dtype} samples; slides of 8- or 16-bit "
            "unsigned integers are supported.",
            path,
        )
    if channels > 4 or photometric == 5:
        what = "CMYK" if photometric == 5 else f"{channels} channels"
        raise SlideError(
            f"Cannot open {path}: its {where} has {what}; RGB, RGBA and grayscale slides are "
            "supported (multiplexed images are not).",
            path,
        )
