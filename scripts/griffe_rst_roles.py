"""A griffe extension for the docs site (mkdocs.yml's mkdocstrings options): the Sphinx roles of
the docstrings (:class:`~napari_patchheat.slide.Slide`, :func:`open_slide`) become Markdown code
spans (`Slide`, `open_slide`), as Sphinx would show them; the source is left as it is."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|data|meth|attr|mod|exc|obj):`(~?)([^`]+)`")


def _code_span(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite each object's docstring as griffe loads it, before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code_span, obj.docstring.value)
