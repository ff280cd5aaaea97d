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
from .regions import HeatRegion, heatmap_regions, write_regions_geojson
from .stats import RegionStats, region_stats, roi_stats, stats_measurements, write_stats_csv


@dataclass(frozen=True)
class RegionReport:
    """The regions of one class of ``heatmap`` at ``threshold`` (after ``smooth`` cells of
    smoothing) and the numbers: every computed patch, each region of interest, each region."""

    heatmap: Heatmap
    class_index: int
    threshold: float
    smooth: float
    regions: list[HeatRegion]
    rows: list[RegionStats]

    @property
    def class_name(self) -> str:
        return self.heatmap.class_names[self.class_index]


def region_report(heatmap: Heatmap, class_name: str | int, threshold: float, *,
                  smooth: float = 0.0, roi: RoiSource | None = None) -> RegionReport:
    """Regions and numbers (see :class:`RegionReport`); ValueErrors as the parts raise them
    (no region above the threshold, a bad region of interest)."""
    c = heatmap.class_index(class_name)
    found = heatmap_regions(heatmap, c, threshold, smooth=smooth)
    rows = [region_stats(heatmap, "all computed patches", "all", heatmap.computed, threshold)]
    if roi is not None:
        rows += roi_stats(heatmap, roi, threshold)
    rows += [region_stats(heatmap, r.name, "region", r.patches, threshold, r.geometry)
             for r in found]
    return RegionReport(heatmap, c, threshold, smooth, found, rows)


def write_region_report(report: RegionReport, folder: Path, stem: str) -> dict[str, Path]:
    """``<stem>.regions.geojson`` (QuPath annotations with their numbers) and
    ``<stem>.regions.csv`` in ``folder`` (created); returns {"geojson": ..., "csv": ...}."""
    folder = ensure_folder(folder)
    regions = [r for r in report.rows if r.kind == "region"]
    meta = {"class": report.class_name, "threshold": report.threshold,
            "smooth_cells": report.smooth, "heatmap": report.heatmap.metadata()}
    return {
        "geojson": write_regions_geojson(
            report.regions, folder / f"{stem}.regions.geojson", class_name=report.class_name,
            class_index=report.class_index,
            measurements=[stats_measurements(r) for r in regions], metadata=meta),
        "csv": write_stats_csv(report.rows, report.heatmap.class_names,
                               folder / f"{stem}.regions.csv"),
    }
