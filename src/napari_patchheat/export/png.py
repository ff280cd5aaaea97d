"""PNG overlay: one class of the heatmap blended over a slide thumbnail, with a colour bar.

Needs no Qt and no napari: colormaps come from the ``cmap`` package, mapped as napari maps them
(the names the dock and the CLI offer give napari's colours exactly; a few other names mean
another map in ``cmap`` than in napari, e.g. "fire" and "ice"), drawing from Pillow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..heatmap import Heatmap
from ._files import atomic_write
from .raster import level0_shape, raster_cells, sample_cells

PNG_MAX_PX = 2000  # default: the PNG (overlay + colour bar) fits this many pixels each way
PNG_MIN_PX = 64


def png_size(level0: Sequence[int], max_px: int = PNG_MAX_PX) -> tuple[int, int, int]:
    """(height, width) of the overlay and height of the colour bar below it, together <= max_px.

    Never larger than level 0 itself.
    """
    if max_px < PNG_MIN_PX:
        raise ValueError(f"png_max_px={max_px} is too small: use at least {PNG_MIN_PX} px.")
    h0, w0 = level0
    scale = min(1.0, max_px / max(h0, w0))
    h, w = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    if h + _bar_height(w) > max_px:
        scale = (max_px - _bar_height(w)) / h0
        h, w = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    return h, w, _bar_height(w)


def _bar_height(width: int) -> int:
    return max(48, min(120, round(0.06 * width)))


def colormap_lut(colormap: Any = "inferno", n: int = 256) -> np.ndarray:
    """(n, 3) RGB floats 0..1 of ``colormap`` at n evenly spaced values from 0 to 1.

    ``colormap``: anything with napari ``Colormap``'s ``map(values) -> (n, 4) RGBA`` (a napari
    Colormap), else a name (``"inferno"``, ``"viridis"``, ...) or colormap of the ``cmap``
    package (:func:`_cmap_rgba`; napari's colours for the dock's names). Needs no Qt and no
    napari.
    """
    values = np.linspace(0.0, 1.0, n)
    rgba = colormap.map(values) if hasattr(colormap, "map") else _cmap_rgba(colormap, values)
    return np.asarray(np.asarray(rgba)[:, :3], dtype=np.float32)


def _cmap_rgba(colormap: Any, values: np.ndarray) -> np.ndarray:
    """(len(values), 4) RGBA of a ``cmap`` colormap, mapped as napari's ``Colormap.map`` maps
    it: linear between the colour stops, which napari keeps as float32 (so a map both define
    alike, as the dock's are, gives napari's colours bit for bit); ValueError for a name
    ``cmap`` does not know."""
    from cmap import Colormap

    try:
        cm = Colormap(colormap)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"colormap={colormap!r} is not a known colormap: use a name such as "
                         "'inferno', 'viridis', 'magma', 'turbo' or 'gray'.") from exc
    if cm.interpolation != "linear":  # a categorical map: its own colours, no blending
        return np.asarray(cm(values), np.float64)
    stops = np.asarray(cm.color_stops.stops, np.float32)
    colors = np.asarray(cm.color_stops.color_array, np.float32)
    return np.stack([np.interp(values, stops, colors[:, k]) for k in range(4)], axis=-1)


def natural_range(plane: np.ndarray) -> tuple[float, float]:
    """A class's natural value range: 0..1 (probabilities), or the computed values' range where
    they leave it."""
    finite = plane[np.isfinite(plane)]
    if finite.size == 0 or (finite.min() >= 0 and finite.max() <= 1):
        return 0.0, 1.0
    return float(finite.min()), float(finite.max())


def _fit_thumbnail(thumbnail: Any, h: int, w: int) -> np.ndarray:
    from PIL import Image

    if thumbnail is None:
        return np.full((h, w, 3), 255, dtype=np.uint8)
    img = np.asarray(thumbnail)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"thumbnail of shape {img.shape} must be an RGB(A) image (Y, X, 3 or 4).")
    img = img[..., :3]
    if img.dtype != np.uint8:
        scale = 255.0 if np.issubdtype(img.dtype, np.floating) and img.max() <= 1 else 1.0
        img = np.clip(img * scale, 0, 255).astype(np.uint8)
    if img.shape[:2] == (h, w):
        return img.copy()
    method = Image.Resampling.LANCZOS if img.shape[0] > h else Image.Resampling.BILINEAR
    return np.array(Image.fromarray(np.ascontiguousarray(img)).resize((w, h), method))


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or without FreeType
        return ImageFont.load_default()


def _colour_bar(
    width: int, height: int, lut: np.ndarray, lo: float, hi: float, title: str
) -> np.ndarray:
    from PIL import Image, ImageDraw

    panel = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    pad, font = max(4, height // 8), _font(max(8, round(height * 0.28)))
    labels = (f"{lo:.3g}", f"{hi:.3g}")
    label_w = max(draw.textlength(t, font=font) for t in labels)
    x0, x1 = round(2 * pad + label_w), round(width - 2 * pad - label_w)
    if x1 - x0 < 16:  # too narrow for labels: the bar alone
        x0, x1 = pad, width - pad
        labels = ("", "")
    y0, y1 = height // 2, height - pad
    ramp = (lut[np.linspace(0, len(lut) - 1, max(x1 - x0, 1)).round().astype(int)] * 255).round()
    bar = np.broadcast_to(ramp.astype(np.uint8)[None], (y1 - y0, x1 - x0, 3))
    panel.paste(Image.fromarray(np.ascontiguousarray(bar)), (x0, y0))
    draw.rectangle((x0 - 1, y0 - 1, x1, y1), outline=(64, 64, 64))
    mid = (y0 + y1) / 2
    draw.text((x0 - pad, mid), labels[0], fill=(0, 0, 0), font=font, anchor="rm")
    draw.text((x1 + pad, mid), labels[1], fill=(0, 0, 0), font=font, anchor="lm")
    draw.text((width / 2, y0 - pad), title, fill=(0, 0, 0), font=font, anchor="mb")
    return np.asarray(panel)


def render_overlay(
    heatmap: Heatmap,
    thumbnail: Any = None,
    *,
    class_name: str | int | None = None,
    colormap: Any = "inferno",
    opacity: float = 0.5,
    max_px: int = PNG_MAX_PX,
    value_range: tuple[float, float] | None = None,
    show_at_or_above: float | None = None,
) -> np.ndarray:
    """RGB uint8 image: the slide ``thumbnail`` (any size, whole slide) with one class blended.

    NaN cells leave the thumbnail unchanged (white without one). Values map linearly from
    ``value_range`` (default 0..1, or the data range if outside it) onto ``colormap``; cells
    below ``show_at_or_above`` leave the thumbnail unchanged too, as in the dock. A colour
    bar with the class name and range sits below. Fits ``max_px`` (see :func:`png_size`).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity={opacity} must be between 0 and 1.")
    c = heatmap.class_index(0 if class_name is None else class_name)
    h, w, bar_h = png_size(level0_shape(heatmap), max_px)
    out = _fit_thumbnail(thumbnail, h, w)
    plane = heatmap.values[..., c]
    lo, hi = value_range if value_range is not None else natural_range(plane)
    cells = sample_cells(plane, *raster_cells(heatmap, (h, w)))
    shown = np.isfinite(cells)
    if show_at_or_above is not None:
        shown[shown] = cells[shown] >= show_at_or_above
    lut = colormap_lut(colormap)
    t = np.clip((cells[shown] - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros(shown.sum())
    rgb = lut[np.round(t * (len(lut) - 1)).astype(int)] * 255
    out[shown] = np.round((1 - opacity) * out[shown] + opacity * rgb).astype(np.uint8)
    title = heatmap.class_names[c] + (f" ({heatmap.model_name})" if heatmap.model_name else "")
    bar = _colour_bar(w, bar_h, lut, lo, hi, title)
    return np.concatenate([out, bar], axis=0)


def write_png_overlay(
    heatmap: Heatmap, path: str | Path, thumbnail: Any = None, **kwargs: Any
) -> Path:
    """Write :func:`render_overlay` (same keyword arguments) as a PNG with the metadata as text."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    image = render_overlay(heatmap, thumbnail, **kwargs)
    info = PngInfo()
    info.add_text("patchheat", json.dumps(heatmap.metadata(), default=str))
    with atomic_write(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)
    return path
