"""A slide arriving: our reader's turns the scale bar on; napari's own reader's gets a hint."""

from __future__ import annotations

import numpy as np
from skimage import io

from napari_patchheat._qt import slide_arrival
from napari_patchheat._qt.slide_arrival import OWN_READER_HINT, scale_bar


def test_our_reader_turns_the_scale_bar_on(viewer, widget, svs_path):
    scale_bar(viewer).visible = False
    [layer] = viewer.open(str(svs_path), plugin="napari-patchheat")  # not `patchheat open`
    assert layer.metadata["mpp"] is not None and scale_bar(viewer).visible


def test_an_array_or_a_heatmap_leaves_the_scale_bar_alone(viewer, widget):
    scale_bar(viewer).visible = False
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True, metadata={"mpp": (0.5, 0.5)})
    assert not scale_bar(viewer).visible


def test_napari_own_reader_gets_a_one_line_hint(viewer, widget, tmp_path, monkeypatch):
    notes: list[str] = []
    monkeypatch.setattr(slide_arrival, "show_info", notes.append)
    path = tmp_path / "slide.png"
    io.imsave(path, np.full((40, 60, 3), 200, np.uint8), check_contrast=False)
    [layer] = viewer.open(str(path), plugin="napari")  # napari's builtin reader
    assert notes == [OWN_READER_HINT.format(name=layer.name)]
    assert "File > Open with napari-patchheat" in notes[0] and "\n" not in notes[0]
    viewer.open(str(path), plugin="napari-patchheat")  # ours: no hint
    viewer.add_image(np.zeros((8, 8), np.uint8))  # an array: no file, no hint
    assert len(notes) == 1
