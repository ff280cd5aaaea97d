"""npe2 reader: a slide file (or a DICOM or OME-Zarr folder) as one multiscale RGB image layer
(thin: see ``slide/``).

The layer is in µm (``scale``, ``units``) when the slide knows its pixel size, so napari's
scale bar reads µm; its metadata carries what the widget needs: the path, µm/px, objective
power and ``Slide.downsamples`` (exact powers of two for computed levels; napari's own
``downsample_factors`` are level-0 size / level size and cannot be set, see
docs/coordinates.md).
A huge single-level slide shows blank zoomed-out views while they are built once, with a
progress bar (see ``_qt/coarse_build.py``).
Slide URLs (``s3://``, ``gs://``, ``az://``, ``http(s)://``) are read remotely, with the
credentials and endpoint of the environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).
Opening a slide starts the dock's model process and warms its model (``_qt/warmup.py``).
A file this reader claims but cannot read raises :class:`~napari_patchheat.slide.SlideError`
(napari shows the message); a file it does not take gets ``None``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from .slide import SLIDE_SUFFIXES
from .slide.location import is_url, url_key
from .slide.opening import is_slide_folder

LayerData = tuple[Any, dict[str, Any], str]


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader for slide files and slide URLs (``s3://``, ``https://``, ...; by suffix,
    case-insensitive, a URL's without its query string) and for folders that hold a DICOM WSI
    series or an OME-Zarr; None for anything else."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        return None
    for p in paths:
        name = os.fspath(p)
        if is_url(name):
            if not url_key(name).rstrip("/").lower().endswith(SLIDE_SUFFIXES):
                return None
        elif os.path.isdir(name):
            if not is_slide_folder(name):
                return None
        elif not name.lower().endswith(SLIDE_SUFFIXES):
            return None
    return read_slides


def read_slides(path: str | list[str]) -> list[LayerData]:
    """One multiscale image layer per slide file; one layer per class for a heatmap OME-TIFF
    or OME-Zarr written by napari-patchheat, placed over its slide again."""
    from .export import is_heatmap_file, is_heatmap_zarr, read_ome_tiff, read_ome_zarr
    from .slide import open_slide

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        if is_heatmap_file(p):
            layers.extend(heatmap_layer_data(read_ome_tiff(p)))
        elif is_heatmap_zarr(p):
            layers.extend(heatmap_layer_data(read_ome_zarr(p)))
        else:
            layers.append(slide_layer_data(open_slide(p)))
            _warm_on_open()  # the model's process starts now, not at the first Run
    return layers


def _warm_on_open() -> None:
    """Start the dock's worker and warm its model (_qt/warmup.py) where napari runs with Qt;
    nothing where the reader runs headless (a script, npe2 without Qt bindings)."""
    try:
        from ._qt.warmup import warm_on_open
    except ImportError:  # no Qt bindings (qtpy's error is an ImportError): no dock to warm for
        return
    warm_on_open()


def heatmap_layer_data(heatmap: Any) -> list[LayerData]:
    """napari layer data of every class of a Heatmap, in the units the slide layer uses
    (µm where the slide knows its pixel size, level-0 pixels otherwise), shown as it was when
    exported (colormap, opacity, value range, "show at or above")."""
    from ._qt.display_settings import DISPLAY_EXTRA_KEY, restored_display

    layers = []
    record = heatmap.extra.get(DISPLAY_EXTRA_KEY)
    for c in range(len(heatmap.class_names)):
        kwargs = heatmap.layer_kwargs(c, world_per_px=heatmap.mpp or 1.0)
        if record:
            shown = restored_display(record, c)
            kwargs["metadata"].update(shown.pop("metadata"))
            kwargs.update(shown)
        if heatmap.mpp is not None and _layer_takes_units():
            kwargs["units"] = ("µm", "µm")
        layers.append((kwargs.pop("data"), kwargs, "image"))
    return layers


def slide_layer_data(slide: Any) -> LayerData:
    """napari layer data of an open :class:`~napari_patchheat.slide.Slide` (kept open). A huge
    slide's computed levels are blank while they are built (``_qt/coarse_build.py``)."""
    from ._qt.coarse_build import COARSE_PENDING_KEY, pending_levels, start_build
    from .slide.coarse import needs_build
    from .slide.color import icc_description

    kwargs: dict[str, Any] = {
        "name": slide.path.name,
        "rgb": True,
        "multiscale": True,
        "contrast_limits": (0, 255),  # uint8 RGB: napari need not scan the data
        "metadata": {
            "path": str(slide.path),
            "mpp": slide.mpp,
            "downsamples": [tuple(d) for d in slide.downsamples],
            "level_shapes": [tuple(int(n) for n in lv.shape[:2]) for lv in slide.levels],
            "vendor": slide.vendor,
            "objective_power": slide.objective_power,
            "identity": slide.identity,
            "channel_names": slide.channel_names,
            # the file's ICC profile: its description (None: no profile) and its bytes, which
            # the dock's "Show in sRGB" converts with (slide/color.py)
            "icc_profile": icc_description(slide.icc_profile),
            "icc_profile_bytes": slide.icc_profile,
        },
    }
    if slide.mpp is not None:
        kwargs["scale"] = tuple(slide.mpp)
        if _layer_takes_units():
            kwargs["units"] = ("µm", "µm")
    if needs_build(slide) and start_build(slide):
        kwargs["metadata"][COARSE_PENDING_KEY] = True
        return pending_levels(slide), kwargs, "image"
    return list(slide.levels), kwargs, "image"


def _layer_takes_units() -> bool:
    from napari.layers import Image

    return "units" in inspect.signature(Image.__init__).parameters
