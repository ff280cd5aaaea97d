"""After a run: a heatmap's regions, their numbers, the overlap map, heatmap files read back.

Glossary (one word per concept, in the code, the CLI and the docs):

- **region of interest** (ROI): an area the *user* gives (GeoJSON polygons, a mask image, a
  Shapes or Labels layer) to say where to run or what to measure; ``roi.py`` turns it into
  the patches inside.
- **heatmap region** (here just *region*): a connected area the *heatmap* gives, where one
  class is at or above a threshold (:func:`heatmap_regions`); written as QuPath annotations.
- **numbers** (*stats*): per region of interest or heatmap region, its patches, its areas and
  per class the mean, median, 90th percentile and the share at or above the threshold
  (:func:`region_stats`). *Region area* is the polygon's; *patch area* the union of its
  patches' boxes.
- **report**: the regions and their numbers together, and their two files
  (:func:`region_report`, :func:`write_region_report`).
- **overlap map**: where patches overlap, each cell the mean of the patches over it
  (:func:`overlap_map`); the heatmap's values never change.

Modules: ``regions``, ``stats``, ``report``, ``overlap``, ``heatmap_files``. NumPy, SciPy,
shapely; no Qt, no TensorFlow.
"""

from __future__ import annotations

from .heatmap_files import HEATMAP_SUFFIXES, heatmap_file_stem, read_heatmap_file
from .overlap import OverlapMap, overlap_map, write_overlap_tiff
from .regions import (
    HeatRegion,
    above_threshold,
    heatmap_regions,
    sized_regions,
    write_regions_geojson,
)
from .report import RegionReport, region_report, write_region_report
from .stats import (
    PERCENTILE,
    RegionStats,
    format_area,
    format_stats,
    region_stats,
    roi_stats,
    union_area,
    write_stats_csv,
)

__all__ = [
    "HEATMAP_SUFFIXES", "PERCENTILE", "HeatRegion", "OverlapMap", "RegionReport", "RegionStats",
    "above_threshold", "format_area", "format_stats", "heatmap_file_stem", "heatmap_regions",
    "overlap_map", "read_heatmap_file", "region_report", "region_stats", "roi_stats",
    "sized_regions", "union_area", "write_overlap_tiff", "write_region_report",
    "write_regions_geojson", "write_stats_csv",
]
