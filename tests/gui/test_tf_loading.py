"""The run panel while the warm worker imports TensorFlow (in its own process, never this one):
a busy bar and "loading TensorFlow…"; Run pressed meanwhile says it waits, then runs."""

from __future__ import annotations

import numpy as np
from gui_helpers import RUN_TIMEOUT_MS, text

from napari_patchheat import runner
from napari_patchheat._qt.tf_loading import LOADING_TEXT, QUEUED_TEXT
from napari_patchheat.run_watch import worker_ready


def test_run_pressed_while_tensorflow_loads_says_so_and_starts_when_ready(viewer, widget, qtbot,
                                                                         tmp_path):
    runner.close_shared_worker()  # a fresh worker: TensorFlow not imported yet
    panel = widget.run_panel
    panel.loading.watch()
    assert not worker_ready()
    bar = panel.progress.native
    assert (bar.minimum(), bar.maximum()) == (0, 0)  # Qt's busy bar
    assert text(panel.info) == LOADING_TEXT and panel.loading.loading
    viewer.add_image(np.full((300, 400, 3), 200, np.uint8), rgb=True, name="slide")
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "tissue"
    widget.tissue_threshold.value = 0.0
    widget.size.value = widget.stride.value = 100
    panel.run_button.native.click()  # Run, early
    assert panel.running
    qtbot.waitUntil(lambda: worker_ready() or text(panel.info) == QUEUED_TEXT, timeout=10_000)
    assert text(panel.info) == QUEUED_TEXT, "TensorFlow loaded before the run was queued"
    assert bar.maximum() == 0
    qtbot.waitUntil(lambda: not panel.running, timeout=RUN_TIMEOUT_MS)
    assert text(panel.info).startswith("done: 12 patches"), text(panel.info)
    assert not panel.loading.loading and bar.maximum() == bar.value() == 12  # 3 x 4 patches
    assert widget.display.heatmap.n_computed == 12
