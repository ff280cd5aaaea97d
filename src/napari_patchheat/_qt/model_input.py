"""The dock's "Model input" section: a control per RunOptions field of that section.

The controls are built from the fields' metadata (options.py: ``kind``, ``choices``, ``help``,
``section``), so a field added to the section (stain normalisation, test-time augmentation, ...)
appears here without code of its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from magicgui.types import FileDialogMode
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox

from ..options import MODEL_INPUT, RunOptions
from .widgets import path_of

INT_MAX = 10_000  # the largest value an int field's spin box offers
CARD = "model card's"  # a field whose default is None: as the model card says (test_time.py)
SWITCH = {CARD: None, "on": True, "off": False}  # a None-default switch's choices
TARGET_FILTER = "*.png *.jpg *.jpeg *.tif *.tiff *.svs *.ndpi"  # what a path field offers first


def section_fields(title: str = MODEL_INPUT) -> list[dataclasses.Field[Any]]:
    """The RunOptions fields the dock shows in section ``title``, in declaration order."""
    return [f for f in dataclasses.fields(RunOptions) if f.metadata.get("section") == title]


def _label(f: dataclasses.Field[Any]) -> str:
    return f.name.replace("_", " ")


def _control(f: dataclasses.Field[Any]) -> Any:
    """The control of field ``f``, at its default, its help as the tooltip. A field whose
    default is None (the model card's) offers that as its first choice (an int field: 0)."""
    kind, tip, label = f.metadata["kind"], f.metadata["help"], _label(f)
    default: Any = f.default  # every RunOptions field has one
    card = default is None and kind != "path"
    if kind == "choice":
        choices = [CARD, *f.metadata["choices"]] if card else list(f.metadata["choices"])
        return ComboBox(label=label, choices=choices, value=CARD if card else default,
                        tooltip=tip)
    if kind == "switch" and card:
        return ComboBox(label=label, choices=list(SWITCH), value=CARD, tooltip=tip)
    if kind == "switch":
        return CheckBox(text=label, value=bool(default), tooltip=tip)
    if kind == "int":
        box = SpinBox(label=label, min=0, max=INT_MAX, value=0 if card else int(default),
                      tooltip=tip)
        if card:
            box.native.setSpecialValueText(CARD)  # 0 shows as "model card's"
        return box
    if kind == "float":
        return FloatSpinBox(label=label, value=float(default), tooltip=tip)
    if kind == "path":
        return FileEdit(label=label, mode=FileDialogMode.EXISTING_FILE, filter=TARGET_FILTER,
                        tooltip=tip)
    raise ValueError(f"RunOptions field {f.name} of kind {kind!r} has no dock control.")


class ModelInputPanel(Container):
    """The "Model input" controls; :meth:`run_fields` gives their RunOptions fields."""

    def __init__(self) -> None:
        self.fields = section_fields()
        self.controls = {f.name: _control(f) for f in self.fields}
        super().__init__(widgets=list(self.controls.values()))

    def run_fields(self) -> dict[str, Any]:
        """``{field: value}`` of the controls (an empty path and the model card's choice are
        None)."""
        out: dict[str, Any] = {}
        for f in self.fields:
            control = self.controls[f.name]
            value: Any
            if isinstance(control, FileEdit):
                value = path_of(control) if str(control.value) not in ("", ".") else None
            elif f.default is None and f.metadata["kind"] == "switch":
                value = SWITCH[control.value]
            elif f.default is None and control.value in (CARD, 0):
                value = None
            else:
                value = control.value
            out[f.name] = value
        return out
