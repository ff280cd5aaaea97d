"""What a TIFF slide's metadata says: vendor, level-0 µm/px and objective power.

Aperio's ImageDescription, the NDPI magnification tag, OME-XML (PhysicalSize with its unit,
NominalMagnification), then the TIFF resolution tags where nothing else gave a pixel size.
Values that are missing, unparsable, non-positive or (for resolution tags) implausible are None.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from typing import Any

from ..grid import as_float_pair

MPP_PLAUSIBLE_UM = (0.01, 100.0)  # µm/px from TIFF resolution tags outside this are ignored
_UNIT_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4,
            "m": 1e6, "Å": 1e-4}  # fmt: skip


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
        tag = page.tags.get(65421)  # NDPI Magnification
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


def _ome_metadata(xml: str | None, index: int) -> tuple[tuple[float, float] | None, float | None]:
    if not xml:
        return None, None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None, None
    local = {el: el.tag.rsplit("}", 1)[-1] for el in root.iter()}
    pixels = [el for el, tag in local.items() if tag == "Pixels"]
    mpp = None
    if pixels:
        px = pixels[index] if index < len(pixels) else pixels[0]
        sizes = []
        for axis in ("Y", "X"):
            unit = _UNIT_UM.get(px.get(f"PhysicalSize{axis}Unit", "µm"))
            value = _positive(px.get(f"PhysicalSize{axis}"))
            sizes.append(value * unit if value and unit else None)
        mpp = _mpp_pair(sizes)
    objectives = [el for el, tag in local.items() if tag == "Objective"]
    power = _positive(objectives[0].get("NominalMagnification")) if objectives else None
    return mpp, power


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
