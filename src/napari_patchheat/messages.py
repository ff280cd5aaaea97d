"""Errors as the one line a user reads: an exception's first line of text. Standard library
only, imported by every layer that turns another library's error into our sentence."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s text, else its type's name (an error without text)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
