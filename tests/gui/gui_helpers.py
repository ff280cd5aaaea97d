"""Helpers the GUI tests share (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPoint, Qt

from napari_patchheat._qt.canvas import camera
from napari_patchheat._qt.slide_layer import SlideLayer
from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap

RUN_TIMEOUT_MS = 180_000


def text(label) -> str:
    """A label's text on one line (labels break long lines)."""
    return " ".join(label.value.split())


def random_heatmap(slide: SlideLayer, level: int, size: int, stride: int, classes=("a", "b"),
                   padding="SAME", seed=0, model="toy") -> Heatmap:
    """A heatmap of random values over ``slide``'s level; its first row's first 3 cells NaN."""
    h, w = slide.level_shape(level)
    grid = PatchGrid(h, w, size, stride, padding=padding)
    values = np.random.default_rng(seed).random((*grid.shape, len(classes))).astype(np.float32)
    values[0, :3] = np.nan  # not computed: transparent
    return Heatmap(values, grid, level, slide.downsamples[level], classes, mpp=slide.mpp,
                   model_name=model, model_fingerprint=f"{model}-fp")


def click(viewer, qtbot, world_yx) -> None:
    """A left click on the canvas at a world point."""
    canvas = viewer.window._qt_viewer.canvas.native
    cam = camera(viewer)
    y = (world_yx[0] - cam.center[-2]) * cam.zoom + canvas.height() / 2
    x = (world_yx[1] - cam.center[-1]) * cam.zoom + canvas.width() / 2
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(round(x), round(y)))
