"""Small widgets the dock's panels share: wrapped text labels and section titles."""

from __future__ import annotations

import textwrap

from magicgui.widgets import Label

TEXT_WRAP_CHARS = 56  # dock labels break their lines here (Qt's word wrap sizes docks badly)


class TextLabel(Label):
    """A Label whose text is broken into lines of at most TEXT_WRAP_CHARS characters."""

    @property  # type: ignore[override]
    def value(self) -> str:
        return str(Label.value.fget(self))  # type: ignore[attr-defined]

    @value.setter
    def value(self, text: str) -> None:
        lines = str(text).splitlines() or [""]
        Label.value.fset(self, "\n".join(  # type: ignore[attr-defined]
            textwrap.fill(line, TEXT_WRAP_CHARS) or line for line in lines))


def section(title: str) -> Label:
    """A bold section title for the dock."""
    return Label(value=f"<b>{title}</b>")
