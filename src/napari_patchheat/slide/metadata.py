"""What a slide's metadata says: vendor, level-0 µm/px, objective power, channel names.

Aperio's ImageDescription, the NDPI magnification and fluorescence tags, OME-XML (PhysicalSize
with its unit, NominalMagnification, Channel Name), then the TIFF resolution tags where nothing
else gave a pixel size. Values that are missing, unparsable, non-positive or (for resolution
tags and OpenSlide) implausible are None. OpenSlide's standard properties are read by
:func:`openslide_metadata`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from typing import Any

from ..grid import as_float_pair

MPP_PLAUSIBLE_UM = (0.01, 100.0)  # µm/px (resolution tags, OpenSlide) outside this are ignored
NDPI_MAGNIFICATION_TAG = 65421
NDPI_FLUORESCENCE_TAG = 65434  # the filter set a fluorescence NDPI was scanned with ("DAPI ...")
# µm per unit of length: OME-XML's symbols and OME-Zarr's (NGFF, UDUNITS-2) names
UNIT_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4,
           "m": 1e6, "Å": 1e-4, "picometer": 1e-6, "angstrom": 1e-4, "nanometer": 1e-3,
           "micrometer": 1.0, "micron": 1.0, "millimeter": 1e3, "centimeter": 1e4,
           "decimeter": 1e5, "meter": 1e6, "inch": 25400.0}  # fmt: skip


def tiff_metadata(
    tif: Any, page: Any, index: int
) -> tuple[str, tuple[float, float] | None, float | None]:
    """Vendor, (y, x) µm/px of level 0 and objective power, from what the file says.

    ``page`` is level 0's first page, ``index`` the slide's series (its OME Image).
    """
    mpp: tuple[float, float] | None = None
    power: float | None = None
    vendor = "tiff"
    if tif.is_svs:
        vendor = "aperio"
        fields = {}
        for part in (page.description or "").split("|")[1:]:
            name, _, value = part.partition("=")
            fields[name.strip()] = value.strip()
        mpp = _mpp_pair(fields.get("MPP"))
        power = _positive(fields.get("AppMag"))
    elif tif.is_ndpi:
        vendor = "hamamatsu"
        tag = page.tags.get(NDPI_MAGNIFICATION_TAG)
        power = _positive(tag.value if tag is not None else None)
    elif tif.is_ome:
        vendor = "ome"
        mpp, power = _ome_metadata(tif.ome_metadata, index)
    else:
        for flag, name in (("is_scn", "leica"), ("is_bif", "ventana"), ("is_philips", "philips")):
            if getattr(tif, flag, False):
                vendor = name
    if mpp is None:
        mpp = _resolution_mpp(page)
    return vendor, mpp, power


def openslide_metadata(
    properties: Mapping[str, str],
) -> tuple[str, tuple[float, float] | None, float | None]:
    """Vendor, (y, x) µm/px of level 0 and objective power from OpenSlide's standard properties
    (``openslide.vendor``, ``openslide.mpp-y``/``-x``, ``openslide.objective-power``)."""
    mpp_y, mpp_x = (_positive(properties.get(f"openslide.mpp-{axis}")) for axis in "yx")
    lo, hi = MPP_PLAUSIBLE_UM
    mpp = None
    if mpp_y and mpp_x and lo <= min(mpp_y, mpp_x) and max(mpp_y, mpp_x) <= hi:
        mpp = (mpp_y, mpp_x)
    vendor = properties.get("openslide.vendor") or "openslide"
    return vendor, mpp, _positive(properties.get("openslide.objective-power"))


def channel_names(tif: Any, page: Any, index: int) -> tuple[str, ...] | None:
    """Names of the slide's channels where the file gives them, else None: OME-XML ``Channel
    Name`` of the slide's Image ``index``, or an NDPI's fluorescence tag (one name, the filter
    set of the scan). ``page`` is level 0's first page."""
    if tif.is_ndpi:
        tag = page.tags.get(NDPI_FLUORESCENCE_TAG)
        name = str(tag.value).strip() if tag is not None else ""
        return (name,) if name else None
    if tif.is_ome:
        px = _ome_pixels(_ome_elements(tif.ome_metadata), index)
        channels = [] if px is None else [el for el in px if _local(el) == "Channel"]
        if any(el.get("Name") for el in channels):
            return tuple(el.get("Name") or f"channel {k}" for k, el in enumerate(channels))
    return None


def _ome_elements(xml: str | None) -> list[Any]:
    """Every element of an OME-XML document (none where it is missing or unparsable)."""
    try:
        return list(ElementTree.fromstring(xml).iter()) if xml else []
    except ElementTree.ParseError:
        return []


def _local(element: Any) -> str:
    """An element's tag without its namespace."""
    return str(element.tag).rsplit("}", 1)[-1]


def _ome_pixels(elements: list[Any], index: int) -> Any:
    """The ``Pixels`` of OME Image ``index`` (of the first Image where there are fewer)."""
    pixels = [el for el in elements if _local(el) == "Pixels"]
    return (pixels[index] if index < len(pixels) else pixels[0]) if pixels else None


def _ome_metadata(xml: str | None, index: int) -> tuple[tuple[float, float] | None, float | None]:
    elements = _ome_elements(xml)
    px = _ome_pixels(elements, index)
    mpp = None
    if px is not None:
        mpp = physical_mpp([(px.get(f"PhysicalSize{a}"), px.get(f"PhysicalSize{a}Unit", "µm"))
                            for a in ("Y", "X")])
    objectives = [el for el in elements if _local(el) == "Objective"]
    power = _positive(objectives[0].get("NominalMagnification")) if objectives else None
    return mpp, power


def physical_mpp(sizes: Sequence[tuple[Any, str | None]]) -> tuple[float, float] | None:
    """(y, x) µm/px from the (value, unit) of the y and x pixel sizes (units of
    :data:`UNIT_UM`), or None where one is missing, not a positive number, or of no known unit."""
    pair = []
    for value, unit in sizes:
        number, um = _positive(value), UNIT_UM.get(unit) if unit is not None else None
        pair.append(number * um if number and um else None)
    return _mpp_pair(pair)


def _resolution_mpp(page: Any) -> tuple[float, float] | None:
    """µm/px from the TIFF resolution tags (inch, cm, mm or µm), if plausible for a slide."""
    um_per_unit = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}.get(int(page.resolutionunit or 1))
    if um_per_unit is None:
        return None
    try:
        x_per_unit, y_per_unit = page.resolution
    except (TypeError, ValueError):
        return None
    if not (x_per_unit > 0 and y_per_unit > 0):
        return None
    mpp = (um_per_unit / y_per_unit, um_per_unit / x_per_unit)
    lo, hi = MPP_PLAUSIBLE_UM
    return mpp if all(lo <= v <= hi for v in mpp) else None


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _mpp_pair(value: Any) -> tuple[float, float] | None:
    """(y, x) µm/px from one value or a (y, x) pair, as ``grid.as_float_pair`` reads them
    (numbers or numeric text), or None where a value is missing, unparsable, not positive or
    infinite: metadata is read, not validated."""
    try:
        pair = as_float_pair("mpp", value)
    except (TypeError, ValueError):
        return None
    return pair if all(math.isfinite(v) for v in pair) else None
