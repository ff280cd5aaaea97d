"""Small widgets the dock's panels share: wrapped text labels, section titles, file paths."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

from magicgui.widgets import FileEdit, Label

TEXT_WRAP_CHARS = 56  # dock labels break their lines here (Qt's word wrap sizes docks badly)


class TextLabel(Label):
    """A Label whose text is broken into lines of at most TEXT_WRAP_CHARS characters."""

    @property
    def value(self) -> str:
        return str(Label.value.fget(self))  # type: ignore[attr-defined]

    @value.setter
    def value(self, text: str) -> None:
        lines = str(text).splitlines() or [""]
        Label.value.fset(self, "\n".join(  # type: ignore[attr-defined]
            textwrap.fill(line, TEXT_WRAP_CHARS) or line for line in lines))


def path_of(edit: FileEdit) -> Path:
    """The path in a FileEdit of one path (mode "r", "w" or "d", not nullable): magicgui types
    its value for every mode (a tuple for "rm", None when nullable)."""
    value = edit.value
    assert isinstance(value, Path), value
    return value


def section(title: str) -> Label:
    """A bold section title for the dock."""
    return Label(value=f"<b>{title}</b>")


def run_all(steps: Iterable[Callable[[], object]]) -> None:
    """Call each of ``steps`` whatever the one before did (closing: Qt or the viewer may be
    gone, which raises RuntimeError, ValueError, KeyError or TypeError)."""
    for step in steps:
        try:
            step()
        except (RuntimeError, ValueError, KeyError, TypeError):
            pass
