"""Many slides in one viewer: each slide this plugin's reader opens goes beside the others.

A slide opened after another is moved to the right of every slide already open (their world
extents), tops aligned, with a gap of ``PLACEMENT_GAP_FRACTION`` of the widest one, by its
layer's ``translate`` (world units: µm where the slides know their pixel size, else px). The
dock's heatmaps, grid preview and regions follow it: they add the slide layer's translate
(:class:`~napari_patchheat._qt.slide_layer.SlideLayer`'s ``world_offset``). Layers added in
Python or by other readers keep the place they were given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .slide_layer import is_slide_candidate

PLACEMENT_GAP_FRACTION = 0.05  # the gap between two slides, of the widest slide's width
READER_META_KEYS = ("path", "downsamples")  # this plugin's reader's layers carry both


def is_reader_slide(layer: Any) -> bool:
    """True for a slide layer that this plugin's reader opened."""
    meta = getattr(layer, "metadata", None) or {}
    return is_slide_candidate(layer) and all(meta.get(k) is not None for k in READER_META_KEYS)


def place_beside_others(viewer: Any, layer: Any) -> bool:
    """Move ``layer`` (a slide from this plugin's reader) right of the other slides when it
    overlaps any of them; True when moved. Its extent's top aligns with the first slide's."""
    if not is_reader_slide(layer):
        return False
    others = [o for o in viewer.layers if o is not layer and is_slide_candidate(o)]
    if not others:
        return False
    extents = [np.asarray(o.extent.world, float)[:, -2:] for o in others]
    own = np.asarray(layer.extent.world, float)[:, -2:]
    if not any(np.all(own[0] < e[1]) and np.all(e[0] < own[1]) for e in extents):
        return False  # already apart (placed before, or by whoever added it)
    right = max(e[1][1] for e in extents)
    gap = PLACEMENT_GAP_FRACTION * max(e[1][1] - e[0][1] for e in extents + [own])
    translate = np.array(layer.translate, float)
    translate[-1] += right + gap - own[0][1]
    translate[-2] += extents[0][0][0] - own[0][0]
    layer.translate = translate
    return True


def follow_new_slides(viewer: Any) -> Any:
    """Place every slide layer inserted from now on beside the others; returns the callback
    (connected to ``viewer.layers.events.inserted``) to disconnect."""
    def _on_inserted(event: Any) -> None:
        if place_beside_others(viewer, event.value):
            viewer.reset_view()  # both slides in view: the new one does not lie unseen
    viewer.layers.events.inserted.connect(_on_inserted)
    return _on_inserted
