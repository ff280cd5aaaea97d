"""Save a viewer as a session and open it again (see ``session.py`` for the files).

Slides (our reader's layers), heatmap layers, Shapes layers (regions of interest, and region
results with their numbers), Labels (single-scale) and Points layers are saved in their order
with their display and place, and the camera; the dock's parameters when the dock is given.
Other layers are left out. Opened without a dock, the session's dock parameters and region
numbers go to the viewer's dock when it opens (``patchheat open`` adds the dock after the
layers) or at once to the one already open.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._reader import heatmap_layer_data, read_slides
from ..analysis import RegionReport
from ..heatmap import CLASS_META_KEY, HEATMAP_META_KEY, Heatmap
from ..session import (
    SESSION_SUFFIX,
    SessionError,
    SessionFiles,
    free_stem,
    geojson_points,
    geojson_shapes,
    heatmap_stem,
    points_geojson,
    read_session,
    report_record,
    resolve_slide,
    shapes_geojson,
    slide_reference,
    write_session,
)
from ..slide.location import is_url
from .canvas import camera, is_outline_layer
from .display_settings import DISPLAY_META_KEY
from .roi_panel import REGIONS_META_KEY

# the dock's parameters a session keeps (magicgui widgets of PatchHeatWidget, by attribute path)
DOCK_PARAMETERS = ("level", "size", "stride", "rate", "padding", "model", "model_file", "resize",
                   "mixed_precision", "batch_auto", "batch_size", "tissue_threshold", "show_grid",
                   "region.min_fraction", "region.centre")
UNSET_FILE = ("", ".")  # a FileEdit's value with no file chosen (magicgui gives ".")
POINTS_STYLE = ("size", "face_color", "border_color", "border_width", "symbol")  # per point
_docks: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()  # viewer -> its dock
_waiting: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _display(layer: Any) -> dict[str, Any]:
    shown = {"name": layer.name, "visible": bool(layer.visible),
             "opacity": float(layer.opacity), "blending": str(layer.blending),
             "scale": [float(s) for s in layer.scale], "translate": [float(t) for t in
                                                                     layer.translate]}
    if hasattr(layer, "units"):  # napari >= 0.5.5
        shown["units"] = [str(u) for u in layer.units]
    if hasattr(layer, "contrast_limits") and not getattr(layer, "rgb", False):
        cmap = layer.colormap
        shown.update(contrast_limits=[float(c) for c in layer.contrast_limits],
                     gamma=float(layer.gamma), colormap=cmap.name,
                     colormap_colors=np.asarray(cmap.colors).tolist(),
                     colormap_controls=np.asarray(cmap.controls).tolist(),
                     colormap_interpolation=str(cmap.interpolation))
    if DISPLAY_META_KEY in layer.metadata:  # its colormap's name and "show at or above"
        shown["display_record"] = dict(layer.metadata[DISPLAY_META_KEY])
    return shown


def _stem_of(heatmap: Heatmap, heatmaps: dict[str, Heatmap]) -> str:
    """``heatmap``'s file stem in ``heatmaps``, added under a new stem the first time."""
    stem = next((s for s, h in heatmaps.items() if h is heatmap), None)
    if stem is None:
        stem = heatmap_stem(heatmap, list(heatmaps))
        heatmaps[stem] = heatmap
    return stem


def _layer_entry(layer: Any, path: Path, heatmaps: dict[str, Heatmap],
                 labels: dict[str, np.ndarray]) -> dict[str, Any] | None:
    kind = type(layer).__name__
    if kind == "Image" and HEATMAP_META_KEY in layer.metadata:
        return {"heatmap": _stem_of(layer.metadata[HEATMAP_META_KEY], heatmaps),
                "class": int(layer.metadata.get(CLASS_META_KEY, 0))}
    if kind == "Image" and layer.metadata.get("path"):
        return {"slide": slide_reference(layer.metadata["path"], path)}
    if kind == "Shapes" and not is_outline_layer(layer):
        entry = {"shapes": shapes_geojson(layer.data, layer.shape_type),
                 "edge_width": [float(w) for w in layer.edge_width],
                 "edge_color": np.asarray(layer.edge_color).tolist(),
                 "face_color": np.asarray(layer.face_color).tolist()}
        report = layer.metadata.get(REGIONS_META_KEY)
        if isinstance(report, RegionReport):  # a regions layer: the table's numbers with it
            entry["regions"] = report_record(report, _stem_of(report.heatmap, heatmaps))
        return entry
    if kind == "Labels" and layer.ndim == 2 and not layer.multiscale:
        stem = free_stem(layer.name, list(labels))
        labels[stem] = np.asarray(layer.data)
        return {"labels": stem}
    if kind == "Points" and layer.ndim == 2:
        return {"points": points_geojson(layer.data), **{  # symbols by their names
            name: [getattr(v, "value", v) for v in np.asarray(getattr(layer, name)).tolist()]
            for name in POINTS_STYLE}}
    return None


def open_in_viewer(viewer: Any, path: str | os.PathLike[str]) -> list[Any]:
    """Open ``path`` in ``viewer`` with this plugin (``patchheat open``): a session
    (``.patchheat.json``) with everything it holds, else a slide or heatmap; the new layers."""
    if os.fspath(path).lower().endswith(SESSION_SUFFIX):
        return open_session(path, viewer)
    return list(viewer.open(os.fspath(path), plugin="napari-patchheat"))


def save_session(viewer: Any, path: str | os.PathLike[str], dock: Any = None) -> Path:
    """Write ``viewer``'s slides, heatmaps, Shapes, Labels and Points layers, their display,
    the camera and the parameters of ``dock`` (the PatchHeat widget; by default the viewer's
    open dock, if any) as a session at ``path``."""
    path = Path(path)
    heatmaps: dict[str, Heatmap] = {}
    labels: dict[str, np.ndarray] = {}
    layers = []
    for layer in viewer.layers:
        entry = _layer_entry(layer, path, heatmaps, labels)
        if entry is not None:
            layers.append({**entry, "display": _display(layer)})
    cam = camera(viewer)
    dock = _docks.get(viewer) if dock is None else dock
    doc = {"layers": layers,
           "camera": {"center": [float(c) for c in cam.center], "zoom": float(cam.zoom),
                      "angles": [float(a) for a in cam.angles]},
           "dock": None if dock is None else dock_parameters(dock)}
    return write_session(path, doc, heatmaps, labels)


def _widget(dock: Any, name: str) -> Any:
    """The dock's widget at attribute path ``name`` ("stride", "region.centre")."""
    for part in name.split("."):
        dock = getattr(dock, part)
    return dock


def dock_parameters(dock: Any) -> dict[str, Any]:
    """The dock's parameters as JSON values (the slide and the region by their layers' names)."""
    params: dict[str, Any] = {name: _widget(dock, name).value for name in DOCK_PARAMETERS}
    params["model_file"] = os.fspath(params["model_file"])
    if params["model_file"] in UNSET_FILE:  # none chosen
        params["model_file"] = ""
    image = dock.image_layer.value
    params["image_layer"] = None if image is None else image.name
    params["region"] = dock.region.region_name or None
    return params


def set_dock_parameters(dock: Any, params: Mapping[str, Any], viewer: Any) -> None:
    """Set the dock's parameters from :func:`dock_parameters` (the slide first; keys a session
    lacks stay as they are, except that a batch size saved before "auto" existed is kept)."""
    dock.reset_choices()  # the session's layers among the choices
    if params.get("image_layer") in viewer.layers:
        dock.image_layer.value = viewer.layers[params["image_layer"]]
    if params.get("region") in viewer.layers:
        dock.region.layer.value = viewer.layers[params["region"]]
    if "batch_size" in params and "batch_auto" not in params:  # sessions before "auto"
        params = {**params, "batch_auto": False}
    for name in DOCK_PARAMETERS:
        if name in params and not (name == "model_file" and params[name] in UNSET_FILE):
            _widget(dock, name).value = params[name]


def attach_dock(viewer: Any, dock: Any) -> None:
    """``dock`` is ``viewer``'s PatchHeat dock from now on: a session opened without one
    gives it its parameters and region numbers (call once the dock is built)."""
    _docks[viewer] = dock
    _fill_dock(dock, _waiting.pop(viewer, None), viewer)


def detach_dock(viewer: Any, dock: Any) -> None:
    """``dock`` closed: sessions opened later keep their parameters for the next dock."""
    if _docks.get(viewer) is dock:
        del _docks[viewer]


def _fill_dock(dock: Any, params: Mapping[str, Any] | None, viewer: Any) -> None:
    """The session's dock parameters (if any) and the table of the top regions layer."""
    if params:
        set_dock_parameters(dock, params, viewer)
    regions = [layer for layer in viewer.layers
               if isinstance(layer.metadata.get(REGIONS_META_KEY), RegionReport)]
    if regions:
        dock.regions.adopt(regions[-1])


def missing_slides(path: str | os.PathLike[str],
                   slide_paths: Mapping[str, str] | None = None) -> list[str]:
    """The session's slides (as recorded) that are neither found nor in ``slide_paths``."""
    doc = read_session(path)[0]
    return [ref for ref in (layer["slide"] for layer in doc["layers"] if "slide" in layer)
            if _slide_file(ref, path, slide_paths or {}) is None]


def _slide_file(ref: str, session: str | os.PathLike[str],
                slide_paths: Mapping[str, str]) -> str | None:
    where = resolve_slide(ref, session)
    for key in (ref, where):
        if key in slide_paths:
            return os.fspath(slide_paths[key])
    return where if is_url(where) or os.path.exists(where) else None


def open_session(path: str | os.PathLike[str], viewer: Any,
                 slide_paths: Mapping[str, str] | None = None, dock: Any = None) -> list[Any]:
    """Add a session's layers to ``viewer`` in their order with their display and place, set
    the camera, and give ``dock`` (by default the viewer's open dock, else the next one to
    open) the parameters and regions table; returns the layers added. ``slide_paths`` maps a
    slide as recorded (or where it was) to where it is now; a slide neither found nor mapped
    is a SessionError, raised before any layer is added."""
    files = read_session(path)
    doc = files.doc
    slide_paths = slide_paths or {}
    moved: dict[str, str] = {}
    for layer in doc["layers"]:
        if "slide" in layer:
            found = _slide_file(layer["slide"], path, slide_paths)
            if found is None:
                raise SessionError(
                    f"The slide {layer['slide']} of the session {Path(path).name} is not at "
                    f"{resolve_slide(layer['slide'], path)}: say where it is now "
                    "(slide_paths={old: new}) or move it back.")
            moved[resolve_slide(layer["slide"], path)] = found
    for heatmap in files.heatmaps.values():
        heatmap.slide_path = moved.get(heatmap.slide_path, heatmap.slide_path)
    added = [_add_layer(viewer, entry, files, moved[resolve_slide(entry["slide"], path)]
                        if "slide" in entry else None, i)
             for i, entry in enumerate(doc["layers"])]
    saved = doc.get("camera") or {}
    for name in ("center", "zoom", "angles"):
        if name in saved:
            setattr(camera(viewer), name, saved[name])
    dock = _docks.get(viewer) if dock is None else dock
    if dock is None:
        _waiting[viewer] = doc.get("dock") or {}
    else:
        _fill_dock(dock, doc.get("dock"), viewer)
    return added


def _add_layer(viewer: Any, entry: Mapping[str, Any], files: SessionFiles,
               slide: str | None, index: int) -> Any:
    """The session's layer ``index`` (``entry``) added; ``slide``: where its slide is now."""
    display = dict(entry["display"])
    if slide is not None:
        data, kwargs, _ = read_slides(slide)[0]
        layer = viewer.add_image(data, **kwargs)
    elif "heatmap" in entry:
        data, kwargs, _ = heatmap_layer_data(files.heatmaps[entry["heatmap"]])[entry["class"]]
        layer = viewer.add_image(data, **kwargs)
    elif "labels" in entry:
        layer = viewer.add_labels(files.labels[entry["labels"]])
    elif "points" in entry:
        layer = viewer.add_points(geojson_points(entry["points"]),
                                  **{name: entry[name] for name in POINTS_STYLE})
    else:
        shapes, kinds = geojson_shapes(entry["shapes"])
        report = files.reports.get(index)
        layer = viewer.add_shapes(shapes, shape_type=kinds, edge_width=entry["edge_width"],
                                  edge_color=entry["edge_color"], face_color=entry["face_color"],
                                  metadata={} if report is None else {REGIONS_META_KEY: report})
    _set_display(layer, display)
    return layer


def _set_display(layer: Any, display: dict[str, Any]) -> None:
    from napari.utils.colormaps import Colormap

    record = display.pop("display_record", None)
    if record is not None:
        layer.metadata = {**layer.metadata, DISPLAY_META_KEY: record}
    if "colormap" in display:
        name = display.pop("colormap")
        colors, controls, interpolation = (display.pop(f"colormap_{key}") for key in (
            "colors", "controls", "interpolation"))
        # by its colours: a name this process knows may be another colormap (a custom one)
        layer.colormap = Colormap(colors, controls=controls, interpolation=interpolation,
                                  name=name)
    for name, value in display.items():
        setattr(layer, name, value)
