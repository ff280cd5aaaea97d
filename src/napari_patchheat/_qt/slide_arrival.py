"""A slide layer arriving in the viewer: the scale bar turned on for one this plugin's reader
opened (its µm/px known), a one-line hint for a slide napari's own reader opened.

A reader cannot touch the viewer, so the dock does it when the layer is inserted. A layer is
this plugin's reader's by its metadata (the slide's ``identity`` and ``level_shapes``, see
``_reader.py``); another reader's slide file is one whose source path has a suffix this plugin
reads (``SLIDE_SUFFIXES``).
"""

from __future__ import annotations

from typing import Any

from napari.utils.notifications import show_info

from ..slide import SLIDE_SUFFIXES
from .slide_layer import is_slide_candidate

OWN_READER_HINT = ("{name}: opened by napari's own reader: File > Open with napari-patchheat "
                   "reads it lazily with its pyramid and µm scale")
READER_META_KEYS = ("identity", "level_shapes")  # what this plugin's reader puts in metadata


def scale_bar(viewer: Any) -> Any:
    """The viewer's scale bar overlay (napari >= 0.9 keeps it among the canvas overlays)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays.scale_bar if canvas is not None else viewer.scale_bar


def from_our_reader(layer: Any) -> bool:
    """True for a slide layer this plugin's reader opened."""
    meta = getattr(layer, "metadata", None) or {}
    return all(key in meta for key in READER_META_KEYS)


def read_better(layer: Any) -> bool:
    """True for a slide file another reader opened that this plugin reads (by its suffix)."""
    path = getattr(getattr(layer, "source", None), "path", None)
    if path is None or from_our_reader(layer) or not is_slide_candidate(layer):
        return False
    return str(path).lower().endswith(SLIDE_SUFFIXES)


class SlideArrival:
    """Watches ``viewer.layers`` for slides arriving (see the module)."""

    def __init__(self, viewer: Any):
        self.viewer = viewer
        viewer.layers.events.inserted.connect(self._on_inserted)

    def _on_inserted(self, event: Any) -> None:
        layer = event.value
        if from_our_reader(layer):
            if layer.metadata.get("mpp") is not None:  # µm known: the bar reads µm
                scale_bar(self.viewer).visible = True
        elif read_better(layer):
            show_info(OWN_READER_HINT.format(name=layer.name))

    def remove(self) -> None:
        """Stop watching."""
        self.viewer.layers.events.inserted.disconnect(self._on_inserted)
