"""Two heatmaps compared: their difference A - B, cell for cell, where they share a grid.

Two heatmaps share a grid when they were computed on the same slide, on the same level, with
the same grid parameters (:meth:`PatchGrid.params`: the level's size, patch size, stride, rate,
padding): then cell (i, j) of each is the same patch. NumPy only; no Qt, no TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..heatmap import Heatmap
from ..slide.location import same_file_key

# PatchGrid.params() fields as a sentence names them
GRID_FIELD_NAMES = {"height": "level height", "width": "level width", "size": "patch size",
                    "stride": "stride", "rate": "rate", "padding": "padding"}


def _shown(value: Any) -> str:
    """A parameter as a sentence shows it: a pair of equal values as one ('224'), else 'y x x'."""
    if isinstance(value, (list, tuple)):
        return str(value[0]) if len(set(value)) == 1 else " x ".join(map(str, value))
    return str(value)


def why_no_difference(a: Heatmap, b: Heatmap) -> str:
    """'' when ``a`` and ``b`` share a grid (same slide, level and grid parameters), else one
    sentence saying the first thing that differs, e.g. "no difference map: A's stride is 224,
    B's is 112"."""
    if a.slide_path and b.slide_path and same_file_key(a.slide_path) != same_file_key(b.slide_path):
        return "no difference map: A and B were computed on different slides"
    if a.slide_shape is not None and b.slide_shape is not None \
            and tuple(a.slide_shape) != tuple(b.slide_shape):
        return (f"no difference map: A's slide is {_shown(a.slide_shape)} px, "
                f"B's is {_shown(b.slide_shape)} px")
    if a.level != b.level:
        return f"no difference map: A's level is {a.level}, B's is {b.level}"
    pa, pb = a.grid.params(), b.grid.params()
    for key, name in GRID_FIELD_NAMES.items():
        if pa[key] != pb[key]:
            return f"no difference map: A's {name} is {_shown(pa[key])}, B's is {_shown(pb[key])}"
    return ""


def difference(a: Heatmap, b: Heatmap, class_a: str | int = 0,
               class_b: str | int = 0) -> np.ndarray:
    """A - B (rows, cols) float32 of class ``class_a`` of ``a`` and ``class_b`` of ``b``, cell
    for cell; NaN where either is NaN. A ValueError (:func:`why_no_difference`) unless they
    share a grid."""
    why = why_no_difference(a, b)
    if why:
        raise ValueError(why)
    return (a.values[..., a.class_index(class_a)]
            - b.values[..., b.class_index(class_b)]).astype(np.float32)


def symmetric_limits(diff: np.ndarray) -> tuple[float, float]:
    """Contrast limits (-m, m) centred on 0, m the largest |value| (NaN left out); (-1, 1)
    when there is none or all are 0."""
    finite = np.abs(diff[np.isfinite(diff)])
    m = float(finite.max()) if finite.size else 0.0
    return (-m, m) if m > 0 else (-1.0, 1.0)
