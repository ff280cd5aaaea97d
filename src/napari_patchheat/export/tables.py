"""The computed patches as a table: CSV (ours or WSInfer's columns) and GeoJSON, read back.

Boxes and centres in level-0 pixels; the files are streamed in chunks of TABLE_CHUNK_ROWS.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_write, loads_json
from ..heatmap import Heatmap
from ..test_time import n_predicted
from .classes import UNCLASSIFIED, ClassRule

TABLE_CHUNK_ROWS = 65536  # CSV / GeoJSON are written this many patches at a time
CSV_COLUMNS = ("row", "col", "level", "x", "y", "width", "height", "center_x", "center_y")
WSINFER_COLUMNS = ("minx", "miny", "width", "height")  # then prob_<class>, as WSInfer writes
# text cells a spreadsheet would run as a formula start with one of these: quoted with a "'"
# (OWASP's advice); the quote itself is quoted too, so that reading back is exact
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
CLASS_COLORS_RGB = (  # classification colours in GeoJSON, class k gets k % 10
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


@dataclass
class PatchTable:
    """The computed patches as a table: grid indices, level-0 boxes and centres, class values.

    ``boxes`` (n, 4) are ``(y0, x0, y1, x1)`` level-0 pixels, end-exclusive (PatchGrid.boxes);
    ``centers`` (n, 2) ``(y, x)`` in napari's world (pixel k centred on k; PatchGrid.centers).
    """

    rows: np.ndarray
    cols: np.ndarray
    level: int
    boxes: np.ndarray
    centers: np.ndarray
    values: np.ndarray
    class_names: tuple[str, ...]


def patch_table(heatmap: Heatmap) -> PatchTable:
    """One entry per computed patch, row-major."""
    return _table(heatmap, *np.nonzero(heatmap.computed))


def _table(heatmap: Heatmap, rows: np.ndarray, cols: np.ndarray) -> PatchTable:
    g, d = heatmap.grid, heatmap.downsample
    return PatchTable(rows, cols, heatmap.level, g.boxes(rows, cols, d), g.centers(rows, cols, d),
                      heatmap.values[rows, cols], heatmap.class_names)


def _table_chunks(heatmap: Heatmap) -> Iterator[PatchTable]:
    """:func:`patch_table` in pieces of TABLE_CHUNK_ROWS, so big tables stream in bounded memory."""
    rows, cols = np.nonzero(heatmap.computed)
    for start in range(0, len(rows), TABLE_CHUNK_ROWS):
        stop = start + TABLE_CHUNK_ROWS
        yield _table(heatmap, rows[start:stop], cols[start:stop])


def _class_columns(class_names: Sequence[str]) -> list[str]:
    return [f"class_{n}" if n in CSV_COLUMNS else text_cell(n) for n in class_names]


def text_cell(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs: a leading ``'`` where it starts with
    ``= + - @``, a tab, a carriage return or ``'`` (see :func:`read_text_cell`)."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def read_text_cell(cell: str) -> str:
    """The text :func:`text_cell` wrote as ``cell``."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


def _num_str(values: np.ndarray) -> np.ndarray:
    """Shortest round-trip text of each number; whole numbers without '.0'."""
    values = np.asarray(values)
    text = values.astype(str)
    whole = np.isfinite(values) & (values == np.round(values))
    text[whole] = values[whole].astype(np.int64).astype(str)
    return text


def _write_csv_rows(heatmap: Heatmap, path: str | Path, header: Sequence[str],
                    columns: Callable[[PatchTable], list[np.ndarray]]) -> Path:
    """Stream a CSV: ``header``, then ``columns(chunk)`` (text arrays) for each table chunk."""
    path = Path(path)
    with atomic_write(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for t in _table_chunks(heatmap):
                writer.writerows(zip(*(col.tolist() for col in columns(t))))
    return path


def _box_columns(t: PatchTable) -> list[np.ndarray]:
    """x, y, width, height of each box as text, level-0 pixels."""
    b = t.boxes
    return [_num_str(b[:, 1]), _num_str(b[:, 0]), _num_str(b[:, 3] - b[:, 1]),
            _num_str(b[:, 2] - b[:, 0])]


def _value_columns(t: PatchTable) -> list[np.ndarray]:
    return [_num_str(t.values[:, k]) for k in range(t.values.shape[1])]


def write_csv(heatmap: Heatmap, path: str | Path) -> Path:
    """CSV, one row per computed patch: row, col, level, x, y, width, height, center_x, center_y
    and one column per class. Box and centre in level-0 pixels (see :class:`PatchTable`)."""

    def columns(t: PatchTable) -> list[np.ndarray]:
        level = np.full(len(t.rows), str(t.level))
        return [t.rows.astype(str), t.cols.astype(str), level, *_box_columns(t),
                _num_str(t.centers[:, 1]), _num_str(t.centers[:, 0]), *_value_columns(t)]

    header = [*CSV_COLUMNS, *_class_columns(heatmap.class_names)]
    return _write_csv_rows(heatmap, path, header, columns)


def write_wsinfer_csv(heatmap: Heatmap, path: str | Path) -> Path:
    """CSV with WSInfer's columns, one row per computed patch: minx, miny, width, height (the
    patch's level-0 box, pixels) and prob_<class> per class (then the "<class> sd" channels of
    a run with uncertainty); WSInfer's tools read it as theirs."""
    names = heatmap.class_names
    k = n_predicted(names)  # sd channels keep their names: no class of WSInfer's tools
    header = [*WSINFER_COLUMNS, *(text_cell(f"prob_{n}") for n in names[:k]),
              *map(text_cell, names[k:])]
    return _write_csv_rows(heatmap, path, header, lambda t: [*_box_columns(t), *_value_columns(t)])


def read_csv(path: str | Path) -> PatchTable:
    """Read a CSV written by :func:`write_csv`."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        data = np.array([[float(v) for v in row] for row in reader], dtype=np.float64)
    data = data.reshape(-1, len(header))
    fixed = len(CSV_COLUMNS)
    names = tuple(
        n[6:] if n.startswith("class_") and n[6:] in CSV_COLUMNS else read_text_cell(n)
        for n in header[fixed:]
    )
    x, y, w, h = data[:, 3], data[:, 4], data[:, 5], data[:, 6]
    level = int(data[0, 2]) if len(data) else -1
    return PatchTable(data[:, 0].astype(np.int64), data[:, 1].astype(np.int64), level,
                      np.stack([y, x, y + h, x + w], -1), data[:, [8, 7]],
                      data[:, fixed:].astype(np.float32), names)


def _ring(y0: float, x0: float, y1: float, x1: float) -> list[list[float]]:
    """Closed box ring, counter-clockwise in (x, y) as RFC 7946 counts it (WSInfer's order)."""
    return [[x1, y0], [x1, y1], [x0, y1], [x0, y0], [x1, y0]]


def write_geojson(heatmap: Heatmap, path: str | Path, *, object_type: str = "tile",
                  positive_threshold: float | None = None,
                  min_probability: float | None = None) -> Path:
    """GeoJSON FeatureCollection, one Polygon per computed patch, in level-0 pixels (x, y).

    Properties as QuPath reads them: ``objectType`` ("tile" or "detection"), ``measurements``
    {class: value}, ``classification`` {name, color: [r, g, b]} where :class:`ClassRule` gives
    one (the rule is stated in the collection's ``patchheat.classification``); and ``patchheat``
    {row, col, level}. Streamed to disk feature by feature.
    """
    if object_type not in ("tile", "detection", "annotation"):
        raise ValueError(f"object_type={object_type!r}: use 'tile', 'detection' or 'annotation'.")
    rule = ClassRule(heatmap.class_names, positive_threshold, min_probability)
    path = Path(path)
    key = f"napari-patchheat:{heatmap.model_fingerprint}|{heatmap.slide_path}|{heatmap.level}"
    head = {"type": "FeatureCollection",
            "patchheat": {**heatmap.metadata(), "classification": rule.describe()}}
    names, sep = heatmap.class_names, "\n"
    with atomic_write(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(head, default=str)[:-1] + ', "features": [')
            for t in _table_chunks(heatmap):
                boxes = [[int(v) if v.is_integer() else v for v in b] for b in t.boxes.tolist()]
                values = [[v if np.isfinite(v) else None for v in row]  # shortest float32 text
                          for row in t.values.astype(str).astype(float).tolist()]
                classes = rule.classes(t.values).tolist()
                for r, c, k, box, vals in zip(t.rows.tolist(), t.cols.tolist(), classes, boxes,
                                              values):
                    props: dict[str, object] = {"objectType": object_type}
                    if k != UNCLASSIFIED:
                        colour = list(CLASS_COLORS_RGB[k % len(CLASS_COLORS_RGB)])
                        props["classification"] = {"name": names[k], "color": colour}
                    props["measurements"] = dict(zip(names, vals))
                    props["patchheat"] = {"row": r, "col": c, "level": t.level}
                    feature = {
                        "type": "Feature",
                        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{key}|{r}|{c}")),
                        "geometry": {"type": "Polygon", "coordinates": [_ring(*box)]},
                        "properties": props,
                    }
                    f.write(sep + json.dumps(feature, allow_nan=False))
                    sep = ",\n"
            f.write("\n]}\n")
    return path


def read_geojson(path: str | Path) -> PatchTable:
    """Read a GeoJSON written by :func:`write_geojson` (boxes from the rings' extents)."""
    doc = loads_json(Path(path).read_text(encoding="utf-8"))
    feats = doc.get("features", [])
    names = tuple(doc.get("patchheat", {}).get("class_names")
                  or (feats[0]["properties"]["measurements"] if feats else ()))
    rows, cols, boxes, values, level = [], [], [], [], -1
    for feat in feats:
        props = feat["properties"]
        ring = np.asarray(feat["geometry"]["coordinates"][0], dtype=np.float64)
        boxes.append([ring[:, 1].min(), ring[:, 0].min(), ring[:, 1].max(), ring[:, 0].max()])
        rows.append(props["patchheat"]["row"])
        cols.append(props["patchheat"]["col"])
        level = props["patchheat"]["level"]
        m = props["measurements"]
        values.append([np.nan if m[k] is None else m[k] for k in names])
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centers = np.stack([(b[:, 0] + b[:, 2] - 1) / 2, (b[:, 1] + b[:, 3] - 1) / 2], -1)
    return PatchTable(np.asarray(rows, np.int64), np.asarray(cols, np.int64), level, b, centers,
                      np.asarray(values, np.float32).reshape(-1, len(names)), names)
