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
TARGET_FILTER = "*.png *.jpg *.jpeg *.tif *.tiff *.svs *.ndpi"  # what a path field offers first


def section_fields(title: str = MODEL_INPUT) -> list[dataclasses.Field[Any]]:
    """The RunOptions fields the dock shows in section ``title``, in declaration order."""
    return [f for f in dataclasses.fields(RunOptions) if f.metadata.get("section") == title]


def _label(f: dataclasses.Field[Any]) -> str:
    return f.name.replace("_", " ")


def _control(f: dataclasses.Field[Any]) -> Any:
    """The control of field ``f``, at its default, its help as the tooltip."""
    kind, tip = f.metadata["kind"], f.metadata["help"]
    default: Any = f.default  # every RunOptions field has one
    if kind == "choice":
        return ComboBox(label=_label(f), choices=list(f.metadata["choices"]), value=f.default,
                        tooltip=tip)
    if kind == "switch":
        return CheckBox(text=_label(f), value=bool(default), tooltip=tip)
    if kind == "int":
        return SpinBox(label=_label(f), min=0, max=INT_MAX, value=int(default), tooltip=tip)
    if kind == "float":
        return FloatSpinBox(label=_label(f), value=float(default), tooltip=tip)
    if kind == "path":
        return FileEdit(label=_label(f), mode=FileDialogMode.EXISTING_FILE, filter=TARGET_FILTER,
                        tooltip=tip)
    raise ValueError(f"RunOptions field {f.name} of kind {kind!r} has no dock control.")


class ModelInputPanel(Container):
    """The "Model input" controls; :meth:`run_fields` gives their RunOptions fields."""

    def __init__(self) -> None:
        self.fields = section_fields()
        self.controls = {f.name: _control(f) for f in self.fields}
        super().__init__(widgets=list(self.controls.values()))

    def run_fields(self) -> dict[str, Any]:
        """``{field: value}`` of the controls (an empty path is None)."""
        out: dict[str, Any] = {}
        for name, control in self.controls.items():
            if isinstance(control, FileEdit):
                out[name] = path_of(control) if str(control.value) not in ("", ".") else None
            else:
                out[name] = control.value
        return out
