"""The dock's regions: the region of interest a run uses (a Shapes or Labels layer), and the
regions and numbers of a heatmap (a Shapes layer and a table).

Shapes (polygons, rectangles, ellipses) are read in world coordinates and turned into level-0
px as QuPath counts them (napari's pixel p is centred on p: +0.5), clipped to the slide. A
Labels layer is a mask scaled over the slide (non-zero inside), so it must cover the slide.
The patches inside come from :mod:`napari_patchheat.roi`, the same code the run uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, PushButton, SpinBox, Table

from ..analysis import RegionReport, RegionStats, region_report, write_region_report
from ..grid import FloatPair, PatchGrid
from ..heatmap import CLASS_META_KEY, HEATMAP_META_KEY, Heatmap
from ..roi import (
    DEFAULT_MIN_FRACTION,
    MaskRoi,
    Region,
    polygonal,
    roi_patch_mask,
)
from .canvas import is_outline_layer
from .regions_table import region_table, show_report
from .slide_layer import SlideLayer
from .widgets import TextLabel

WHOLE_SLIDE = "whole slide"
ELLIPSE_VERTICES = 64
REGIONS_META_KEY = "patchheat_regions"  # a regions layer's metadata: its RegionReport
REGION_EDGE_COLOR, HOLE_EDGE_COLOR = "#ff00ff", "yellow"  # magenta: the grid is cyan
REGION_EDGE_SCREEN_WIDTH = 2.0
RegionSource = list[Region] | MaskRoi


def is_region_layer(layer: Any) -> bool:
    """A layer that can be a region of interest: Shapes (not the dock's outlines) or Labels."""
    kind = type(layer).__name__
    return (kind == "Shapes" and not is_outline_layer(layer)) or kind == "Labels"


def _world_to_level0_edges(layer: Any, data: np.ndarray, slide: SlideLayer) -> np.ndarray:
    """(n, 2) data coordinates of ``layer`` -> level-0 px (y, x), QuPath's (edges at integers)."""
    world = np.asarray(data, float)[:, -2:] * np.asarray(layer.scale)[-2:] \
        + np.asarray(layer.translate)[-2:]
    return slide.to_level0(world) + 0.5


def _ellipse(corners: np.ndarray) -> np.ndarray:
    """The outline of napari's ellipse given by the 4 corners of its (rotated) bounding box."""
    centre = corners.mean(axis=0)
    u, v = (corners[1] - corners[0]) / 2, (corners[3] - corners[0]) / 2
    t = np.linspace(0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)[:, None]
    return centre + np.cos(t) * u + np.sin(t) * v


def shapes_regions(layer: Any, slide: SlideLayer) -> list[Region]:
    """The polygons, rectangles and ellipses of a Shapes layer as regions in level-0 px,
    clipped to the slide; a ValueError when none covers part of it."""
    h0, w0 = slide.level_shape(0)
    regions = []
    for n, (data, kind) in enumerate(zip(layer.data, layer.shape_type), 1):
        if kind not in ("polygon", "rectangle", "ellipse"):
            continue
        yx = _world_to_level0_edges(layer, data, slide)
        if kind == "ellipse":
            yx = _ellipse(yx)
        if len(yx) < 3:
            continue
        shape = polygonal(shapely.Polygon(yx[:, ::-1]))
        shape = polygonal(shapely.clip_by_rect(shape, 0, 0, w0, h0)) if shape is not None \
            else None
        if shape is not None:
            regions.append(Region(f"{layer.name} #{n}", shape))
    if not regions:
        raise ValueError(f"the Shapes layer {layer.name!r} has no polygon, rectangle or ellipse "
                         "over the slide: draw one, or choose the whole slide.")
    return regions


def labels_mask(layer: Any, slide: SlideLayer) -> MaskRoi:
    """A Labels layer as a mask over the slide (non-zero inside); a ValueError when it is not
    2-D or does not cover the slide (to within one of its pixels)."""
    from ..roi import as_mask_roi

    data = np.asarray(layer.data)
    roi = as_mask_roi(data, f"the Labels layer {layer.name!r}")
    scale = np.asarray(layer.scale, float)[-2:]
    corner0 = slide.to_level0(np.asarray(layer.translate, float)[-2:] - scale / 2)
    corner1 = slide.to_level0(np.asarray(layer.translate, float)[-2:]
                              + scale * (np.asarray(data.shape) - 0.5))
    px = np.abs(slide.to_level0(scale) - slide.to_level0(np.zeros(2)))
    if np.any(np.abs(corner0 + 0.5) > px) or \
            np.any(np.abs(corner1 + 0.5 - slide.level_shape(0)) > px):
        raise ValueError(f"the Labels layer {layer.name!r} does not cover the slide: make it "
                         "over the slide layer (its shape, or a level's shape and scale).")
    return roi


class RegionChoice(Container):
    """The region of interest of a run: the whole slide, a Shapes layer or a Labels layer, and
    when a patch is inside (a fraction of its area, or its centre). ``on_change()`` runs when
    the choice, the rule or the chosen layer's shapes or labels change."""

    def __init__(self, viewer: Any, on_change: Callable[[], None]):
        self.viewer, self.on_change = viewer, on_change
        self.layer = ComboBox(label="region", choices=self._choices)
        self.min_fraction = FloatSpinBox(label="inside from", min=0.01, max=1.0, step=0.05,
                                         value=DEFAULT_MIN_FRACTION,
                                         tooltip="the share of a patch's area that must lie "
                                                 "inside the region")
        self.centre = CheckBox(text="inside when the patch's centre is", value=False)
        super().__init__(widgets=[self.layer, self.min_fraction, self.centre])
        self._watched: Any = None
        self._last: tuple[Any, np.ndarray | None] | None = None  # (key, patch_mask's answer)
        for w in (self.layer, self.min_fraction, self.centre):
            w.changed.connect(self._changed)

    def _choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(WHOLE_SLIDE, WHOLE_SLIDE)] + [(layer.name, layer) for layer in self.viewer.layers
                                        if is_region_layer(layer)]

    @property
    def region_name(self) -> str:
        """The chosen region layer's name ("" for the whole slide)."""
        layer = self.layer.value
        return "" if layer is None or layer == WHOLE_SLIDE else str(layer.name)

    def _changed(self, *_: Any) -> None:
        self._last = None
        self.min_fraction.enabled = not self.centre.value
        self._watch(self.layer.value)
        self.on_change()

    def _watch(self, layer: Any) -> None:
        """Follow edits of the chosen layer (shapes drawn or moved, labels painted)."""
        if layer is self._watched:
            return
        for name in ("data", "paint", "set_data"):
            for old_new, callback in ((self._watched, "disconnect"), (layer, "connect")):
                emitter = getattr(getattr(old_new, "events", None), name, None)
                if emitter is not None:
                    getattr(emitter, callback)(self._edited)
        self._watched = layer

    def _edited(self, *_: Any) -> None:
        self._last = None
        self.on_change()

    def roi(self, slide: SlideLayer) -> RegionSource | None:
        """The chosen region in level-0 px (None: the whole slide); ValueError when unusable."""
        layer = self.layer.value
        if isinstance(layer, str) or layer not in self.viewer.layers:  # the whole slide
            return None
        if type(layer).__name__ == "Labels":
            return labels_mask(layer, slide)
        return shapes_regions(layer, slide)

    def patch_mask(self, grid: PatchGrid, downsample: FloatPair,
                   slide: SlideLayer) -> np.ndarray | None:
        """bool (rows, cols): the grid's patches inside the region (None: the whole slide).
        Kept until the grid, the slide, the choice or the region's layer changes: the dock asks
        on every parameter change."""
        layer = self.layer.value
        placed = None if isinstance(layer, str) else (tuple(layer.scale), tuple(layer.translate))
        key = (grid, downsample, slide.layer, slide.world_per_px, slide.world_offset, placed)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        roi = self.roi(slide)
        inside = None if roi is None else roi_patch_mask(
            roi, grid, downsample, slide.level_shape(0),
            min_fraction=float(self.min_fraction.value), centre=bool(self.centre.value))
        self._last = (key, inside)
        return inside


class RegionsPanel(Container):
    """A heatmap's regions above a threshold of its class (a Shapes layer over the slide) and
    the numbers of every computed patch, each region of interest and each region (a table).

    ``source()`` gives the heatmap layer in use and its slide layer, or None; ``roi()`` the
    dock's region of interest (list of Regions, a mask or None).
    """

    def __init__(self, viewer: Any, source: Callable[[], Any],
                 roi: Callable[[SlideLayer], RegionSource | None],
                 on_error: Callable[[str], None], destination: Callable[[], tuple[Path, str]]):
        self.viewer, self.source, self.roi, self.on_error = viewer, source, roi, on_error
        self.destination = destination
        self.threshold = FloatSpinBox(label="threshold", min=0.0, max=1.0, step=0.05, value=0.5)
        self.smooth = FloatSpinBox(label="smooth (cells)", min=0.0, max=50.0, step=0.5,
                                   value=0.0)
        self.min_cells = SpinBox(label="min size (cells)", min=1, max=10**6, value=1,
                                 tooltip="regions of fewer heatmap cells are left out (and "
                                         "counted)")
        self.compute_button = PushButton(text="Regions and numbers")
        self.export_button = PushButton(text="Export regions (GeoJSON, CSV)", enabled=False)
        self.table = region_table(Table())
        self.info = TextLabel()
        self.layer: Any = None
        self.rows: list[RegionStats] = []
        self.report: RegionReport | None = None
        super().__init__(labels=False, widgets=[
            Container(widgets=[self.threshold, self.smooth, self.min_cells]),
            self.compute_button, self.info, self.table, self.export_button])
        self.compute_button.changed.connect(self.compute)
        self.export_button.changed.connect(self.export)

    def compute(self, *_: Any) -> bool:
        """Find the regions of the heatmap in use, show them and their numbers; False (and a
        sentence) when there is no heatmap or no region."""
        state = self.source()
        if state is None:
            self.on_error("Run or open a heatmap first: there are no regions to find.")
            return False
        layer, slide_layer = state
        heatmap: Heatmap = layer.metadata[HEATMAP_META_KEY]
        c = int(layer.metadata.get(CLASS_META_KEY, 0))
        slide = SlideLayer.from_layer(slide_layer)
        t = float(self.threshold.value)
        try:
            report = region_report(heatmap, c, t, smooth=float(self.smooth.value),
                                   roi=self.roi(slide), min_cells=int(self.min_cells.value))
        except ValueError as exc:
            self.on_error(str(exc))
            return False
        self.adopt(self._show_layer(report, slide, f"{layer.name} regions >= {t:g}"))
        return True

    def adopt(self, layer: Any) -> None:
        """Show the regions layer ``layer`` (made here, or opened from a session) with its
        numbers (its metadata's report): the table, the summary line, its settings, Export."""
        report: RegionReport = layer.metadata[REGIONS_META_KEY]
        self.layer, self.report, self.rows = layer, report, report.rows
        self.threshold.value, self.smooth.value = report.threshold, report.smooth
        self.min_cells.value = report.min_cells
        self.export_button.enabled = True
        show_report(self.table, report)
        self.info.value = report.summary()

    def export(self, *_: Any) -> dict[str, Path]:
        """Write the regions and the table (analysis/report.py) to the Export folder and stem."""
        if self.report is None:
            return {}
        folder, stem = self.destination()
        try:
            files = write_region_report(self.report, folder, stem)
        except OSError as exc:
            self.on_error(f"cannot write the regions to {folder}: {exc.strerror or exc}.")
            return {}
        self.info.value = f"wrote {files['geojson'].name} and {files['csv'].name} in {folder}"
        return files

    def _show_layer(self, report: RegionReport, slide: SlideLayer, name: str) -> Any:
        """The regions' outlines (holes in HOLE_EDGE_COLOR) as one Shapes layer, replaced on
        each computation, with ``report`` in its metadata; the layer."""
        polygons, colours = [], []
        for region in report.regions:
            for part in shapely.get_parts(region.geometry):
                rings = [part.exterior, *part.interiors]
                for k, ring in enumerate(rings):
                    xy = np.asarray(ring.coords)[:-1]
                    polygons.append(slide.to_world(xy[:, ::-1] - 0.5))
                    colours.append(REGION_EDGE_COLOR if k == 0 else HOLE_EDGE_COLOR)
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        return self.viewer.add_shapes(
            polygons, shape_type="polygon", name=name, edge_color=colours,
            face_color="transparent", edge_width=REGION_EDGE_SCREEN_WIDTH,
            metadata={REGIONS_META_KEY: report}, **slide.unit_kwargs())
