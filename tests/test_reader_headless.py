"""The npe2 reader run headless (a script, no Qt application): it reads the slide and starts no
model worker (the dock's warm-up is for a napari with a dock, _qt/warmup.py)."""

from __future__ import annotations

import numpy as np

from napari_patchheat import runner
from napari_patchheat._reader import napari_get_reader


def test_reading_a_slide_without_a_qt_application_starts_no_worker(svs_path):
    from qtpy.QtWidgets import QApplication

    assert QApplication.instance() is None  # the core tests' process: no Qt application
    [(levels, kwargs, kind)] = napari_get_reader(str(svs_path))(str(svs_path))
    assert kind == "image" and kwargs["multiscale"]
    assert levels[0].shape[:2] == (2967, 2220)
    assert float(np.asarray(levels[-1]).std()) > 0  # real pixels, not a blank level
    assert runner.current_worker() is None
