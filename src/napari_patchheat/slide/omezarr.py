"""OME-Zarr images as slides: NGFF 0.4 (zarr v2, ``.zattrs``) and 0.5 (zarr v3, ``zarr.json``
attributes under ``"ome"``), from a local folder or an fsspec URL.

The first multiscale image of the group (or of its ``0`` series, as bioformats2raw writes) gives
the levels: its datasets' arrays, each read by a :class:`ZarrLevel` (Y X C: t and z of size 1
dropped, channels moved last) as a dask array on whole zarr chunks grouped to
~``CHUNK_TARGET_PX`` a side (``arrays.as_dask``: a slice of it reads only the zarr chunks it
touches). µm/px comes from the largest dataset's ``scale`` and the axes' units. No Qt, no
TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..messages import first_line
from .arrays import as_dask, region_key
from .errors import SlideError
from .location import SlideURL
from .metadata import physical_mpp
from .pyramid import Slide
from .tiff_level import _check_samples

VENDOR = "ome-zarr"
AXES_READ = "tczyx"  # NGFF's axis names; t, z (and c in "cyx") of size 1 are dropped
METADATA_FILES = {2: ".zattrs", 3: "zarr.json"}  # where a group keeps its attributes, by format


def open_omezarr(path: Path) -> Slide:
    """Open the local OME-Zarr folder ``path`` as a :class:`Slide` (reads its metadata and one
    chunk). Its identity follows the multiscales metadata file's size and mtime.

    Raises :class:`SlideError` with one sentence naming the folder and the problem.
    """
    import zarr

    group = _open_group(path, zarr.storage.LocalStore(path, read_only=True))
    image, sub = _image_group(group, path)
    meta = path / sub / METADATA_FILES[image.metadata.zarr_format]
    try:
        stat = meta.stat()
    except OSError as exc:
        raise SlideError(f"Cannot open {path}: {meta.name} cannot be read ({exc.strerror}).",
                         path) from exc
    return _slide_of(image, path, f"{meta.name}|{stat.st_size}|{stat.st_mtime_ns}")


def open_omezarr_url(url: str, storage_options: Mapping[str, Any] | None = None) -> Slide:
    """Open the OME-Zarr at the fsspec ``url`` (``s3://bucket/image.zarr``, ``https://...``;
    ``storage_options`` go to fsspec) as a :class:`Slide` whose ``path`` is a :class:`SlideURL`. Its
    identity follows what the store says of the metadata file (size, ETag, modification time).

    Raises :class:`SlideError` with one sentence naming the URL and the problem.
    """
    import fsspec

    options = dict(storage_options or {})
    group = _open_group(url, url, storage_options=options)
    image, sub = _image_group(group, url)
    meta = "/".join(p for p in (url.rstrip("/"), sub, METADATA_FILES[image.metadata.zarr_format])
                    if p)
    try:
        fs, meta_path = fsspec.core.url_to_fs(meta, **options)
        info = fs.info(meta_path)
    except Exception as exc:  # fsspec raises per protocol
        raise SlideError(f"Cannot open {url}: {meta} cannot be read ({first_line(exc)}).",
                         url) from exc
    key = "|".join(f"{k}={info[k]}" for k in ("size", "ETag", "LastModified", "mtime")
                   if info.get(k) is not None)
    return _slide_of(image, SlideURL(url), f"{url}|{key}")


def _open_group(where: str | Path, store: Any, **options: Any) -> Any:
    """``zarr.open_group(store, mode="r", **options)``, any failure a :class:`SlideError`
    naming ``where``."""
    import zarr

    try:
        return zarr.open_group(store, mode="r", **options)
    except Exception as exc:  # zarr raises many types on broken or foreign folders
        raise SlideError(f"Cannot open {where}: it is not a readable zarr group "
                         f"({first_line(exc)}).", where) from exc


def _attributes(group: Any) -> dict[str, Any]:
    """A group's OME attributes: NGFF 0.5's ``"ome"`` object, else the attributes themselves."""
    attrs = group.attrs.asdict()
    ome = attrs.get("ome")
    return ome if isinstance(ome, dict) else attrs


def _image_group(group: Any, where: str | Path) -> tuple[Any, str]:
    """The group holding the image's multiscales and its path in ``group`` ("" or "0")."""
    if "multiscales" in _attributes(group):
        return group, ""
    if "bioformats2raw.layout" in _attributes(group):
        try:
            series = group["0"]
        except Exception:
            series = None
        if series is not None and "multiscales" in _attributes(series):
            return series, "0"
    raise SlideError(f"Cannot open {where}: it is a zarr group without OME-Zarr multiscales "
                     "metadata (NGFF 0.4 or 0.5); open an OME-Zarr image (e.g. written by "
                     "bioformats2raw or ome-zarr-py).", where)


def _axis_names(multiscale: dict[str, Any], ndim: int) -> list[str]:
    """The axis names of a multiscale (NGFF 0.4+: objects with ``name``; 0.3: strings; older:
    the last ``ndim`` of "tczyx")."""
    axes = multiscale.get("axes")
    if axes is None:
        return list(AXES_READ[-ndim:]) if ndim <= len(AXES_READ) else []
    return [str(a.get("name", "")) if isinstance(a, dict) else str(a) for a in axes]


def _slide_of(group: Any, where: Path | SlideURL, source_key: str) -> Slide:
    """The :class:`Slide` of the OME-Zarr image ``group`` (found at ``where``)."""
    attrs = _attributes(group)
    try:
        multiscale = attrs["multiscales"][0]
        datasets = multiscale["datasets"]
        arrays = [group[d["path"]] for d in datasets]
    except Exception as exc:
        raise SlideError(f"Cannot open {where}: its OME-Zarr multiscales metadata does not name "
                         f"readable arrays ({first_line(exc)}).", where) from exc
    if not arrays:
        raise SlideError(f"Cannot open {where}: its OME-Zarr multiscales lists no dataset.", where)
    names = _axis_names(multiscale, arrays[0].ndim)
    order = sorted(range(len(arrays)), key=lambda k: -_area(arrays[k], names))
    readers = [_level(arrays[k], names, where, f"dataset {datasets[k]['path']!r}")
               for k in order]
    _check_one_chunk(arrays[order[-1]], where)
    return Slide(
        where, [as_dask(r, f"{source_key} {r.names} {r.shape} of {where}") for r in readers],
        vendor=VENDOR,
        mpp=_mpp(multiscale, datasets[order[0]], names),
        tile_shapes=[r.tile for r in readers],
        channel_names=_channel_names(attrs, readers[0].shape[2]),
        source_key=source_key,
    )


def _area(array: Any, names: list[str]) -> int:
    """Pixels (Y x X) of a level array (0 where its axes are not understood)."""
    if "y" not in names or "x" not in names or array.ndim != len(names):
        return 0
    return int(array.shape[names.index("y")]) * int(array.shape[names.index("x")])


def _level(array: Any, names: list[str], where: Path | SlideURL, what: str) -> ZarrLevel:
    """One dataset as a :class:`ZarrLevel`, after checking its axes, sizes, sample type and
    channel count."""
    if array.ndim != len(names) or not {"y", "x"} <= set(names) or set(names) - set(AXES_READ):
        raise SlideError(f"Cannot open {where}: its {what} has {array.ndim} dimensions and axes "
                         f"{''.join(names) or 'unnamed'}; OME-Zarr images with axes among "
                         f"{AXES_READ} (y and x included) are supported.", where)
    sizes = dict(zip(names, array.shape))
    stacked = [f"{a} of size {n}" for a, n in sizes.items() if a in "tz" and n > 1]
    if stacked:
        raise SlideError(f"Cannot open {where}: its {what} has {', '.join(stacked)}; 2-D images "
                         "are supported (time series and volumes are not slides).", where)
    _check_samples(where, what, np.dtype(array.dtype), sizes.get("c", 1), 0)
    return ZarrLevel(array, names, where, what)


class ZarrLevel:
    """A zarr array of a 2-D image (axes among t c z y x, t and z of size 1) as a numpy-like
    (Y, X, C) array: a read takes only the zarr chunks its region touches, channels last; a
    chunk that cannot be read is a :class:`SlideError` naming ``where`` and ``what``."""

    def __init__(self, array: Any, names: list[str], where: Path | SlideURL, what: str) -> None:
        self.array, self.names, self.where, self.what = array, names, where, what
        sizes = dict(zip(names, array.shape))
        self.shape = (int(sizes["y"]), int(sizes["x"]), int(sizes.get("c", 1)))
        self.dtype, self.ndim = np.dtype(array.dtype), 3
        self.tile = (int(array.chunks[names.index("y")]), int(array.chunks[names.index("x")]))
        kept = [a for a in names if a in "cyx"]
        self._order = [kept.index(a) for a in "yxc" if a in kept]

    def __getitem__(self, key: Any) -> np.ndarray:
        (y0, y1, x0, x1), sub = region_key(key, self.shape)
        where = {"y": slice(y0, y1), "x": slice(x0, x1), "c": slice(None)}
        try:
            block = np.asarray(self.array[tuple(where.get(a, 0) for a in self.names)])
        except Exception as exc:  # a codec's or the store's error, of any type
            raise SlideError(f"Cannot read pixels {y0}:{y1}, {x0}:{x1} of the {self.what} of "
                             f"{self.where}: {type(exc).__name__}: {first_line(exc)}.",
                             self.where) from exc
        if block.ndim == 2:
            return block[..., np.newaxis][sub]
        if self._order == [1, 2, 0]:  # channel-first (NGFF's order): planes stacked, ~4x faster
            return np.stack(list(block), axis=-1)[sub]  # than a strided transposing copy
        return block.transpose(self._order)[sub]


def _check_one_chunk(array: Any, where: Path | SlideURL) -> None:
    """Read one chunk of the smallest level, so a missing codec or a broken store fails now."""
    try:
        array[tuple(slice(0, min(int(n), int(c))) for n, c in zip(array.shape, array.chunks))]
    except Exception as exc:
        raise SlideError(f"Cannot open {where}: its first chunk cannot be read "
                         f"({type(exc).__name__}: {first_line(exc)}).", where) from exc


def _scale(transforms: Any) -> list[Any] | None:
    """The ``scale`` of a list of NGFF coordinate transformations, or None."""
    for t in transforms or ():
        if isinstance(t, dict) and t.get("type") == "scale" and isinstance(t.get("scale"), list):
            return list(t["scale"])
    return None


def _mpp(multiscale: dict[str, Any], dataset: dict[str, Any], names: list[str]
         ) -> tuple[float, float] | None:
    """Level 0's (y, x) µm/px: its dataset's scale (times the multiscale's own, if any) in the
    y and x axes' units; None where a scale or a unit is missing or unknown."""
    scale = _scale(dataset.get("coordinateTransformations"))
    if scale is None or len(scale) != len(names):
        return None
    outer = _scale(multiscale.get("coordinateTransformations")) or [1.0] * len(names)
    axes = multiscale.get("axes") or []
    sizes = []
    for a in ("y", "x"):
        i = names.index(a)
        unit = axes[i].get("unit") if i < len(axes) and isinstance(axes[i], dict) else None
        try:
            sizes.append((float(scale[i]) * float(outer[i]), unit))
        except (TypeError, ValueError, IndexError):
            return None
    return physical_mpp(sizes)


def _channel_names(attrs: dict[str, Any], channels: int) -> tuple[str, ...] | None:
    """The channels' labels in the image's ``omero`` metadata, where it gives one per channel."""
    omero = attrs.get("omero")
    found = omero.get("channels") if isinstance(omero, dict) else None
    if not isinstance(found, list) or len(found) != channels:
        return None
    labels = [str(c.get("label", "")) if isinstance(c, dict) else "" for c in found]
    return tuple(labels) if any(labels) else None
