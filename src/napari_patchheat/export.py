"""Export a :class:`Heatmap` to files other tools read, and read them back.

Formats: pyramidal OME-TIFF (+ JSON sidecar), a TIFF aligned to a slide level, a PNG overlay,
CSV and GeoJSON (QuPath / WSInfer style). No TensorFlow, no Qt. All coordinates are level-0
pixels (DESIGN.md, "The coordinate contract"); docs/export.md states each format exactly.
Every file is written to a temporary file in its folder, then renamed into place: a failure
leaves no half file, and a folder that cannot be written is one :class:`ExportError`.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import uuid
import warnings
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .heatmap import Heatmap

FORMATS = ("ometiff", "slide_raster", "png", "csv", "geojson")
SUFFIXES = {
    "ometiff": ".ome.tif",
    "slide_raster": ".raster.tif",
    "png": ".png",
    "csv": ".csv",
    "geojson": ".geojson",
}
OME_TILE_PX = 256  # OME-TIFF tile side; pyramid levels halve until one tile holds a level
RASTER_TILE_PX = 512  # slide-aligned raster: tile side, and the unit of bounded-memory writing
PNG_MAX_PX = 2000  # default: the PNG (overlay + colour bar) fits this many pixels each way
PNG_MIN_PX = 64
BIGTIFF_FROM_BYTES = 2**31  # uncompressed size from which TIFFs are written as BigTIFF
METADATA_NAMESPACE = "napari-patchheat/heatmap-metadata"
PLACEMENT_NAMESPACE = "napari-patchheat/placement"
TABLE_CHUNK_ROWS = 65536  # CSV / GeoJSON are written this many patches at a time
CSV_COLUMNS = ("row", "col", "level", "x", "y", "width", "height", "center_x", "center_y")
CLASS_COLORS_RGB = (  # classification colours in GeoJSON, class k gets k % 10
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


class ExportError(OSError):
    """A folder or file could not be written (no permission, no space, not a folder).

    ``errno`` is the cause's, ``filename`` the folder; ``str()`` is the sentence for the user.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


# --- the one call the widget, the CLI and scripts use -------------------------------------------
def export_heatmap(
    heatmap: Heatmap,
    out_dir: str | Path,
    stem: str,
    formats: str | Sequence[str] = FORMATS,
    *,
    thumbnail: Any = None,
    class_name: str | int | None = None,
    colormap: Any = "inferno",
    opacity: float = 0.5,
    png_max_px: int = PNG_MAX_PX,
    value_range: tuple[float, float] | None = None,
    raster_level_shape: Sequence[int] | None = None,
    object_type: str = "tile",
) -> dict[str, Path]:
    """Write ``heatmap`` to ``out_dir/<stem><suffix>`` in each of ``formats``; return the paths.

    ``formats``: names from :data:`FORMATS` or one comma-separated string ("ometiff,png").
    Keys of the result are the formats, plus "json" (the OME-TIFF's sidecar). ``thumbnail``,
    ``class_name``, ``colormap``, ``opacity``, ``png_max_px``, ``value_range`` shape the PNG;
    ``raster_level_shape`` is the slide level (height, width) the raster is aligned to.
    """
    chosen = parse_formats(formats)
    if not stem or Path(stem).name != stem or stem in (".", ".."):
        raise ValueError(f"stem={stem!r} must be a plain file name without folders, e.g. 'slide1'.")
    folder = ensure_folder(out_dir)
    out: dict[str, Path] = {}
    for fmt in chosen:
        path = folder / f"{stem}{SUFFIXES[fmt]}"
        if fmt == "ometiff":
            out[fmt] = write_ome_tiff(heatmap, path)
            out["json"] = sidecar_path(path)
        elif fmt == "slide_raster":
            out[fmt] = write_slide_raster(heatmap, path, raster_level_shape)
        elif fmt == "png":
            out[fmt] = write_png_overlay(
                heatmap, path, thumbnail, class_name=class_name, colormap=colormap,
                opacity=opacity, max_px=png_max_px, value_range=value_range,
            )
        elif fmt == "csv":
            out[fmt] = write_csv(heatmap, path)
        else:
            out[fmt] = write_geojson(heatmap, path, object_type=object_type)
    return out


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Normalise "ometiff,png" or ["PNG", "csv"] to known format names, in the given order."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [str(f).strip().lower().replace("-", "_") for f in items if str(f).strip()]
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise ValueError(
            f"Unknown export format(s) {unknown or formats!r}: choose from {', '.join(FORMATS)}."
        )
    return tuple(dict.fromkeys(names))


# --- atomic writing and folder errors -----------------------------------------------------------
def ensure_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and parents) if needed; if impossible, an :class:`ExportError`."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _folder_error(folder, exc) from exc
    if not folder.is_dir():
        raise _folder_error(folder, NotADirectoryError(errno.ENOTDIR, "Not a directory"))
    return folder


def _folder_error(folder: Path, exc: OSError) -> ExportError:
    hints = {
        errno.ENOSPC: "The disk is full: free some space or choose another folder.",
        errno.EDQUOT: "The disk quota is exceeded: free some space or choose another folder.",
        errno.ENOENT: "The folder does not exist: create it or choose another one.",
        errno.ENOTDIR: "Part of the path is a file, not a folder: choose another folder.",
    }
    reason = exc.strerror or str(exc)
    hint = hints.get(exc.errno or 0, "Choose a folder you can write to.")
    err = ExportError(f"Cannot write the heatmap export to the folder '{folder}': {reason}. {hint}")
    err.errno, err.filename = exc.errno, str(folder)
    return err


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, ExportError):
            raise _folder_error(path.parent, exc) from exc
        raise


def _write_text(path: Path, text: str) -> Path:
    with _atomic(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _metadata_json(heatmap: Heatmap, indent: int | None = None) -> str:
    return json.dumps(heatmap.metadata(), indent=indent, default=str)


# --- OME-TIFF ------------------------------------------------------------------------------------
def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of an OME-TIFF: ``<stem>.json`` beside ``<stem>.ome.tif``."""
    path = Path(path)
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".json")


def ome_placement(heatmap: Heatmap) -> dict[str, Any]:
    """Physical pixel size and the position of cell (0, 0)'s centre, as the OME-TIFF records them.

    In µm when the slide's mpp is known, else in level-0 pixels (unit "pixel"). Positions are in
    the slide's frame where level-0 pixel (0, 0) is centred on 0 (napari's world).
    """
    (sy, sx), (ty, tx) = heatmap.placement()
    my, mx = heatmap.mpp if heatmap.mpp is not None else (1.0, 1.0)
    unit = "µm" if heatmap.mpp is not None else "pixel"
    return {"size": (sy * my, sx * mx), "position": (ty * my, tx * mx), "unit": unit,
            "size_level0_px": (sy, sx), "position_level0_px": (ty, tx)}


def _half(data: np.ndarray) -> np.ndarray:
    """Next pyramid level of (C, Y, X): the NaN-ignoring mean of 2 x 2 cells."""
    c, h, w = data.shape
    padded = np.full((c, h + h % 2, w + w % 2), np.nan, dtype=np.float32)
    padded[:, :h, :w] = data
    blocks = padded.reshape(c, padded.shape[1] // 2, 2, padded.shape[2] // 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        return np.nanmean(blocks, axis=(2, 4)).astype(np.float32)


def write_ome_tiff(heatmap: Heatmap, path: str | Path, *, sidecar: bool = True) -> Path:
    """Write the heatmap as a tiled, zlib-compressed, pyramidal (SubIFDs) OME-TIFF.

    Channels are the classes, float32, NaN where not computed. PhysicalSizeY/X = stride x
    downsample x mpp; Plane PositionY/X = centre of cell (0, 0) (see :func:`ome_placement`).
    The full :meth:`Heatmap.metadata` goes into the OME-XML and the ``<stem>.json`` sidecar.
    """
    import tifffile

    path = Path(path)
    levels = [np.ascontiguousarray(np.moveaxis(heatmap.values, -1, 0), dtype=np.float32)]
    while max(levels[-1].shape[1:]) > OME_TILE_PX:
        levels.append(_half(levels[-1]))
    place = ome_placement(heatmap)
    (py, px), (oy, ox), unit = place["size"], place["position"], place["unit"]
    n = len(heatmap.class_names)
    metadata = {
        "axes": "CYX",
        "Name": f"{Path(heatmap.slide_path).name or 'slide'} {heatmap.model_name or 'model'}",
        "PhysicalSizeY": py, "PhysicalSizeYUnit": unit,
        "PhysicalSizeX": px, "PhysicalSizeXUnit": unit,
        "Channel": {"Name": list(heatmap.class_names)},
        "Plane": {"PositionY": [oy] * n, "PositionYUnit": [unit] * n,
                  "PositionX": [ox] * n, "PositionXUnit": [unit] * n},
        "CommentAnnotation": {"Namespace": METADATA_NAMESPACE, "Value": _metadata_json(heatmap)},
        "MapAnnotation": {
            "Namespace": PLACEMENT_NAMESPACE,
            "cell_size_level0_px_y": repr(place["size_level0_px"][0]),
            "cell_size_level0_px_x": repr(place["size_level0_px"][1]),
            "cell00_center_level0_px_y": repr(place["position_level0_px"][0]),
            "cell00_center_level0_px_x": repr(place["position_level0_px"][1]),
        },
    }
    opts: dict[str, Any] = {"tile": (OME_TILE_PX, OME_TILE_PX), "compression": "zlib",
                            "photometric": "minisblack"}
    if heatmap.mpp is not None:
        opts["resolutionunit"] = "CENTIMETER"
    big = sum(level.nbytes for level in levels) > BIGTIFF_FROM_BYTES
    with _atomic(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=big, ome=True) as tif:
            for k, level in enumerate(levels):
                if heatmap.mpp is not None:
                    opts["resolution"] = (1e4 / (px * 2**k), 1e4 / (py * 2**k))
                if k == 0:
                    tif.write(level, subifds=len(levels) - 1, metadata=metadata, **opts)
                else:
                    tif.write(level, subfiletype=1, metadata=None, **opts)
    if sidecar:
        _write_text(sidecar_path(path), _metadata_json(heatmap, indent=1))
    return path


def read_ome_tiff(path: str | Path) -> Heatmap:
    """Read a heatmap written by :func:`write_ome_tiff` (metadata from the file, else sidecar)."""
    import tifffile

    path = Path(path)
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        values = series.asarray()
        if "C" not in series.axes:
            values = values[np.newaxis]
        meta = _ome_comment(tif.ome_metadata or "")
    if meta is None and sidecar_path(path).is_file():
        meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    if meta is None:
        raise ValueError(
            f"{path} holds no PatchHeat heatmap metadata and has no sidecar "
            f"{sidecar_path(path).name}: it was not written by napari-patchheat."
        )
    return Heatmap.from_metadata(meta, np.moveaxis(values, 0, -1))


def is_heatmap_file(path: str | Path) -> bool:
    """True for an OME-TIFF written by :func:`write_ome_tiff` (its metadata or its sidecar)."""
    import tifffile

    path = Path(path)
    if not path.name.lower().endswith((".ome.tif", ".ome.tiff")) or not path.is_file():
        return False
    if sidecar_path(path).is_file():
        return True
    try:
        with tifffile.TiffFile(path) as tif:
            return METADATA_NAMESPACE in (tif.ome_metadata or "")
    except (OSError, ValueError, tifffile.TiffFileError):
        return False


def _ome_comment(xml: str) -> dict[str, Any] | None:
    if not xml:
        return None
    for el in ET.fromstring(xml).iter():
        if el.tag.endswith("CommentAnnotation") and el.get("Namespace") == METADATA_NAMESPACE:
            for child in el:
                if child.tag.endswith("Value") and child.text:
                    return json.loads(child.text)
    return None


# --- slide-aligned raster ----------------------------------------------------------------------
def level0_shape(heatmap: Heatmap) -> tuple[int, int]:
    """Level-0 (height, width): the slide's, or the heatmap level's size times its downsample."""
    if heatmap.slide_shape is not None:
        return int(heatmap.slide_shape[0]), int(heatmap.slide_shape[1])
    g, (dy, dx) = heatmap.grid, heatmap.downsample
    return max(1, round(g.height * dy)), max(1, round(g.width * dx))


def raster_cells(heatmap: Heatmap, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap row of every pixel row, and column of every pixel column, of an image of ``shape``.

    The image spans the whole slide (its pixel p covers level-0 [p * D, (p + 1) * D) with D =
    level-0 size / ``shape``). Each pixel takes the cell whose stride area (centred on the patch
    centre) holds the pixel's centre; -1 where none does. See docs/export.md for the formula.
    """
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ValueError(f"shape={tuple(shape)!r} must be a positive (height, width).")
    g = heatmap.grid
    if (h, w) == (g.height, g.width):
        ratios = (1.0, 1.0)  # the heatmap's own level: exact integer arithmetic below
    else:
        h0, w0 = level0_shape(heatmap)
        ratios = (h0 / h / heatmap.downsample[0], w0 / w / heatmap.downsample[1])
    out = []
    for axis, n in enumerate((h, w)):
        s, e, pb = g.stride[axis], g.effective_size[axis], g.pad_before[axis]
        q = (np.arange(n, dtype=np.float64) + 0.5) * ratios[axis] - 0.5  # heatmap-level px
        i = np.floor_divide(2 * q + (2 * pb - (e - 1) + s), 2 * s).astype(np.int64)
        i[(i < 0) | (i >= g.shape[axis])] = -1
        out.append(i)
    return out[0], out[1]


def _sample(plane: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """``plane`` (rows, cols) at cells iy x ix, NaN where an index is -1."""
    tile = plane[np.maximum(iy, 0)][:, np.maximum(ix, 0)]
    tile[iy < 0, :] = np.nan
    tile[:, ix < 0] = np.nan
    return tile


def write_slide_raster(
    heatmap: Heatmap,
    path: str | Path,
    level_shape: Sequence[int] | None = None,
    *,
    classes: Sequence[str | int] | None = None,
    tile_px: int = RASTER_TILE_PX,
) -> Path:
    """Write the heatmap resampled (nearest, see :func:`raster_cells`) onto a slide level's pixels.

    ``level_shape``: the level's (height, width), default the heatmap's own level. One float32
    page per class (all by default), NaN outside the cells; tiled, zlib, written tile by tile.
    """
    import tifffile

    path = Path(path)
    g = heatmap.grid
    shape = (g.height, g.width) if level_shape is None else tuple(int(v) for v in level_shape)
    iy, ix = raster_cells(heatmap, shape)
    chosen = range(len(heatmap.class_names)) if classes is None else classes
    idx = [heatmap.class_index(c) for c in chosen]
    h, w = shape
    h0, w0 = level0_shape(heatmap)
    describe = {
        "patchheat_raster": {
            "level_shape": [h, w], "downsample": [h0 / h, w0 / w],
            "classes": [heatmap.class_names[c] for c in idx],
        },
        "heatmap": heatmap.metadata(),
    }

    def tiles() -> Iterator[np.ndarray]:
        for c in idx:
            plane = heatmap.values[..., c]
            for y in range(0, h, tile_px):
                for x in range(0, w, tile_px):
                    yield _sample(plane, iy[y : y + tile_px], ix[x : x + tile_px])

    opts: dict[str, Any] = {}
    if heatmap.mpp is not None:
        opts = {"resolution": (1e4 / (heatmap.mpp[1] * w0 / w), 1e4 / (heatmap.mpp[0] * h0 / h)),
                "resolutionunit": "CENTIMETER"}
    with _atomic(path) as tmp:
        tifffile.imwrite(
            tmp, tiles(), shape=(len(idx), h, w), dtype=np.float32, tile=(tile_px, tile_px),
            photometric="minisblack", compression="zlib", compressionargs={"level": 1},
            metadata=None,
            description=json.dumps(describe, default=str),
            bigtiff=len(idx) * h * w * 4 > BIGTIFF_FROM_BYTES, **opts,
        )
    return path


# --- PNG overlay ---------------------------------------------------------------------------------
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
    """(n, 3) RGB floats 0..1 of a napari colormap (a name or a Colormap); needs no Qt."""
    from napari.utils.colormaps import ensure_colormap

    rgba = ensure_colormap(colormap).map(np.linspace(0.0, 1.0, n))
    return np.asarray(rgba[:, :3], dtype=np.float32)


def _value_range(plane: np.ndarray) -> tuple[float, float]:
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
) -> np.ndarray:
    """RGB uint8 image: the slide ``thumbnail`` (any size, whole slide) with one class blended.

    NaN cells leave the thumbnail unchanged (white without one). Values map linearly from
    ``value_range`` (default 0..1, or the data range if outside it) onto ``colormap``. A colour
    bar with the class name and range sits below. Fits ``max_px`` (see :func:`png_size`).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity={opacity} must be between 0 and 1.")
    c = heatmap.class_index(0 if class_name is None else class_name)
    h, w, bar_h = png_size(level0_shape(heatmap), max_px)
    out = _fit_thumbnail(thumbnail, h, w)
    plane = heatmap.values[..., c]
    lo, hi = value_range if value_range is not None else _value_range(plane)
    cells = _sample(plane, *raster_cells(heatmap, (h, w)))
    shown = np.isfinite(cells)
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
    with _atomic(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)
    return path


# --- tables: CSV and GeoJSON --------------------------------------------------------------------
@dataclass
class PatchTable:
    """The computed patches as a table: grid indices, level-0 boxes and centres, class values.

    ``boxes`` (n, 4) are ``(y0, x0, y1, x1)`` level-0 pixels, end-exclusive (PatchGrid.boxes);
    ``centers`` (n, 2) ``(y, x)`` in napari's world (pixel k centred on k; PatchGrid.centers).
    """

    rows: np.ndarray
    cols: np.ndarray
    level: int
    boxes: np.ndarray
    centers: np.ndarray
    values: np.ndarray
    class_names: tuple[str, ...]


def patch_table(heatmap: Heatmap) -> PatchTable:
    """One entry per computed patch, row-major."""
    return _table(heatmap, *np.nonzero(heatmap.computed))


def _table(heatmap: Heatmap, rows: np.ndarray, cols: np.ndarray) -> PatchTable:
    g, d = heatmap.grid, heatmap.downsample
    return PatchTable(rows, cols, heatmap.level, g.boxes(rows, cols, d), g.centers(rows, cols, d),
                      heatmap.values[rows, cols], heatmap.class_names)


def _table_chunks(heatmap: Heatmap) -> Iterator[PatchTable]:
    """:func:`patch_table` in pieces of TABLE_CHUNK_ROWS, so big tables stream in bounded memory."""
    rows, cols = np.nonzero(heatmap.computed)
    for start in range(0, len(rows), TABLE_CHUNK_ROWS):
        stop = start + TABLE_CHUNK_ROWS
        yield _table(heatmap, rows[start:stop], cols[start:stop])


def _class_columns(class_names: Sequence[str]) -> list[str]:
    return [f"class_{n}" if n in CSV_COLUMNS else n for n in class_names]


def _num_str(values: np.ndarray) -> np.ndarray:
    """Shortest round-trip text of each number; whole numbers without '.0'."""
    values = np.asarray(values)
    text = values.astype(str)
    whole = np.isfinite(values) & (values == np.round(values))
    text[whole] = values[whole].astype(np.int64).astype(str)
    return text


def write_csv(heatmap: Heatmap, path: str | Path) -> Path:
    """CSV, one row per computed patch: row, col, level, x, y, width, height, center_x, center_y
    and one column per class. Box and centre in level-0 pixels (see :class:`PatchTable`)."""
    path = Path(path)
    with _atomic(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([*CSV_COLUMNS, *_class_columns(heatmap.class_names)])
            for t in _table_chunks(heatmap):
                b, c = t.boxes, t.centers
                level = np.full(len(t.rows), str(t.level))
                columns = [t.rows.astype(str), t.cols.astype(str), level,
                           _num_str(b[:, 1]), _num_str(b[:, 0]),
                           _num_str(b[:, 3] - b[:, 1]), _num_str(b[:, 2] - b[:, 0]),
                           _num_str(c[:, 1]), _num_str(c[:, 0])]
                columns += [_num_str(t.values[:, k]) for k in range(t.values.shape[1])]
                writer.writerows(zip(*(col.tolist() for col in columns)))
    return path


def read_csv(path: str | Path) -> PatchTable:
    """Read a CSV written by :func:`write_csv`."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        data = np.array([[float(v) for v in row] for row in reader], dtype=np.float64)
    data = data.reshape(-1, len(header))
    fixed = len(CSV_COLUMNS)
    names = tuple(
        n[6:] if n.startswith("class_") and n[6:] in CSV_COLUMNS else n for n in header[fixed:]
    )
    x, y, w, h = data[:, 3], data[:, 4], data[:, 5], data[:, 6]
    level = int(data[0, 2]) if len(data) else -1
    return PatchTable(data[:, 0].astype(np.int64), data[:, 1].astype(np.int64), level,
                      np.stack([y, x, y + h, x + w], -1), data[:, [8, 7]],
                      data[:, fixed:].astype(np.float32), names)


def _ring(y0: float, x0: float, y1: float, x1: float) -> list[list[float]]:
    """Closed box ring, counter-clockwise in (x, y) as RFC 7946 counts it (WSInfer's order)."""
    return [[x1, y0], [x1, y1], [x0, y1], [x0, y0], [x1, y0]]


def write_geojson(heatmap: Heatmap, path: str | Path, *, object_type: str = "tile") -> Path:
    """GeoJSON FeatureCollection, one Polygon per computed patch, in level-0 pixels (x, y).

    Properties as QuPath reads them: ``objectType`` ("tile" or "detection"), ``measurements``
    {class: value}, ``classification`` {name: top class, color: [r, g, b]}; and ``patchheat``
    {row, col, level}. Streamed to disk feature by feature.
    """
    if object_type not in ("tile", "detection", "annotation"):
        raise ValueError(f"object_type={object_type!r}: use 'tile', 'detection' or 'annotation'.")
    path = Path(path)
    key = f"napari-patchheat:{heatmap.model_fingerprint}|{heatmap.slide_path}|{heatmap.level}"
    head = {"type": "FeatureCollection", "patchheat": heatmap.metadata()}
    names, sep = heatmap.class_names, "\n"
    with _atomic(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(head, default=str)[:-1] + ', "features": [')
            for t in _table_chunks(heatmap):
                boxes = [[int(v) if v.is_integer() else v for v in b] for b in t.boxes.tolist()]
                values = [[v if np.isfinite(v) else None for v in row]  # shortest float32 text
                          for row in t.values.astype(str).astype(float).tolist()]
                top = np.argmax(np.nan_to_num(t.values, nan=-np.inf), axis=1).tolist()
                for r, c, k, box, vals in zip(t.rows.tolist(), t.cols.tolist(), top, boxes, values):
                    colour = list(CLASS_COLORS_RGB[k % len(CLASS_COLORS_RGB)])
                    feature = {
                        "type": "Feature",
                        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{key}|{r}|{c}")),
                        "geometry": {"type": "Polygon", "coordinates": [_ring(*box)]},
                        "properties": {
                            "objectType": object_type,
                            "classification": {"name": names[k], "color": colour},
                            "measurements": dict(zip(names, vals)),
                            "patchheat": {"row": r, "col": c, "level": t.level},
                        },
                    }
                    f.write(sep + json.dumps(feature, allow_nan=False))
                    sep = ",\n"
            f.write("\n]}\n")
    return path


def read_geojson(path: str | Path) -> PatchTable:
    """Read a GeoJSON written by :func:`write_geojson` (boxes from the rings' extents)."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    feats = doc.get("features", [])
    names = tuple(doc.get("patchheat", {}).get("class_names")
                  or (feats[0]["properties"]["measurements"] if feats else ()))
    rows, cols, boxes, values, level = [], [], [], [], -1
    for feat in feats:
        props = feat["properties"]
        ring = np.asarray(feat["geometry"]["coordinates"][0], dtype=np.float64)
        boxes.append([ring[:, 1].min(), ring[:, 0].min(), ring[:, 1].max(), ring[:, 0].max()])
        rows.append(props["patchheat"]["row"])
        cols.append(props["patchheat"]["col"])
        level = props["patchheat"]["level"]
        m = props["measurements"]
        values.append([np.nan if m[k] is None else m[k] for k in names])
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centers = np.stack([(b[:, 0] + b[:, 2] - 1) / 2, (b[:, 1] + b[:, 3] - 1) / 2], -1)
    return PatchTable(np.asarray(rows, np.int64), np.asarray(cols, np.int64), level, b, centers,
                      np.asarray(values, np.float32).reshape(-1, len(names)), names)
