"""The dock's colour controls for a slide whose file carries an ICC profile: "Show in sRGB (ICC
profile)" (the layer shown converted to sRGB, or as stored) and the model's input colours (the
run's ``RunOptions.color``). The converting is ``slide/color.py``'s; this swaps the layer's
levels (and back) and keeps both controls in step with the layer they follow."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from typing import Any

import dask.array as da
from magicgui.widgets import CheckBox, ComboBox, Container

from ..options import AS_STORED, COLORS
from ..slide.color import as_srgb, srgb_transform
from .coarse_build import is_pending
from .slide_layer import META_ICC_KEY, SlideLayer, icc_profile_of

SRGB_TEXT = "Show in sRGB (ICC profile)"
NO_PROFILE_TIP = "This slide carries no ICC profile: it is shown as its file stores it."
MODEL_INPUT_TIP = ("The model's input: as the scanner stored it (what models learn from), or "
                   "converted to sRGB by the file's ICC profile.")


class ColorControls:
    """``srgb`` (CheckBox): checked, the followed layer shows its levels converted to sRGB
    (lazily, chunk by chunk); unchecked, the levels it had before. Enabled only for a layer
    whose file has a profile (and not while its zoomed-out views are built). ``model_input``
    (ComboBox of ``RunOptions.color``), shown only for such a layer. ``on_error`` gets a
    sentence when the profile cannot be used."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self.srgb = CheckBox(text=SRGB_TEXT, value=False, enabled=False, tooltip=NO_PROFILE_TIP)
        self.model_input = ComboBox(label="input colours", choices=COLORS, value=AS_STORED,
                                    visible=False, tooltip=MODEL_INPUT_TIP)
        self.layer: Any = None
        self._on_error = on_error
        self._stored: weakref.WeakKeyDictionary[Any, tuple[list[Any], list[Any]]] = \
            weakref.WeakKeyDictionary()  # layer -> (its levels as stored, its levels in sRGB)
        self._following = False
        self.srgb.changed.connect(self._on_toggled)

    def row(self, *before: Any) -> Container:
        """The widgets ``before`` and the sRGB box side by side, without margins."""
        row = Container(layout="horizontal", labels=False, widgets=[*before, self.srgb])
        row.margins = (0, 0, 0, 0)
        return row

    def follow(self, layer: Any) -> None:
        """Follow ``layer`` (None: no layer): the box says whether it shows sRGB."""
        self.layer = layer
        profile = None if layer is None else icc_profile_of(layer)
        self._following = True
        try:
            self.srgb.value = layer is not None and self.shows_srgb(layer)
        finally:
            self._following = False
        self.srgb.enabled = profile is not None and not is_pending(layer)
        self.model_input.visible = profile is not None
        self.srgb.tooltip = (NO_PROFILE_TIP if profile is None
                             else f"ICC profile: {layer.metadata.get(META_ICC_KEY)}")

    def model_color(self) -> str:
        """The run's ``RunOptions.color``: the choice for a slide with a profile, else as
        stored."""
        profile = None if self.layer is None else icc_profile_of(self.layer)
        return str(self.model_input.value) if profile is not None else AS_STORED

    def as_stored(self, slide: SlideLayer) -> SlideLayer:
        """``slide`` with its levels as stored, whichever colours its layer shows: what the
        dock's tissue estimate, its runs and exports read."""
        layer = slide.layer
        if not self.shows_srgb(layer):
            return slide
        return dataclasses.replace(slide, levels=self._stored[layer][0])

    def model_view(self, slide: SlideLayer) -> SlideLayer:
        """``slide`` (levels as stored) with the levels the model reads (:meth:`model_color`):
        the patch inspector shows a patch as the model sees it."""
        profile = icc_profile_of(slide.layer)
        if self.model_color() == AS_STORED or profile is None:
            return slide
        try:
            transform = srgb_transform(profile)
        except ValueError:  # the run will say so; the inspector shows the pixels as stored
            return slide
        return dataclasses.replace(
            slide, levels=[as_srgb(da.asarray(level), transform) for level in slide.levels])

    def shows_srgb(self, layer: Any) -> bool:
        """True while ``layer`` shows the levels this box converted."""
        entry = self._stored.get(layer)
        return entry is not None and all(a is b for a, b in zip(_levels(layer), entry[1]))

    def _on_toggled(self, checked: bool) -> None:
        layer = self.layer
        if self._following or layer is None:
            return
        if not checked:
            if self.shows_srgb(layer):
                stored = self._stored.pop(layer)[0]
                layer.data = stored if layer.multiscale else stored[0]
            return
        profile = icc_profile_of(layer)
        if profile is None or self.shows_srgb(layer):
            return
        try:
            transform = srgb_transform(profile)
        except ValueError as exc:
            self._on_error(f"Cannot show {layer.name} in sRGB: {exc}.")
            self.follow(layer)
            return
        stored = _levels(layer)
        converted = [as_srgb(da.asarray(level), transform) for level in stored]
        self._stored[layer] = (stored, converted)  # before the data event the dock follows
        layer.data = converted if layer.multiscale else converted[0]
        self.follow(layer)


def _levels(layer: Any) -> list[Any]:
    """The arrays of a layer's data: its levels, or its one array."""
    return list(layer.data) if layer.multiscale else [layer.data]
