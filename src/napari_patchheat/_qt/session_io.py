"""Save a viewer as a session and open it again (see ``session.py`` for the files).

Slides (our reader's layers), heatmap layers, Shapes layers (regions of interest and region
results) are saved in their order with their display and place, and the camera; the dock's
parameters when the dock is given. Other layers are left out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._reader import heatmap_layer_data, read_slides
from ..heatmap import CLASS_META_KEY, HEATMAP_META_KEY, Heatmap
from ..session import (
    SESSION_SUFFIX,
    SessionError,
    geojson_shapes,
    heatmap_stem,
    read_session,
    resolve_slide,
    shapes_geojson,
    slide_reference,
    write_session,
)
from ..slide.location import is_url
from .canvas import camera, is_outline_layer
from .display_settings import DISPLAY_META_KEY

# the dock's parameters a session keeps (magicgui widgets of PatchHeatWidget, by attribute)
DOCK_PARAMETERS = ("level", "size", "stride", "rate", "padding", "model", "model_file", "resize",
                   "mixed_precision", "batch_size", "tissue_threshold")


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


def _layer_entry(layer: Any, path: Path, heatmaps: dict[str, Heatmap]) -> dict[str, Any] | None:
    kind = type(layer).__name__
    if kind == "Image" and HEATMAP_META_KEY in layer.metadata:
        heatmap = layer.metadata[HEATMAP_META_KEY]
        stem = next((s for s, h in heatmaps.items() if h is heatmap), None)
        if stem is None:
            stem = heatmap_stem(heatmap, list(heatmaps))
            heatmaps[stem] = heatmap
        return {"heatmap": stem, "class": int(layer.metadata.get(CLASS_META_KEY, 0))}
    if kind == "Image" and layer.metadata.get("path"):
        return {"slide": slide_reference(layer.metadata["path"], path)}
    if kind == "Shapes" and not is_outline_layer(layer):
        return {"shapes": shapes_geojson(layer.data, layer.shape_type),
                "edge_width": [float(w) for w in layer.edge_width],
                "edge_color": np.asarray(layer.edge_color).tolist(),
                "face_color": np.asarray(layer.face_color).tolist()}
    return None


def open_in_viewer(viewer: Any, path: str | os.PathLike[str]) -> list[Any]:
    """Open ``path`` in ``viewer`` with this plugin (``patchheat open``): a session
    (``.patchheat.json``) with everything it holds, else a slide or heatmap; the new layers."""
    if os.fspath(path).lower().endswith(SESSION_SUFFIX):
        return open_session(path, viewer)
    return list(viewer.open(os.fspath(path), plugin="napari-patchheat"))


def save_session(viewer: Any, path: str | os.PathLike[str], dock: Any = None) -> Path:
    """Write ``viewer``'s slides, heatmaps, Shapes layers, their display, the camera and (with
    ``dock``, the PatchHeat widget) its parameters as a session at ``path``."""
    path = Path(path)
    heatmaps: dict[str, Heatmap] = {}
    layers = []
    for layer in viewer.layers:
        entry = _layer_entry(layer, path, heatmaps)
        if entry is not None:
            layers.append({**entry, "display": _display(layer)})
    cam = camera(viewer)
    doc = {"layers": layers,
           "camera": {"center": [float(c) for c in cam.center], "zoom": float(cam.zoom),
                      "angles": [float(a) for a in cam.angles]},
           "dock": None if dock is None else dock_parameters(dock)}
    return write_session(path, doc, heatmaps)


def dock_parameters(dock: Any) -> dict[str, Any]:
    """The dock's parameters as JSON values (the slide by its layer's name)."""
    params: dict[str, Any] = {name: getattr(dock, name).value for name in DOCK_PARAMETERS}
    params["model_file"] = os.fspath(params["model_file"])
    image = dock.image_layer.value
    params["image_layer"] = None if image is None else image.name
    return params


def set_dock_parameters(dock: Any, params: Mapping[str, Any], viewer: Any) -> None:
    """Set the dock's parameters from :func:`dock_parameters` (the slide first)."""
    if params.get("image_layer") in viewer.layers:
        dock.image_layer.value = viewer.layers[params["image_layer"]]
    for name in DOCK_PARAMETERS:
        if name in params:
            getattr(dock, name).value = params[name]


def missing_slides(path: str | os.PathLike[str],
                   slide_paths: Mapping[str, str] | None = None) -> list[str]:
    """The session's slides (as recorded) that are neither found nor in ``slide_paths``."""
    doc, _ = read_session(path)
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
    the camera (and ``dock``'s parameters); returns the layers added. ``slide_paths`` maps a
    slide as recorded (or where it was) to where it is now; a slide neither found nor mapped
    is a SessionError, raised before any layer is added."""
    doc, heatmaps = read_session(path)
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
    for heatmap in heatmaps.values():
        heatmap.slide_path = moved.get(heatmap.slide_path, heatmap.slide_path)
    added = [_add_layer(viewer, entry, heatmaps, moved, path) for entry in doc["layers"]]
    saved = doc.get("camera") or {}
    for name in ("center", "zoom", "angles"):
        if name in saved:
            setattr(camera(viewer), name, saved[name])
    if dock is not None and doc.get("dock"):
        set_dock_parameters(dock, doc["dock"], viewer)
    return added


def _add_layer(viewer: Any, entry: Mapping[str, Any], heatmaps: Mapping[str, Heatmap],
               moved: Mapping[str, str], path: str | os.PathLike[str]) -> Any:
    display = dict(entry["display"])
    if "slide" in entry:
        data, kwargs, _ = read_slides(moved[resolve_slide(entry["slide"], path)])[0]
        layer = viewer.add_image(data, **kwargs)
    elif "heatmap" in entry:
        data, kwargs, _ = heatmap_layer_data(heatmaps[entry["heatmap"]])[entry["class"]]
        layer = viewer.add_image(data, **kwargs)
    else:
        shapes, kinds = geojson_shapes(entry["shapes"])
        layer = viewer.add_shapes(shapes, shape_type=kinds, edge_width=entry["edge_width"],
                                  edge_color=entry["edge_color"], face_color=entry["face_color"])
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
