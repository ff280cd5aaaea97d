"""How a heatmap layer shows its values: the value range (the layer's contrast limits) and "show at
or above" (a colormap whose colours below the threshold are transparent, so the slide shows
through), kept in the layer's metadata and recorded in exported files (``Heatmap.extra``).

Napari only (no Qt widgets): the reader restores a reopened heatmap's display with it. Changing
either touches the layer's contrast limits and colormap, never its data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.utils.colormaps import AVAILABLE_COLORMAPS, Colormap, ensure_colormap

from ..heatmap import CLASS_META_KEY

DISPLAY_META_KEY = "patchheat_display"  # layer metadata: {"colormap": name, "threshold": t}
DISPLAY_EXTRA_KEY = "display"  # Heatmap.extra key of the display an export records
COLORMAP_BINS = 256  # flat colours of a thresholded colormap
# the threshold's split lies this fraction of the range below it: the GPU looks colours up in
# vispy's 1024-texel table (nearest texel), which may round a cell at the threshold down by up
# to 1/1023 of the range; a cell at the threshold is always shown, one 0.2 % of the range below
# it is hidden
LUT_MARGIN = 1e-3


def threshold_colormap(name: str, limits: tuple[float, float], threshold: float | None,
                       key: str | None = None) -> Colormap:
    """Colormap ``name`` with every colour below ``threshold`` (in ``limits``' units) fully
    transparent; NaN stays transparent. No threshold: the colormap itself. With a ``key`` (a
    layer's: :func:`show_values`), its name is the key's whatever the threshold and limits."""
    base = ensure_colormap(name)
    if threshold is None:
        return base
    lo, hi = limits
    p = (threshold - lo) / (hi - lo) - LUT_MARGIN if hi > lo else float(threshold > lo)
    split = float(np.clip(p, 0.0, 1.0))
    edges = np.unique(np.r_[np.linspace(0.0, 1.0, COLORMAP_BINS + 1), split])
    colors = np.array(base.map((edges[:-1] + edges[1:]) / 2), dtype=np.float32)
    colors[edges[:-1] < split, 3] = 0.0
    if key is None:
        label = cmap_name = f"{name} ≥ {threshold:.6g} in {lo:.6g}–{hi:.6g}"
    else:
        label, cmap_name = f"{name}, shown at or above a threshold", f"{name} ≥ · {key}"
    return Colormap(colors, controls=edges, interpolation="zero", name=cmap_name,
                    display_name=label)


def show_values(layer: Any, colormap: str, limits: tuple[float, float],
                threshold: float | None) -> None:
    """Show ``layer``'s values in ``limits`` with ``colormap``, transparent below ``threshold``
    (None: every computed cell); remembered in its metadata. A thresholded colormap keeps its
    name (the layer's) through every change: napari's layer controls neither list one more
    colormap each time nor set the layer's colormap a second time, from their list."""
    lo, hi = float(limits[0]), float(limits[1])
    if hi <= lo:  # napari needs a range: widen a single value a little
        lo, hi = lo - max(abs(lo) * 1e-6, 1e-9), hi + max(abs(hi) * 1e-6, 1e-9)
    layer.contrast_limits = (lo, hi)
    cmap = threshold_colormap(colormap, (lo, hi), threshold, str(layer.unique_id)[:8])
    if not same_colormap(layer.colormap, cmap):  # a new colormap rebuilds the GPU's shaders
        if threshold is not None:  # napari's list of colormaps: one entry a layer, replaced
            AVAILABLE_COLORMAPS.pop(cmap.name, None)  # (napari refuses to overwrite a name)
            AVAILABLE_COLORMAPS[cmap.name] = cmap
        layer.colormap = cmap
    layer.metadata = {**layer.metadata,
                      DISPLAY_META_KEY: {"colormap": colormap, "threshold": threshold}}


def same_colormap(a: Colormap, b: Colormap) -> bool:
    """Whether colormaps ``a`` and ``b`` map every value to the same colour."""
    return (a.interpolation == b.interpolation and a.colors.shape == b.colors.shape
            and a.controls.shape == b.controls.shape and np.array_equal(a.colors, b.colors)
            and np.array_equal(a.controls, b.controls))


def colormap_name(layer: Any) -> str:
    """The name of the colormap ``layer`` shows (without its threshold)."""
    return str(layer.metadata.get(DISPLAY_META_KEY, {}).get("colormap", layer.colormap.name))


def threshold_of(layer: Any) -> float | None:
    """The "show at or above" value of ``layer``; None when every computed cell is shown."""
    t = layer.metadata.get(DISPLAY_META_KEY, {}).get("threshold")
    return None if t is None else float(t)


def display_record(layer: Any) -> dict[str, Any]:
    """What an export records of ``layer``'s display (JSON types)."""
    return {"class": int(layer.metadata.get(CLASS_META_KEY, 0)),
            "colormap": colormap_name(layer), "opacity": float(layer.opacity),
            "contrast_limits": [float(v) for v in layer.contrast_limits],
            "threshold": threshold_of(layer)}


def restored_display(record: dict[str, Any], c: int) -> dict[str, Any]:
    """Layer keyword arguments of class ``c`` from an exported :func:`display_record`: its
    colormap and opacity for every class, its range and threshold for the class it showed."""
    name = str(record.get("colormap", "inferno"))
    kwargs: dict[str, Any] = {}
    limits, threshold = (0.0, 1.0), None
    if int(record.get("class", 0)) == c and record.get("contrast_limits") is not None:
        limits = (float(record["contrast_limits"][0]), float(record["contrast_limits"][1]))
        threshold = None if record.get("threshold") is None else float(record["threshold"])
        kwargs["contrast_limits"] = limits
    kwargs["colormap"] = threshold_colormap(name, limits, threshold)
    if record.get("opacity") is not None:
        kwargs["opacity"] = float(record["opacity"])
    kwargs["metadata"] = {DISPLAY_META_KEY: {"colormap": name, "threshold": threshold}}
    return kwargs


def stack_vertically(viewer: Any, position: Any) -> None:
    """Overlays in the canvas corner ``position`` go one under the other: napari puts them side
    by side from an estimate of a text's width that can fall short of the drawn text, so the
    legend overlapped the colour bar; their heights are estimated well."""
    tiling = getattr(viewer.canvas, "overlay_tiling", None)  # napari >= 0.7
    if tiling is not None:
        setattr(tiling, str(position), "vertical")
