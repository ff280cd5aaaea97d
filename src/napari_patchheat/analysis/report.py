"""A heatmap's regions and numbers as one report, and its files: the regions as QuPath
annotations (``<stem>.regions.geojson``) and the numbers (``<stem>.regions.csv``).

The one path from a heatmap (in memory or a file written by ``patchheat run``) to its regions,
for the CLI (``patchheat regions``) and the dock. No Qt, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..files import ensure_folder
from ..heatmap import Heatmap
from ..roi import RoiSource
from .regions import HeatRegion, sized_regions, write_regions_geojson
from .stats import (
    RegionStats,
    region_stats,
    roi_stats,
    stats_measurements,
    write_stats_csv,
)


@dataclass(frozen=True)
class RegionReport:
    """The regions of one class of ``heatmap`` at ``threshold`` (after ``smooth`` cells of
    smoothing) of at least ``min_cells`` cells (``left_out`` smaller ones dropped) and the
    numbers: every computed patch, each region of interest, each region."""

    heatmap: Heatmap
    class_index: int
    threshold: float
    smooth: float
    regions: list[HeatRegion]
    rows: list[RegionStats]
    min_cells: int = 1
    left_out: int = 0

    @property
    def class_name(self) -> str:
        return self.heatmap.class_names[self.class_index]

    @property
    def tissue_share(self) -> float:
        """The share of the tissue's cells (the computed patches: a run skips the patches
        below its tissue threshold) whose value of the class is >= the threshold."""
        return self.rows[0].values[self.class_name]["share_above"]

    def summary(self) -> str:
        """'12 regions (57 smaller than 4 cells left out) of dab >= 0.3' and the line
        'x% of tissue at or above t'."""
        dropped = (f" ({self.left_out:,} smaller than {self.min_cells:,} cells left out)"
                   if self.left_out else "")
        n = len(self.regions)
        return (f"{n:,} region{'' if n == 1 else 's'}{dropped} of {self.class_name} >= "
                f"{self.threshold:g}\n{self.tissue_share:.1%} of tissue at or above "
                f"{self.threshold:g}")


def region_report(heatmap: Heatmap, class_name: str | int, threshold: float, *,
                  smooth: float = 0.0, roi: RoiSource | None = None,
                  min_cells: int = 1) -> RegionReport:
    """Regions of at least ``min_cells`` cells and numbers (see :class:`RegionReport`);
    ValueErrors as the parts raise them (no cell above the threshold, a bad region of
    interest, a bad minimum size)."""
    c = heatmap.class_index(class_name)
    found, left_out = sized_regions(heatmap, c, threshold, smooth=smooth, min_cells=min_cells)
    rows = [region_stats(heatmap, "all computed patches", "all", heatmap.computed, threshold)]
    if roi is not None:
        rows += roi_stats(heatmap, roi, threshold)
    rows += [region_stats(heatmap, r.name, "region", r.patches, threshold, r.geometry)
             for r in found]
    return RegionReport(heatmap, c, threshold, smooth, found, rows, min_cells, left_out)


def write_region_report(report: RegionReport, folder: Path, stem: str) -> dict[str, Path]:
    """``<stem>.regions.geojson`` (QuPath annotations with their numbers) and
    ``<stem>.regions.csv`` in ``folder`` (created); returns {"geojson": ..., "csv": ...}."""
    folder = ensure_folder(folder)
    regions = [r for r in report.rows if r.kind == "region"]
    meta = {"class": report.class_name, "threshold": report.threshold,
            "smooth_cells": report.smooth, "min_cells": report.min_cells,
            "left_out": report.left_out, "tissue_share": report.tissue_share,
            "heatmap": report.heatmap.metadata()}
    return {
        "geojson": write_regions_geojson(
            report.regions, folder / f"{stem}.regions.geojson", class_name=report.class_name,
            class_index=report.class_index,
            measurements=[stats_measurements(r) for r in regions], metadata=meta),
        "csv": write_stats_csv(report.rows, report.heatmap.class_names,
                               folder / f"{stem}.regions.csv"),
    }
