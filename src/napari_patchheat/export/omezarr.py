"""A heatmap as an OME-Zarr (NGFF 0.5, zarr v3), read back, and recognised by the reader.

Axes "cyx": one channel per class, float32, NaN where not computed; the pyramid of
:func:`~.ometiff.heatmap_levels` (2 x 2 NaN-ignoring means); scale and translation in µm (the
OME-TIFF's placement, :func:`~.ometiff.ome_placement`), the heatmap's metadata under the group's
``"patchheat"`` attribute. docs/export.md states it exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_folder, loads_json
from ..heatmap import Heatmap, reading_heatmap_file
from ._files import _metadata_json
from .ometiff import OME_TILE_PX, heatmap_levels, ome_placement

METADATA_KEY = "patchheat"  # the group attribute holding Heatmap.metadata()
NGFF_VERSION = "0.5"
NGFF_UNIT = "micrometer"  # the axes' unit where the slide's µm/px is known


def ngff_multiscale(heatmap: Heatmap, levels: int) -> dict[str, Any]:
    """The NGFF multiscale of the heatmap's ``levels`` pyramid levels: level k's cells are
    2**k cells of level 0 wide and centred on their centres (µm, else level-0 pixels)."""
    place = ome_placement(heatmap)
    (sy, sx), (ty, tx) = place["size"], place["position"]
    unit = {"unit": NGFF_UNIT} if place["unit"] == "µm" else {}
    datasets = []
    for k in range(levels):
        f = 2**k
        datasets.append({"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, sy * f, sx * f]},
            {"type": "translation",
             "translation": [0.0, ty + (f - 1) / 2 * sy, tx + (f - 1) / 2 * sx]}]})
    return {
        "name": f"{Path(heatmap.slide_path).name or 'slide'} {heatmap.model_name or 'model'}",
        "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", **unit},
                 {"name": "x", "type": "space", **unit}],
        "datasets": datasets,
    }


def write_ome_zarr(heatmap: Heatmap, path: str | Path) -> Path:
    """Write the heatmap as an OME-Zarr folder (NGFF 0.5, zarr v3, chunks of ``OME_TILE_PX``
    cells a side, one class per chunk), replacing ``path`` whole and atomically."""
    import zarr

    path = Path(path)
    levels = heatmap_levels(heatmap)
    attrs = {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": [ngff_multiscale(heatmap, len(levels))],
            "omero": {"channels": [
                {"label": name, "color": "FFFFFF", "active": True,
                 "window": {"min": 0.0, "max": 1.0, "start": 0.0, "end": 1.0}}
                for name in heatmap.class_names], "rdefs": {"model": "greyscale"}},
        },
        METADATA_KEY: json.loads(_metadata_json(heatmap)),
    }
    with atomic_folder(path) as tmp:
        group = zarr.open_group(zarr.storage.LocalStore(tmp), mode="w", zarr_format=3)
        for k, level in enumerate(levels):
            array = group.create_array(
                str(k), shape=level.shape, dtype=np.float32, fill_value=np.nan,
                chunks=(1, min(OME_TILE_PX, level.shape[1]), min(OME_TILE_PX, level.shape[2])),
                dimension_names=("c", "y", "x"))
            array[...] = level
        group.attrs.update(attrs)
    return path


def read_ome_zarr(path: str | Path) -> Heatmap:
    """Read a heatmap written by :func:`write_ome_zarr`; a damaged or foreign folder is one
    ValueError naming it."""
    import zarr

    path = Path(path)
    with reading_heatmap_file(path):
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path.name} is a file, not an OME-Zarr folder")
        group: Any = zarr.open_group(zarr.storage.LocalStore(path, read_only=True), mode="r")
        attrs: dict[str, Any] = group.attrs.asdict()
        meta = attrs.get(METADATA_KEY)
        if not isinstance(meta, dict):
            raise ValueError(f"its group has no '{METADATA_KEY}' attribute")
        level0 = attrs["ome"]["multiscales"][0]["datasets"][0]["path"]
        if level0 not in group:
            raise ValueError(f"its level-0 array '{level0}' is missing")
        values = np.asarray(group[level0][...], dtype=np.float32)
        return Heatmap.from_metadata(meta, np.moveaxis(values, 0, -1))


def is_heatmap_zarr(path: str | Path) -> bool:
    """True for an OME-Zarr folder written by :func:`write_ome_zarr` (its ``zarr.json`` has
    the ``"patchheat"`` attribute); reads that one small file."""
    meta = Path(path) / "zarr.json"
    try:
        attrs = loads_json(meta.read_text(encoding="utf-8")).get("attributes")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and METADATA_KEY in attrs
