"""Export a :class:`Heatmap` to files other tools read, and read them back.

Formats: pyramidal OME-TIFF (+ JSON sidecar), OME-Zarr (NGFF 0.5), a TIFF aligned to a slide
level, a PNG overlay, CSV (ours or WSInfer's columns) and GeoJSON (QuPath / WSInfer style). No
TensorFlow, no Qt. All coordinates are level-0 pixels (DESIGN.md, "The coordinate contract");
docs/export.md states each format exactly.
Every file is written to a temporary file in its folder, then renamed into place (an OME-Zarr
folder likewise): a failure leaves no half file, and a folder that cannot be written is one
:class:`ExportError`.

Modules: ``_files`` (atomic writes, folder errors), ``ometiff``, ``omezarr``, ``raster``
(slide-aligned TIFF), ``png`` (overlay, colour bar), ``tables`` (CSV, GeoJSON), ``classes``
(which class a GeoJSON tile gets). Import from this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import atomic_write, ensure_folder
from ..heatmap import Heatmap
from ._files import BIGTIFF_FROM_BYTES, ExportError
from .classes import UNCLASSIFIED, ClassRule
from .ometiff import (
    METADATA_NAMESPACE,
    OME_TILE_PX,
    PLACEMENT_NAMESPACE,
    is_heatmap_file,
    ome_placement,
    read_ome_tiff,
    sidecar_path,
    write_ome_tiff,
)
from .omezarr import is_heatmap_zarr, read_ome_zarr, write_ome_zarr
from .png import PNG_MAX_PX, PNG_MIN_PX, colormap_lut, png_size, render_overlay, write_png_overlay
from .raster import RASTER_TILE_PX, level0_shape, raster_cells, sample_cells, write_slide_raster
from .tables import (
    CLASS_COLORS_RGB,
    CSV_COLUMNS,
    TABLE_CHUNK_ROWS,
    WSINFER_COLUMNS,
    PatchTable,
    patch_table,
    read_csv,
    read_geojson,
    write_csv,
    write_geojson,
    write_wsinfer_csv,
)

__all__ = [
    "BIGTIFF_FROM_BYTES", "CLASS_COLORS_RGB", "CSV_COLUMNS", "FORMATS", "METADATA_NAMESPACE",
    "OME_TILE_PX", "PLACEMENT_NAMESPACE", "PNG_MAX_PX", "PNG_MIN_PX", "RASTER_TILE_PX",
    "SUFFIXES", "TABLE_CHUNK_ROWS", "UNCLASSIFIED", "WSINFER_COLUMNS", "ClassRule",
    "ExportError", "PatchTable", "atomic_write",
    "colormap_lut", "ensure_folder", "export_heatmap", "is_heatmap_file", "is_heatmap_zarr",
    "level0_shape", "ome_placement", "parse_formats", "patch_table", "png_size", "raster_cells",
    "read_csv", "read_geojson", "read_ome_tiff", "read_ome_zarr", "render_overlay",
    "sample_cells", "sidecar_path", "write_csv", "write_geojson", "write_ome_tiff",
    "write_ome_zarr", "write_png_overlay",
    "write_slide_raster", "write_wsinfer_csv",
]

FORMATS = ("ometiff", "omezarr", "slide_raster", "png", "csv", "csv_wsinfer", "geojson")
SUFFIXES = {
    "ometiff": ".ome.tif",
    "omezarr": ".ome.zarr",
    "slide_raster": ".raster.tif",
    "png": ".png",
    "csv": ".csv",
    "csv_wsinfer": ".wsinfer.csv",
    "geojson": ".geojson",
}


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
    show_at_or_above: float | None = None,
    raster_level_shape: Sequence[int] | None = None,
    object_type: str = "tile",
    positive_threshold: float | None = None,
    min_probability: float | None = None,
) -> dict[str, Path]:
    """Write ``heatmap`` to ``out_dir/<stem><suffix>`` in each of ``formats``; return the paths.

    ``formats``: names from :data:`FORMATS` or one comma-separated string ("ometiff,png").
    Keys of the result are the formats, plus "json" (the OME-TIFF's sidecar). ``thumbnail``,
    ``class_name``, ``colormap``, ``opacity``, ``png_max_px``, ``value_range``,
    ``show_at_or_above`` shape the PNG;
    ``raster_level_shape`` is the slide level (height, width) the raster is aligned to;
    ``positive_threshold`` / ``min_probability`` classify GeoJSON tiles (:class:`ClassRule`).
    """
    chosen = parse_formats(formats)
    if not stem or Path(stem).name != stem or stem in (".", ".."):
        raise ValueError(f"stem={stem!r} must be a plain file name without folders, e.g. 'slide1'.")
    ClassRule(heatmap.class_names, positive_threshold, min_probability)  # fail before any file
    folder = ensure_folder(out_dir)
    out: dict[str, Path] = {}
    for fmt in chosen:
        path = folder / f"{stem}{SUFFIXES[fmt]}"
        if fmt == "ometiff":
            out[fmt] = write_ome_tiff(heatmap, path)
            out["json"] = sidecar_path(path)
        elif fmt == "omezarr":
            out[fmt] = write_ome_zarr(heatmap, path)
        elif fmt == "slide_raster":
            out[fmt] = write_slide_raster(heatmap, path, raster_level_shape)
        elif fmt == "png":
            out[fmt] = write_png_overlay(
                heatmap, path, thumbnail, class_name=class_name, colormap=colormap,
                opacity=opacity, max_px=png_max_px, value_range=value_range,
                show_at_or_above=show_at_or_above,
            )
        elif fmt == "csv":
            out[fmt] = write_csv(heatmap, path)
        elif fmt == "csv_wsinfer":
            out[fmt] = write_wsinfer_csv(heatmap, path)
        else:
            out[fmt] = write_geojson(heatmap, path, object_type=object_type,
                                     positive_threshold=positive_threshold,
                                     min_probability=min_probability)
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
