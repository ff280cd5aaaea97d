"""Which layer a run's heatmap goes to: results of a region of interest are kept apart.

A run inside a region records the region layer's name in its heatmap (``extra["roi"]["name"]``)
and lands in its own layer, named ``model · slide · region``; a heatmap only ever goes into a
layer of the same slide, grid, level, model and region (the whole slide being a region of its
own), so a region's run never writes into the whole slide's layer, nor the other way round.
"""

from __future__ import annotations

from ..heatmap import NAME_SEPARATOR, Heatmap

UNNAMED_REGION = "region"  # a heatmap of a region whose layer name was not recorded


def name_region(heatmap: Heatmap, region: str) -> None:
    """Record the region layer's name ``region`` in a region run's heatmap ("": none)."""
    roi = heatmap.extra.get("roi")
    if region and isinstance(roi, dict):
        heatmap.extra["roi"] = {**roi, "name": region}


def region_of(heatmap: Heatmap) -> str:
    """The region ``heatmap`` was computed in: its layer's name ("" for the whole slide)."""
    roi = heatmap.extra.get("roi")
    if not isinstance(roi, dict):
        return ""
    return str(roi.get("name") or UNNAMED_REGION)


def run_title(heatmap: Heatmap, slide_name: str) -> str:
    """'dab · CMU-1' for the whole slide, 'dab · CMU-1 · ROI 1' inside the region 'ROI 1'."""
    region = region_of(heatmap)
    base = heatmap.title(slide_name)
    return f"{base}{NAME_SEPARATOR}{region}" if region else base


def same_run(a: Heatmap, b: Heatmap) -> bool:
    """True when ``a`` and ``b`` are results of one run: grid, level, model and region."""
    return (a.grid == b.grid and a.level == b.level
            and a.model_fingerprint == b.model_fingerprint and region_of(a) == region_of(b))
