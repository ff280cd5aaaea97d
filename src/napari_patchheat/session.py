"""Sessions: a small versioned JSON file and the heatmaps beside it (no Qt, no napari).

``SESSION.patchheat.json`` holds the layers in their order (slides by path, relative to the
session's folder where possible; heatmaps by the name of their OME-Zarr in
``SESSION.patchheat.json.heatmaps/``; Labels by the name of a compressed ``.labels.npz`` there;
Shapes and Points as GeoJSON in the layer's data coordinates; a regions layer with its
numbers), each layer's display and place, the camera and the dock's parameters.
``_qt/session_io.py`` builds it from a viewer and restores it. Version 2 added Labels, Points
and region numbers; version 1 files open as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .analysis import RegionReport, RegionStats, sized_regions
from .export import read_ome_zarr, write_ome_zarr
from .files import JSONError, atomic_folder, atomic_write, loads_json, safe_name
from .heatmap import Heatmap
from .slide.location import is_url

SESSION_VERSION = 2  # 2: Labels, Points and region numbers (a version 1 reader calls them damaged)
READ_VERSIONS = (1, 2)
SESSION_SUFFIX = ".patchheat.json"
HEATMAPS_SUFFIX = ".heatmaps"
LABELS_SUFFIX = ".labels.npz"
LAYER_KINDS = ("slide", "heatmap", "shapes", "labels", "points")


class SessionError(ValueError):
    """A session file that cannot be read or restored; the message is one sentence."""


class SessionFiles(NamedTuple):
    """A session read back: its JSON, its heatmaps ({file stem: heatmap}), its Labels arrays
    ({file stem: array}) and its regions layers' numbers ({layer's index: report})."""

    doc: dict[str, Any]
    heatmaps: dict[str, Heatmap]
    labels: dict[str, np.ndarray]
    reports: dict[int, RegionReport]


def heatmaps_folder(path: str | os.PathLike[str]) -> Path:
    """The folder of a session's heatmaps: the session's path with ``.heatmaps`` added."""
    path = Path(path)
    return path.with_name(path.name + HEATMAPS_SUFFIX)


def slide_reference(slide: str, session: str | os.PathLike[str]) -> str:
    """How the session records a slide: a URL as it is, a path relative to the session's
    folder where one exists (another drive has none), else absolute."""
    if is_url(slide):
        return slide
    try:
        return Path(os.path.relpath(Path(slide).absolute(),
                                    Path(session).absolute().parent)).as_posix()
    except ValueError:
        return str(Path(slide).absolute())


def resolve_slide(reference: str, session: str | os.PathLike[str]) -> str:
    """The slide a recorded reference names (relative ones from the session's folder)."""
    if is_url(reference) or os.path.isabs(reference):
        return reference
    return os.path.normpath(Path(session).absolute().parent / reference)


def shapes_geojson(data: Sequence[np.ndarray], shape_types: Sequence[str]) -> dict[str, Any]:
    """A Shapes layer's shapes as a GeoJSON FeatureCollection in its data coordinates (x, y),
    exact; each feature keeps napari's shape type (an ellipse as its 4 box corners)."""
    features = []
    for vertices, kind in zip(data, shape_types):
        xy = np.asarray(vertices, dtype=float)[:, ::-1].tolist()
        closed = kind in ("polygon", "rectangle", "ellipse")
        geometry = ({"type": "Polygon", "coordinates": [[*xy, xy[0]]]} if closed
                    else {"type": "LineString", "coordinates": xy})
        features.append({"type": "Feature", "geometry": geometry,
                         "properties": {"shape_type": kind}})
    return {"type": "FeatureCollection", "features": features}


def geojson_shapes(doc: Mapping[str, Any]) -> tuple[list[np.ndarray], list[str]]:
    """The shapes of :func:`shapes_geojson`: (vertices (n, 2) y x, shape types)."""
    data, kinds = [], []
    for feature in doc["features"]:
        geometry = feature["geometry"]
        xy = geometry["coordinates"][0][:-1] if geometry["type"] == "Polygon" \
            else geometry["coordinates"]
        data.append(np.asarray(xy, dtype=float)[:, ::-1])
        kinds.append(str(feature["properties"]["shape_type"]))
    return data, kinds


def points_geojson(data: np.ndarray) -> dict[str, Any]:
    """A Points layer's points ((n, 2) y x, its data coordinates) as GeoJSON Points (x, y),
    exact."""
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": xy}, "properties": {}}
        for xy in np.asarray(data, dtype=float)[:, ::-1].tolist()]}


def geojson_points(doc: Mapping[str, Any]) -> np.ndarray:
    """The points of :func:`points_geojson`: (n, 2) y x."""
    xy = [feature["geometry"]["coordinates"] for feature in doc["features"]]
    return np.asarray(xy, dtype=float).reshape(-1, 2)[:, ::-1]


def report_record(report: RegionReport, heatmap: str) -> dict[str, Any]:
    """The numbers of a regions layer (``report``; ``heatmap``: its heatmap's file stem) as
    JSON values: how the regions were found and every row of the table."""
    return {"heatmap": heatmap, "class": report.class_index, "threshold": report.threshold,
            "smooth": report.smooth, "min_cells": report.min_cells,
            "left_out": report.left_out, "rows": [vars(row) for row in report.rows]}


def record_report(record: Mapping[str, Any], heatmap: Heatmap) -> RegionReport:
    """The RegionReport of :func:`report_record`: its rows as saved, its regions found again
    in ``heatmap`` (the same cells give the same polygons)."""
    found, _ = sized_regions(heatmap, record["class"], record["threshold"],
                             smooth=record["smooth"], min_cells=record["min_cells"])
    return RegionReport(heatmap, record["class"], record["threshold"], record["smooth"], found,
                        [RegionStats(**row) for row in record["rows"]], record["min_cells"],
                        record["left_out"])


def write_session(path: str | os.PathLike[str], doc: dict[str, Any],
                  heatmaps: Mapping[str, Heatmap],
                  labels: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write the session ``doc`` (its ``version`` set), ``heatmaps`` ({file stem: heatmap},
    each an OME-Zarr in :func:`heatmaps_folder`) and ``labels`` ({file stem: a Labels layer's
    array}, each a compressed ``.labels.npz`` there), each atomically; returns the path."""
    path = Path(path)
    with atomic_folder(heatmaps_folder(path)) as folder:
        for stem, heatmap in heatmaps.items():
            write_ome_zarr(heatmap, folder / f"{stem}.ome.zarr")
        for stem, array in (labels or {}).items():
            np.savez_compressed(folder / f"{stem}{LABELS_SUFFIX}", labels=array)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps({**doc, "version": SESSION_VERSION}, indent=1),
                       encoding="utf-8")
    return path


def heatmap_stem(heatmap: Heatmap, taken: Sequence[str]) -> str:
    """A file stem for ``heatmap`` (its title, safe for files) not in ``taken``."""
    return free_stem(heatmap.title(), taken)


def free_stem(name: str, taken: Sequence[str]) -> str:
    """``name`` safe for files, numbered (``-2``, ...) where ``taken`` has it."""
    stem = safe_name(name)
    n = 1
    while (candidate := stem if n == 1 else f"{stem}-{n}") in taken:
        n += 1
    return candidate


def read_session(path: str | os.PathLike[str]) -> SessionFiles:
    """The session and the files beside it; a SessionError with one sentence for a missing,
    damaged or newer file."""
    path = Path(path)
    try:
        doc = loads_json(path.read_text(encoding="utf-8"))
    except (OSError, JSONError, UnicodeDecodeError) as exc:
        raise SessionError(f"Cannot read the session {path.name}: "
                           f"{str(exc).rstrip('.')}.") from None
    if not isinstance(doc, dict) or "layers" not in doc:
        raise SessionError(f"{path.name} is not a napari-patchheat session: choose a session "
                           f"file ({SESSION_SUFFIX}).")
    if doc.get("version") not in READ_VERSIONS:
        raise SessionError(
            f"The session {path.name} is of version {doc.get('version')!r}, which this "
            f"napari-patchheat does not know (it reads versions up to {SESSION_VERSION}): "
            "update napari-patchheat.")
    if not isinstance(doc["layers"], list) or not all(_is_layer(x) for x in doc["layers"]):
        raise SessionError(f"The session {path.name} is damaged (a layer without its kind, its "
                           "display or its heatmap): save the session again.")
    stems = {layer["heatmap"] for layer in doc["layers"] if "heatmap" in layer} \
        | {layer["regions"]["heatmap"] for layer in doc["layers"] if "regions" in layer}
    folder = heatmaps_folder(path)
    try:
        heatmaps = {stem: read_ome_zarr(folder / f"{stem}.ome.zarr") for stem in stems}
        labels = {}
        for stem in (layer["labels"] for layer in doc["layers"] if "labels" in layer):
            with np.load(folder / f"{stem}{LABELS_SUFFIX}") as npz:
                labels[stem] = npz["labels"]
    except (OSError, ValueError, KeyError) as exc:
        raise SessionError(f"Cannot read the heatmaps of the session {path.name} in "
                           f"{folder} ({str(exc).rstrip('.')}): keep that folder beside the "
                           "session file.") from None
    try:
        reports = {i: record_report(layer["regions"], heatmaps[layer["regions"]["heatmap"]])
                   for i, layer in enumerate(doc["layers"]) if "regions" in layer}
    except (KeyError, TypeError, ValueError):
        raise SessionError(f"The session {path.name} is damaged (a regions layer's numbers): "
                           "save the session again.") from None
    return SessionFiles(doc, heatmaps, labels, reports)


def _is_layer(entry: Any) -> bool:
    """A layer entry: a dict of one kind (LAYER_KINDS) and its display (and a regions layer's
    numbers naming their heatmap)."""
    return isinstance(entry, dict) and isinstance(entry.get("display"), dict) \
        and sum(kind in entry for kind in LAYER_KINDS) == 1 \
        and isinstance(entry.get("regions", {"heatmap": ""}).get("heatmap"), str)
