"""Heatmap names: one rule for the dock's layers, the reader's and the CLI's file stems."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap, slide_stem


@pytest.mark.parametrize("name, stem", [
    ("CMU-1-Small-Region.svs", "CMU-1-Small-Region"), ("a.ome.tif", "a"), ("A.OME.TIFF", "A"),
    ("scan.2024.ndpi", "scan.2024"), ("ihc", "ihc"), ("notes.txt", "notes.txt"),
])
def test_slide_stem_drops_slide_extensions_only(name, stem):
    assert slide_stem(name) == stem


def heatmap(classes: tuple[str, ...]) -> Heatmap:
    grid = PatchGrid(64, 64, 32, 32)
    values = np.zeros((*grid.shape, len(classes)), np.float32)
    return Heatmap(values, grid, 0, (1.0, 1.0), classes, model_name="dab",
                   slide_path="/data/CMU-1.svs")


def test_layer_names_are_model_slide_class_and_run():
    one, two = heatmap(("dab_positive",)), heatmap(("normal", "tumour"))
    assert one.title() == "dab · CMU-1" and one.title("ihc x16.png") == "dab · ihc x16"
    assert one.layer_name() == "dab · CMU-1"  # one class: not repeated in the name
    assert two.layer_name("tumour") == "dab · CMU-1 · tumour"
    assert two.layer_name(0, title="dab · other", run=3) == "dab · other · normal (3)"
