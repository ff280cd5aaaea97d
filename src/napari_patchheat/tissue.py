"""Background skipping: a tissue mask from a low-resolution image, and the tissue fraction of
every patch of a grid.

A slide is fluorescence when its background is dark (:func:`is_fluorescence`, from its coarsest
level). A pixel is tissue by optical density (brightfield: Otsu's threshold inside fixed bounds)
or by brightness above the dark background (fluorescence), then the mask is cleaned (small
objects dropped, small holes filled).
The fraction of each patch's level-0 extent that is tissue comes from an integral image in
closed form, with no loop over patches. The dock's status line says what a grid's run will
compute (:func:`grid_status`) from a mask read within a bound (:func:`tissue_level_mask`).
NumPy, SciPy and scikit-image only: no TensorFlow, no Qt (the GUI imports this module).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from .density import optical_density
from .grid import FloatPair, PatchGrid, as_float_pair, as_numpy

# Bounds on the threshold of the summed RGB optical density (rgb2hed units; x6 for log10 OD):
# a pixel lighter than a grey of ~238 is never tissue; one as dark as a grey of ~227 always is
# (the same level as the built-in ``tissue`` model's TISSUE_OD_SUM).
TISSUE_OD_SUM_MIN = 0.015
TISSUE_OD_SUM_MAX = 0.025
SMOOTH_SIGMA_PX = 2.0  # Gaussian smoothing of the score (mask pixels)
BLACK_FILL_MAX = 20  # brightfield pixels with every channel <= this are scanner fill, not tissue
# Fluorescence is a dark background: at least FLUORESCENCE_DARK_FRACTION_MIN of the pixels have
# no channel above DARK_GREY_MAX, and at most FLUORESCENCE_GLASS_FRACTION_MAX are bright glass
# (every channel at least GLASS_GREY_MIN: a brightfield slide with black scanner fill still shows
# its glass). Grey levels are 0..255.
DARK_GREY_MAX = 50
GLASS_GREY_MIN = 200
FLUORESCENCE_DARK_FRACTION_MIN = 0.5
FLUORESCENCE_GLASS_FRACTION_MAX = 0.1
FLUORESCENCE_PROBE_MAX_PX = 1024  # is_fluorescence reads the coarsest level, subsampled to this
# Fluorescence tissue: the smoothed brightest channel above the background (the most common
# level of the pixels darker than Otsu's threshold) by FLUORESCENCE_STEP_GREY or by
# FLUORESCENCE_NOISE_SIGMAS standard deviations of the background, whichever is more.
FLUORESCENCE_STEP_GREY = 4.0
FLUORESCENCE_NOISE_SIGMAS = 4.0
FLUORESCENCE_MODEL_WARNING = (
    "This slide looks like fluorescence (a dark background), but the built-in '{model}' model "
    "measures brightfield stains on white glass, so its values here are not meaningful."
)
MIN_OBJECT_FRACTION = 2e-4  # tissue pieces smaller than this fraction of the image are dropped
MIN_OBJECT_PX = 4
MAX_HOLE_FRACTION = 2e-4  # background holes smaller than this fraction of the image are filled
TISSUE_MASK_MIN_PX = 1024  # the mask comes from the coarsest level at least this long...
TISSUE_MASK_MAX_PX = 4096  # ...subsampled until its long side is at most this
MASK_PX_PER_PATCH = 4  # ...and fine enough for a patch's extent to span this many mask pixels
_CHUNK_BYTES = 64 * 2**20  # memory for one chunk of the integral-image interpolation
TISSUE_ESTIMATE_MAX_READ_PX = 64 * 2**20  # tissue_level_mask reads at most this many pixels
TISSUE_SHOWN_FRACTION = 0.5  # "x% tissue" counts patches at least this full, whatever threshold

Mode = Literal["auto", "brightfield", "fluorescence"]


def tissue_mask(image_rgb: np.ndarray, *, mode: Mode = "auto") -> np.ndarray:
    """Boolean tissue mask of a low-resolution RGB(A) or grey image (uint8), same height/width.

    Brightfield: Otsu on the smoothed summed optical density, the threshold clamped to
    [TISSUE_OD_SUM_MIN, TISSUE_OD_SUM_MAX]; fluorescence: the smoothed brightest channel above
    the dark background by FLUORESCENCE_STEP_GREY or more; "auto" applies the rule of
    :func:`is_fluorescence` to this image. Then pieces smaller than MIN_OBJECT_FRACTION of the
    image are dropped and holes smaller than MAX_HOLE_FRACTION filled. Transparent (alpha 0)
    pixels are never tissue.
    """
    rgb, valid = _rgb_and_valid(image_rgb)
    # the brightest channel, once (np.maximum is ~10x faster than a max over a 3-long axis)
    brightest = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    if mode == "auto":
        mode = "fluorescence" if _dark_background(rgb, brightest, valid) else "brightfield"
    if mode not in ("brightfield", "fluorescence"):
        raise ValueError(f"mode={mode!r} is unknown: use 'auto', 'brightfield' or 'fluorescence'.")
    score: np.ndarray = brightest
    if mode == "brightfield":
        od = optical_density(rgb)
        score = od[..., 0] + od[..., 1] + od[..., 2]
        valid &= brightest > BLACK_FILL_MAX
    score = ndimage.gaussian_filter(np.where(valid, score, 0).astype(np.float32), SMOOTH_SIGMA_PX)
    threshold = (_otsu_clamped(score[valid], TISSUE_OD_SUM_MIN, TISSUE_OD_SUM_MAX)
                 if mode == "brightfield" else _fluorescence_threshold(score[valid]))
    return clean_mask((score >= threshold) & valid)


def _rgb_and_valid(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 (H, W, 3) of an RGB(A) or grey image, and where it is not transparent."""
    img = as_numpy(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or 0 in img.shape:
        raise ValueError(
            f"An image of shape {img.shape} is not RGB: pass (height, width, 3), RGBA or grey."
        )
    img = _as_uint8(img)
    valid = img[..., 3] > 0 if img.shape[2] == 4 else np.ones(img.shape[:2], bool)
    rgb = img[..., :3] if img.shape[2] >= 3 else np.repeat(img, 3, axis=2)
    return rgb, valid


def _dark_background(rgb: np.ndarray, brightest: np.ndarray, valid: np.ndarray) -> bool:
    """Whether an image's background is dark (fluorescence): see DARK_GREY_MAX and after."""
    if not valid.any():
        return False
    darkest = np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    dark = np.mean(brightest[valid] <= DARK_GREY_MAX)
    glass = np.mean(darkest[valid] >= GLASS_GREY_MIN)
    return bool(dark >= FLUORESCENCE_DARK_FRACTION_MIN and glass <= FLUORESCENCE_GLASS_FRACTION_MAX)


def _fluorescence_threshold(values: np.ndarray) -> float:
    """Grey level (0..255) above which a fluorescence pixel is signal: the background level
    (the most common level below Otsu's threshold) plus FLUORESCENCE_STEP_GREY or
    FLUORESCENCE_NOISE_SIGMAS standard deviations of the background, whichever is more."""
    if values.size == 0:
        return math.inf
    from skimage.filters import threshold_otsu

    counts = np.bincount(np.clip(np.round(values), 0, 255).astype(np.int64), minlength=256)
    otsu = int(threshold_otsu(hist=counts)) if np.count_nonzero(counts) > 1 else 255
    background = int(np.argmax(counts[: otsu + 1]))
    below = counts[: background + 1]  # the background's dark side: |deviation| = background - k
    half = np.searchsorted(np.cumsum(below[::-1]), below.sum() / 2)  # median |deviation|
    sigma = 1.4826 * float(half)  # the standard deviation of a normal with that median
    return background + max(FLUORESCENCE_STEP_GREY, FLUORESCENCE_NOISE_SIGMAS * sigma)


def _as_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.bool_ or not np.issubdtype(img.dtype, np.number):
        raise ValueError(f"An image of dtype {img.dtype} is not numeric: pass uint8 RGB.")
    if np.issubdtype(img.dtype, np.floating) and float(np.nanmax(img)) <= 1.0:
        img = img * 255.0
    elif img.dtype == np.uint16:
        img = img / 257.0
    return np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)


def _otsu_clamped(values: np.ndarray, lo: float, hi: float) -> float:
    """Otsu's threshold of ``values`` (256-bin histogram), clamped to [lo, hi]."""
    if values.size == 0 or float(values.min()) == float(values.max()):
        return hi if values.size == 0 or float(values.max()) < hi else lo
    from skimage.filters import threshold_otsu

    return float(np.clip(threshold_otsu(values), lo, hi))


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Drop tissue pieces and fill holes smaller than their fractions of the image area."""
    mask = np.asarray(mask, bool)
    area = mask.size
    eight = np.ones((3, 3), bool)
    labels, n = ndimage.label(mask, structure=eight)
    if n:
        sizes = np.bincount(labels.ravel())
        small = sizes < max(MIN_OBJECT_PX, MIN_OBJECT_FRACTION * area)
        small[0] = False
        mask = mask & ~small[labels]
    labels, n = ndimage.label(~mask)  # 4-connected background
    if n:
        sizes = np.bincount(labels.ravel())
        fill = sizes < MAX_HOLE_FRACTION * area
        fill[0] = False
        mask = mask | fill[labels]
    return mask


def grid_tissue_fraction(
    mask: np.ndarray,
    mask_downsample: float | Sequence[float],
    grid: PatchGrid,
    grid_downsample: float | Sequence[float] = 1.0,
) -> np.ndarray:
    """Fraction (0..1) of each patch's level-0 extent that is tissue: float32 (rows, cols).

    Mask pixel (p, q) covers level-0 pixels [p * dy, (p + 1) * dy) x [q * dx, (q + 1) * dx),
    with ``mask_downsample`` (dy, dx) level-0 px per mask px; the grid lies on a level of
    ``grid_downsample``. Partly covered mask pixels count by area; the extent outside the mask
    (SAME padding, beyond the image) counts as background.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"A mask of shape {m.shape} is not a 2-D image.")
    mdy, mdx = as_float_pair("mask_downsample", mask_downsample)
    gdy, gdx = as_float_pair("grid_downsample", grid_downsample)
    # counted in integers (exact, and half the time of float64 sums), along rows first, in
    # place: the table is 4 bytes a mask pixel (a 20k x 20k mask: 1.6 GB), read as exact floats
    integral = np.zeros((m.shape[0] + 1, m.shape[1] + 1),
                        np.int64 if m.size >= 2**31 else np.int32)
    np.cumsum(m, axis=1, dtype=integral.dtype, out=integral[1:, 1:])
    np.cumsum(integral[1:, 1:], axis=0, out=integral[1:, 1:])
    ey, ex = grid.effective_size
    ys = grid.row_starts() * gdy
    xs = grid.col_starts() * gdx
    wy = _interp_weights(np.concatenate([ys, ys + ey * gdy]) / mdy, m.shape[0])
    wx = _interp_weights(np.concatenate([xs, xs + ex * gdx]) / mdx, m.shape[1])
    rows, cols = grid.rows, grid.cols
    per_chunk = max(1, _CHUNK_BYTES // (16 * (integral.shape[1] + 2 * cols)))
    out = np.empty((rows, cols), np.float32)
    norm = mdy * mdx / (ey * gdy * ex * gdx)
    for start in range(0, rows, per_chunk):
        sel = np.r_[start : min(start + per_chunk, rows)]
        k = len(sel)
        at = np.concatenate([sel, sel + rows])
        part = _apply(wy, at, integral)  # (2k, W + 1): integral at the chunk's row edges
        corners = _apply(wx, np.arange(2 * cols), part.T).T  # (2k, 2 * cols)
        area = (corners[k:, cols:] - corners[:k, cols:] - corners[k:, :cols]
                + corners[:k, :cols])
        out[start : start + k] = np.clip(area * norm, 0.0, 1.0)
    return out


def _interp_weights(u: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index and weight to interpolate an integral image of n + 1 entries at positions ``u``.

    The integral of a piecewise-constant mask is bilinear inside each pixel, so linear
    interpolation of its integral image is exact.
    """
    u = np.clip(u, 0.0, float(n))
    i = np.minimum(np.floor(u).astype(np.int64), n - 1)
    return i, u - i


def _apply(w: tuple[np.ndarray, np.ndarray], at: np.ndarray, table: np.ndarray) -> np.ndarray:
    i, f = w[0][at], w[1][at][:, None]
    return (1.0 - f) * table[i] + f * table[i + 1]


# --- slides -------------------------------------------------------------------------------------
def _levels(source: Any) -> tuple[list[Any], list[FloatPair]]:
    """Levels and (dy, dx) downsamples of a Slide-like object or of one level-0 image."""
    if hasattr(source, "levels") and hasattr(source, "downsamples"):
        return list(source.levels), [as_float_pair("downsample", d) for d in source.downsamples]
    return [source], [(1.0, 1.0)]


def choose_mask_level(source: Any, grid: PatchGrid | None = None,
                      grid_downsample: float | Sequence[float] = 1.0) -> int:
    """Index of the level the tissue mask is read from.

    The coarsest level whose long side is at least TISSUE_MASK_MIN_PX and, with a grid, whose
    pixels are at most 1 / MASK_PX_PER_PATCH of a patch's level-0 extent; level 0 if none is.
    """
    levels, downsamples = _levels(source)
    limit = math.inf
    if grid is not None:
        gdy, gdx = as_float_pair("grid_downsample", grid_downsample)
        ey, ex = grid.effective_size
        limit = min(ey * gdy, ex * gdx) / MASK_PX_PER_PATCH
    for index in range(len(levels) - 1, -1, -1):
        h, w = levels[index].shape[:2]
        if max(h, w) >= TISSUE_MASK_MIN_PX and max(downsamples[index]) <= limit:
            return index
    return 0


def slide_tissue_mask(
    source: Any,
    *,
    level: int | None = None,
    grid: PatchGrid | None = None,
    grid_downsample: float | Sequence[float] = 1.0,
    mode: Mode = "auto",
) -> tuple[np.ndarray, FloatPair]:
    """Tissue mask of a slide (``.levels``, ``.downsamples``) or of a level-0 image array.

    Reads one level (:func:`choose_mask_level` unless ``level`` is given), every k-th pixel
    when its long side exceeds TISSUE_MASK_MAX_PX; "auto" is :func:`is_fluorescence` of the
    slide. Returns the mask and its (dy, dx) level-0 px per mask px.
    """
    _, mask, scale = slide_tissue_pixels(source, level=level, grid=grid,
                                         grid_downsample=grid_downsample, mode=mode)
    return mask, scale


def slide_tissue_pixels(
    source: Any,
    *,
    level: int | None = None,
    grid: PatchGrid | None = None,
    grid_downsample: float | Sequence[float] = 1.0,
    mode: Mode = "auto",
) -> tuple[np.ndarray, np.ndarray, FloatPair]:
    """The pixels :func:`slide_tissue_mask` reads (uint8 RGB(A)), their mask, and their (dy, dx)
    level-0 px per pixel."""
    levels, downsamples = _levels(source)
    index = choose_mask_level(source, grid, grid_downsample) if level is None else level
    pixels, k = _read_subsampled(levels[index], TISSUE_MASK_MAX_PX)
    if mode == "auto":
        mode = "fluorescence" if is_fluorescence(source) else "brightfield"
    dy, dx = downsamples[index]
    return pixels, tissue_mask(pixels, mode=mode), (dy * k, dx * k)


def is_fluorescence(source: Any) -> bool:
    """Whether a slide (``.levels``) or an image has a dark background (fluorescence).

    Reads only the coarsest level, every k-th pixel when it is over FLUORESCENCE_PROBE_MAX_PX
    long: at least FLUORESCENCE_DARK_FRACTION_MIN of its pixels are dark and at most
    FLUORESCENCE_GLASS_FRACTION_MAX are bright glass.
    """
    levels, _ = _levels(source)
    rgb, valid = _rgb_and_valid(_read_subsampled(levels[-1], FLUORESCENCE_PROBE_MAX_PX)[0])
    brightest = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    return _dark_background(rgb, brightest, valid)


def _read_subsampled(image: Any, max_px: int) -> tuple[np.ndarray, int]:
    """Every k-th pixel of ``image`` (the centre of each k x k block) so that its long side is
    at most ``max_px``, as numpy, and k."""
    k = max(1, math.ceil(max(image.shape[:2]) / max_px))
    offset = k // 2
    return as_numpy(image[offset::k, offset::k]), k


def patch_tissue_fraction(source: Any, grid: PatchGrid, level: int = 0, *,
                          mode: Mode = "auto") -> np.ndarray:
    """Tissue fraction (0..1) of each patch of ``grid`` on ``level`` of ``source``: (rows, cols).

    ``source`` is a slide (``.levels``, ``.downsamples``) or a level-0 image (then ``level`` is 0).
    """
    levels, downsamples = _levels(source)
    if not 0 <= level < len(levels):
        raise ValueError(
            f"level={level} does not exist: the slide has levels 0..{len(levels) - 1}."
        )
    mask, mask_ds = slide_tissue_mask(source, grid=grid, grid_downsample=downsamples[level],
                                      mode=mode)
    return grid_tissue_fraction(mask, mask_ds, grid, downsamples[level])


def patch_tissue_mask(source: Any, grid: PatchGrid, level: int = 0, threshold: float = 0.5,
                      *, mode: Mode = "auto") -> np.ndarray:
    """Patches to compute, bool (rows, cols): tissue fraction >= ``threshold``.

    ``threshold`` 0 disables background skipping (all True, nothing read).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"tissue threshold={threshold!r} must be between 0 and 1 (0 disables).")
    if threshold == 0.0:
        return np.ones(grid.shape, bool)
    return patch_tissue_fraction(source, grid, level, mode=mode) >= threshold


# --- the status line's estimate ------------------------------------------------------------------
def tissue_level_mask(source: Any, mask_level: int) -> tuple[np.ndarray, FloatPair] | None:
    """The tissue mask the run computes from ``mask_level`` of ``source`` (see
    :func:`slide_tissue_mask`) and its (dy, dx) level-0 px per mask px.

    None when that level holds more than TISSUE_ESTIMATE_MAX_READ_PX pixels. Reads pixels:
    call it off the GUI thread.
    """
    h, w = source.levels[mask_level].shape[:2]
    if h * w > TISSUE_ESTIMATE_MAX_READ_PX:
        return None
    return slide_tissue_mask(source, level=mask_level)


def grid_status(grid: PatchGrid, tissue: np.ndarray | None, threshold: float,
                inside: np.ndarray | None = None) -> str:
    """'412 x 388 = 159,856 patches, 41% tissue, 65,541 to run' (tissue: per-patch fraction).

    The share of tissue is of patches at least ``TISSUE_SHOWN_FRACTION`` tissue, so it does not
    move with ``threshold``; "N to run" (threshold > 0) counts those at the threshold. With
    ``inside`` (bool, the patches in a region of interest), '2,310 in the region' and the
    patches to run are those inside.
    """
    text = f"{grid.rows:,} x {grid.cols:,} = {grid.n_patches:,} patches"
    if inside is not None:
        text += f", {int(inside.sum()):,} in the region"
    if tissue is None:
        return text + (f", {int(inside.sum()):,} to run" if inside is not None else "")
    text += f", {(tissue >= TISSUE_SHOWN_FRACTION).mean():.0%} tissue"
    run = tissue >= threshold if inside is None else (tissue >= threshold) & inside
    return text + (f", {int(run.sum()):,} to run" if threshold > 0 or inside is not None else "")
