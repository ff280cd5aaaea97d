"""npe2 writer: save a PatchHeat heatmap layer as a pyramidal OME-TIFF (+ JSON sidecar).

Thin: the work is :func:`napari_patchheat.export.write_ome_tiff`. The heatmap layer carries its
:class:`~napari_patchheat.heatmap.Heatmap` in ``metadata[HEATMAP_META_KEY]`` (see
``Heatmap.layer_kwargs``), so all classes, the grid and the placement are written, whatever
class the layer shows. Other image layers are written as a plain OME-TIFF of their data, so
claiming ``.ome.tif`` does not take that extension away from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .export import atomic_write, sidecar_path, write_ome_tiff
from .heatmap import HEATMAP_META_KEY, Heatmap


def write_heatmap(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one image layer to ``path`` (.ome.tif); return the files written.

    A heatmap layer gives the OME-TIFF and its ``<stem>.json`` sidecar; any other image layer
    gives an OME-TIFF of its (full-resolution) data.
    """
    heatmap = (meta.get("metadata") or {}).get(HEATMAP_META_KEY)
    if isinstance(heatmap, Heatmap):
        tif = write_ome_tiff(heatmap, path)
        return [str(tif), str(sidecar_path(tif))]
    return [str(_write_plain(Path(path), data, meta))]


def _write_plain(path: Path, data: Any, meta: dict[str, Any]) -> Path:
    import tifffile

    array = np.asarray(data[0] if meta.get("multiscale") else data)
    rgb = bool(meta.get("rgb")) and array.shape[-1] in (3, 4)
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, array, ome=True, photometric="rgb" if rgb else "minisblack",
                         compression="zlib")
    return path
