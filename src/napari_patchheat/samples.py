"""Sample slides: the IHC image from scikit-image and a generated pyramidal slide.

:func:`sample_slide_path` writes (once, to a cache directory) a tiled JPEG OME-TIFF pyramid that
looks like a stained section on glass: pieces of tissue over a white background. Its texture is
``skimage.data.immunohistochemistry()`` (colon tissue, DAB + hematoxylin), quilted from random
crops into a seamless 3072 px period, so every pyramid level is the texture coarsened by its
downsample. Tiles are made one at a time (bounded memory) and reused where they repeat: all
background tiles share one encoded tile, tiles inside tissue one per texture position (144 at
level 0); only tiles on a tissue edge are blended and encoded. Both are written to the cache folder
(cache.py) when needed; ``_sample_data.py`` offers them in napari's sample menu.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

from .cache import cache_root
from .grid import as_pair

SAMPLE_SIZE_PX = 32768  # height and width of the default sample slide, level 0
SAMPLE_TILE_PX = 256
SAMPLE_MPP_UM = 0.5  # µm per level-0 pixel (a 20x scan)
SAMPLE_TOP_PX = 1024  # the pyramid stops at the first level whose longer side fits this
SAMPLE_JPEG_QUALITY = 85
SAMPLE_TISSUE_FRACTION = 0.35  # of the slide's area (before the soft edges)
BACKGROUND_RGB = (240, 240, 240)  # the glass, as bright as the IHC image's own lumen
FIELD_CELL_PX = 64  # level-0 pixels per cell of the tissue field
_TEXTURE_CELLS = 8  # crops of the IHC image per texture period, on each axis
_TEXTURE_STRIDE_PX = 384
_TEXTURE_OVERLAP_PX = 64  # cross-fade between neighbouring crops
_TEXTURE_PERIOD_PX = _TEXTURE_CELLS * _TEXTURE_STRIDE_PX  # 3072
_EDGE_RAMP = 0.15  # field units (std of the detail noise) over which tissue fades into glass
_GENERATOR_VERSION = 1  # part of the cache file name: bump when the pixels change


def sample_slide_path(
    size_px: int | tuple[int, int] = SAMPLE_SIZE_PX, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Path of the generated sample slide of ``size_px`` (int or (height, width)) level-0 pixels.

    Written on the first call (the default 32768 x 32768 takes a few seconds) into ``cache_dir``
    (default :func:`~napari_patchheat.cache.cache_root`), then reused. Deterministic: same size,
    same pixels.
    """
    h, w = as_pair("size_px", size_px)
    folder = Path(cache_dir) if cache_dir is not None else cache_root()
    path = folder / f"patchheat-sample-{h}x{w}-v{_GENERATOR_VERSION}.ome.tif"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        try:
            write_sample_slide(tmp, (h, w))
            os.replace(tmp, path)  # atomic: a reader never sees half a file
        finally:
            tmp.unlink(missing_ok=True)
    return path


def write_sample_slide(
    path: str | os.PathLike,
    size_px: int | tuple[int, int] = SAMPLE_SIZE_PX,
    *,
    tile_px: int = SAMPLE_TILE_PX,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Write a tissue-like tiled JPEG OME-TIFF pyramid (SubIFDs) of ``size_px`` to ``path``.

    Level k is 2**k times smaller (sizes rounded up) until the longer side fits
    ``SAMPLE_TOP_PX``. Memory stays bounded whatever the size: tiles are generated, encoded by
    ``workers`` threads a bounded window ahead, and written in order.
    """
    import tifffile

    h, w = as_pair("size_px", size_px)
    if tile_px % 16:
        raise ValueError(f"tile_px={tile_px} must be a multiple of 16 (JPEG tiles).")
    shapes = [(h, w)]
    while max(shapes[-1]) > SAMPLE_TOP_PX:
        shapes.append((-(-shapes[-1][0] // 2), -(-shapes[-1][1] // 2)))
    maker = _TileMaker(h, w, tile_px, seed)
    workers = workers or min(os.cpu_count() or 1, 8)
    options: dict[str, Any] = dict(
        dtype="uint8",
        photometric="rgb",
        tile=(tile_px, tile_px),
        compression="jpeg",
        compressionargs={"level": SAMPLE_JPEG_QUALITY},
        resolutionunit="CENTIMETER",
    )
    metadata = {
        "axes": "YXS",
        "Name": "napari-patchheat sample slide",
        "PhysicalSizeX": SAMPLE_MPP_UM,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": SAMPLE_MPP_UM,
        "PhysicalSizeYUnit": "µm",
    }
    with ThreadPoolExecutor(workers) as pool, tifffile.TiffWriter(
        path, bigtiff=True, ome=True
    ) as tif:
        for level, shape in enumerate(shapes):
            px_per_cm = 1e4 / (SAMPLE_MPP_UM * 2**level)
            extra: dict[str, Any] = (
                {"subifds": len(shapes) - 1, "metadata": metadata}
                if level == 0
                else {"subfiletype": 1, "metadata": None}
            )
            tif.write(
                maker.encoded_tiles(level, shape, pool, 4 * workers),
                shape=(*shape, 3),
                resolution=(px_per_cm, px_per_cm),
                **options,
                **extra,
            )
    return Path(path)


class _TileMaker:
    """The generated slide's tiles, level by level: the tissue field, the texture, encoded tiles."""

    def __init__(self, height: int, width: int, tile_px: int, seed: int) -> None:
        self.tile = tile_px
        self.alpha = _tissue_alpha(height, width, seed)
        self.textures = _texture_pyramid(seed, tile_px)
        self.background = np.empty((tile_px, tile_px, 3), np.uint8)
        self.background[:] = BACKGROUND_RGB
        self._encoded: dict[tuple[int, int, int], bytes] = {}

    def encoded_tiles(
        self, level: int, shape: tuple[int, int], pool: Executor, window: int
    ) -> Iterator[bytes]:
        """Encoded JPEG tiles of ``level`` in TIFF order (rows of tiles, top left first).

        Shared tiles come from the cache at once; edge tiles are made by ``pool``, at most
        ``window`` of them pending.
        """
        pending: deque[bytes | Future[bytes]] = deque()
        busy = 0
        for y0 in range(0, shape[0], self.tile):
            for x0 in range(0, shape[1], self.tile):
                alpha = self._alpha_block(level, y0, x0)
                if alpha.max() <= 0:
                    pending.append(self._shared_tile(-1, 0, 0))
                elif alpha.min() >= 1:
                    pending.append(self._shared_tile(level, y0, x0))
                else:
                    pending.append(pool.submit(self._edge_tile, level, y0, x0))
                    busy += 1
                while pending and (busy >= window or isinstance(pending[0], bytes)):
                    item = pending.popleft()
                    if isinstance(item, bytes):
                        yield item
                    else:
                        busy -= 1
                        yield item.result()
        for item in pending:
            yield item if isinstance(item, bytes) else item.result()

    def _shared_tile(self, level: int, y0: int, x0: int) -> bytes:
        """The encoded glass tile (level -1) or the all-tissue tile at a texture position."""
        period = self.textures[level].shape[0] - self.tile
        key = (level, y0 % period, x0 % period) if level >= 0 else (-1, 0, 0)
        if key not in self._encoded:
            tile = self.background if level < 0 else self._texture_tile(level, y0, x0)
            self._encoded[key] = _encode(tile)
        return self._encoded[key]

    def _edge_tile(self, level: int, y0: int, x0: int) -> bytes:
        """A tile where tissue meets glass: texture over background, blended by opacity."""
        alpha = self._alpha_tile(level, y0, x0)[..., None]
        texture = self._texture_tile(level, y0, x0)
        background = np.asarray(BACKGROUND_RGB, np.float32)
        return _encode(np.rint(background + (texture - background) * alpha).astype(np.uint8))

    def _texture_tile(self, level: int, y0: int, x0: int) -> np.ndarray:
        wrapped = self.textures[level]
        period = wrapped.shape[0] - self.tile
        y, x = y0 % period, x0 % period
        return wrapped[y : y + self.tile, x : x + self.tile]

    @staticmethod
    def _field_position(level: int, pixel: Any) -> Any:
        """Level pixel (centre) -> field cell units (cells centred on i + 0.5, +1 of margin)."""
        return (pixel + 0.5) * (2**level / FIELD_CELL_PX) + 0.5

    def _cells(self, level: int, start: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """Field cell (floor) and weight of the tile's pixels along one axis from ``start``."""
        pos = self._field_position(level, np.arange(start, start + self.tile))
        cell = np.clip(np.floor(pos).astype(int), 0, self.alpha.shape[axis] - 2)
        return cell, np.clip(pos - cell, 0, 1).astype(np.float32)

    def _alpha_block(self, level: int, y0: int, x0: int) -> np.ndarray:
        """The field cells a tile's opacity is interpolated from (its min and max bound it)."""
        bounds = []
        for start, n in ((y0, self.alpha.shape[0]), (x0, self.alpha.shape[1])):
            lo, hi = (int(self._field_position(level, p)) for p in (start, start + self.tile - 1))
            bounds.append(slice(min(lo, n - 2), min(hi, n - 2) + 2))
        return self.alpha[bounds[0], bounds[1]]

    def _alpha_tile(self, level: int, y0: int, x0: int) -> np.ndarray:
        """Tissue opacity (0..1) of each pixel of a tile: the field, bilinearly interpolated."""
        iy, wy = self._cells(level, y0, 0)
        ix, wx = self._cells(level, x0, 1)
        a = self.alpha
        top = a[iy][:, ix] * (1 - wx) + a[iy][:, ix + 1] * wx
        bottom = a[iy + 1][:, ix] * (1 - wx) + a[iy + 1][:, ix + 1] * wx
        return top * (1 - wy[:, None]) + bottom * wy[:, None]


def _encode(tile: np.ndarray) -> bytes:
    """A JPEG tile exactly as tifffile encodes RGB with compression='jpeg' (YCbCr, 2x2)."""
    import imagecodecs

    return cast(bytes, imagecodecs.jpeg_encode(  # bytes: no out= buffer is given
        tile,
        level=SAMPLE_JPEG_QUALITY,
        colorspace="RGB",
        outcolorspace="YCBCR",
        subsampling=(2, 2),
    ))


def _tissue_alpha(height: int, width: int, seed: int) -> np.ndarray:
    """Tissue opacity (0 glass .. 1 tissue) per field cell, with one cell of margin all round.

    A few large smooth blobs (their scale follows the slide size, like sections on a slide) with
    ragged edges (noise of a fixed ~400 px scale), kept off the slide's border.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    ny, nx = -(-height // FIELD_CELL_PX) + 2, -(-width // FIELD_CELL_PX) + 2
    coarse = ndimage.gaussian_filter(rng.standard_normal((24, 24)), 2.5, mode="wrap")
    big = ndimage.zoom(coarse, (ny / 24, nx / 24), order=3, grid_mode=True, mode="grid-wrap")
    big = big[:ny, :nx]
    detail = ndimage.gaussian_filter(rng.standard_normal((ny, nx)), 6.0)
    big = (big - big.mean()) / (big.std() or 1)
    detail = (detail - detail.mean()) / (detail.std() or 1)
    yy = np.linspace(-1, 1, ny)[:, None]
    xx = np.linspace(-1, 1, nx)[None, :]
    field = big + 0.35 * detail - 2.5 * np.maximum(yy**2, xx**2) ** 4
    threshold = np.quantile(field, 1 - SAMPLE_TISSUE_FRACTION)
    return np.clip((field - threshold) / _EDGE_RAMP, 0, 1).astype(np.float32)


def _quilted_texture(seed: int) -> np.ndarray:
    """A seamless (periodic) texture of ``_TEXTURE_PERIOD_PX``: random crops of the IHC image.

    ``_TEXTURE_CELLS`` x ``_TEXTURE_CELLS`` crops, each randomly flipped or turned, placed on a
    torus with a stride of ``_TEXTURE_STRIDE_PX`` and cross-faded over ``_TEXTURE_OVERLAP_PX``
    (linear ramps that sum to one), so the tissue does not repeat within 3072 px.
    """
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()
    rng = np.random.default_rng(seed)
    cells, stride, overlap = _TEXTURE_CELLS, _TEXTURE_STRIDE_PX, _TEXTURE_OVERLAP_PX
    size, period = stride + overlap, _TEXTURE_PERIOD_PX
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    weight = np.concatenate([ramp, np.ones(stride - overlap, np.float32), ramp[::-1]])
    cols = (np.arange(cells)[:, None] * stride + np.arange(size)[None, :]) % period

    def band(i: int) -> np.ndarray:  # one row of crops, blended across: (size, period, 3)
        out = np.zeros((size, period, 3), np.float32)
        for j in range(cells):
            y, x = rng.integers(0, ihc.shape[0] - size + 1, 2)
            # numpy's stub wants k: int; rot90 takes any integer, this np.int64 included
            crop = np.rot90(ihc[y : y + size, x : x + size], rng.integers(4))  # type: ignore[call-overload]
            crop = crop[:, ::-1] if rng.integers(2) else crop
            out[:, cols[j]] += crop * weight[None, :, None]
        return out * weight[:, None, None]

    texture = np.empty((period, period, 3), np.uint8)
    first = band(0)
    previous = first
    for i in range(1, cells + 1):
        current = band(i) if i < cells else first  # the torus closes on the first band
        texture[i * stride - stride + overlap : i * stride] = previous[overlap:stride].round()
        seam = previous[stride:] + current[:overlap]
        texture[(np.arange(overlap) + i * stride) % period] = np.rint(seam).clip(0, 255)
        previous = current
    return texture


def _texture_pyramid(seed: int, tile_px: int) -> list[np.ndarray]:
    """The texture per level (level k: 2**k coarser), each wrapped to its period + one tile.

    Coarsening stops where the period turns odd (beyond any real slide's levels); later levels
    take the texture's mean colour.
    """
    texture = _quilted_texture(seed)
    out = []
    for _ in range(32):
        period = texture.shape[0]
        out.append(np.pad(texture, ((0, tile_px), (0, tile_px), (0, 0)), mode="wrap"))
        if period % 2:
            texture = np.rint(texture.mean(axis=(0, 1), keepdims=True)).astype(np.uint8)
        else:
            half = period // 2
            sums = texture.reshape(half, 2, half, 2, 3).sum(axis=(1, 3), dtype=np.uint16)
            texture = ((sums + 2) // 4).astype(np.uint8)
    return out


def ihc_sample_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the IHC image as a PNG: scikit-image's own file, else written to the cache."""
    import skimage

    bundled = Path(skimage.__file__).parent / "data" / "ihc.png"
    if bundled.is_file():
        return bundled
    from skimage.data import immunohistochemistry
    from skimage.io import imsave

    path = (Path(cache_dir) if cache_dir is not None else cache_root()) / "ihc.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        imsave(path, immunohistochemistry(), check_contrast=False)
    return path
