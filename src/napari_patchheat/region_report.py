"""A heatmap's regions and numbers as one report, and its files: the regions as QuPath
annotations (``<stem>.regions.geojson``) and the numbers (``<stem>.regions.csv``).

The one path from a heatmap (in memory or a file written by ``patchheat run``) to its regions,
for the CLI (``patchheat regions``) and the dock. No Qt, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .heatmap import Heatmap
from .region_stats import RegionStats, region_stats, roi_stats, stats_measurements, write_stats_csv
from .regions import HeatRegion, heatmap_regions, write_regions_geojson
from .roi import RoiSource

HEATMAP_SUFFIXES = (".npz", ".ome.tif")  # the heatmap files ``run`` writes that read back


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
    folder.mkdir(parents=True, exist_ok=True)
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


def read_heatmap_file(path: Path) -> Heatmap:
    """A heatmap file written by ``patchheat run``: ``.npz``, or the OME-TIFF export."""
    from .export import read_ome_tiff

    if not path.is_file():
        raise ValueError(f"{path} does not exist: give a heatmap .npz or .ome.tif written by "
                         "run.")
    return Heatmap.load_npz(path) if path.suffix == ".npz" else read_ome_tiff(path)


def heatmap_file_stem(path: Path) -> str:
    """The name of a heatmap file without its suffix ('s.dab.npz' -> 's.dab')."""
    name = path.name
    for suffix in HEATMAP_SUFFIXES:
        name = name.removesuffix(suffix)
    return name
