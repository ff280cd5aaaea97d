"""Pyramidal OME-TIFF of a heatmap (+ JSON sidecar), read back, and recognised by the reader.

Placement in level-0 pixels (or µm), as docs/export.md states it.
"""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write, loads_json
from ..heatmap import Heatmap, reading_heatmap_file
from ._files import BIGTIFF_FROM_BYTES, _metadata_json, _write_text

OME_TILE_PX = 256  # OME-TIFF tile side; pyramid levels halve until one tile holds a level
METADATA_NAMESPACE = "napari-patchheat/heatmap-metadata"
PLACEMENT_NAMESPACE = "napari-patchheat/placement"


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


def heatmap_levels(heatmap: Heatmap) -> list[np.ndarray]:
    """The pyramid of the heatmap's values, (C, Y, X) float32 per level, largest first: each
    level the NaN-ignoring mean of 2 x 2 cells of the one above, until one tile
    (``OME_TILE_PX``) holds a level."""
    levels = [np.ascontiguousarray(np.moveaxis(heatmap.values, -1, 0), dtype=np.float32)]
    while max(levels[-1].shape[1:]) > OME_TILE_PX:
        levels.append(_half(levels[-1]))
    return levels


def write_ome_tiff(heatmap: Heatmap, path: str | Path, *, sidecar: bool = True) -> Path:
    """Write the heatmap as a tiled, zlib-compressed, pyramidal (SubIFDs) OME-TIFF.

    Channels are the classes, float32, NaN where not computed. PhysicalSizeY/X = stride x
    downsample x mpp; Plane PositionY/X = centre of cell (0, 0) (see :func:`ome_placement`).
    The full :meth:`Heatmap.metadata` goes into the OME-XML and the ``<stem>.json`` sidecar.
    """
    import tifffile

    path = Path(path)
    levels = heatmap_levels(heatmap)
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
    with atomic_write(path) as tmp:
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
    """Read a heatmap written by :func:`write_ome_tiff` (metadata from the file, else sidecar);
    a damaged file is one ValueError naming it."""
    import tifffile

    path = Path(path)
    with reading_heatmap_file(path):
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            values = series.asarray()
            if "C" not in series.axes:
                values = values[np.newaxis]
            meta = _ome_comment(tif.ome_metadata or "")
        if meta is None and sidecar_path(path).is_file():
            meta = loads_json(sidecar_path(path).read_text(encoding="utf-8"))
    if meta is None:
        raise ValueError(
            f"{path} holds no PatchHeat heatmap metadata and has no sidecar "
            f"{sidecar_path(path).name}: it was not written by napari-patchheat."
        )
    with reading_heatmap_file(path):
        heatmap = Heatmap.from_metadata(meta, np.moveaxis(values, 0, -1))
    return heatmap


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

