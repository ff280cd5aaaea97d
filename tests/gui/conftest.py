"""GUI test fixtures. These tests draw with napari under Xvfb (pytest-xvfb), so TensorFlow must
never enter this process (DESIGN.md): every test is checked for it on the way out."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication


@pytest.fixture(autouse=True)
def _no_tensorflow_in_the_napari_process() -> Any:
    assert "tensorflow" not in sys.modules, "TensorFlow was imported before this GUI test"
    yield
    assert "tensorflow" not in sys.modules, (
        "this GUI test imported TensorFlow into napari's process")


@pytest.fixture(autouse=True)
def _warm_worker_kept(request: Any, monkeypatch: Any) -> None:
    """A closing dock ends the warm worker (test_close.py checks it); the other tests keep it
    from one test to the next, as one napari session does, instead of each importing
    TensorFlow anew."""
    if request.module.__name__ != "test_close":
        monkeypatch.setattr("napari_patchheat._qt.run_panel.close_shared_worker", lambda: None)


@pytest.fixture
def viewer(make_napari_viewer: Any) -> Any:
    """A shown napari viewer (under Xvfb) of a fixed size: the canvas model knows its size."""
    v = make_napari_viewer(show=True)
    v.window._qt_window.resize(1200, 800)
    QApplication.processEvents()
    return v


@pytest.fixture
def widget(viewer: Any, qtbot: Any) -> Any:
    """The PatchHeat dock widget, docked in ``viewer``; its threads and run end with the test."""
    from napari_patchheat._qt.widget import PatchHeatWidget

    w = PatchHeatWidget(viewer)
    viewer.window.add_dock_widget(w, name="PatchHeat")
    yield w
    w.run_panel.shutdown()
    qtbot.waitUntil(lambda: w.workers.idle, timeout=30_000)


@pytest.fixture
def errors(monkeypatch: Any) -> list[str]:
    """The messages the widget sends to napari's error notifications."""
    shown: list[str] = []
    monkeypatch.setattr("napari_patchheat._qt.widget.show_error", shown.append)
    return shown


def _pyramid(level0: np.ndarray, factors: tuple[int, ...] = (4,)) -> list[np.ndarray]:
    return [level0] + [np.ascontiguousarray(level0[::f, ::f]) for f in factors]


@pytest.fixture
def pyramid() -> Any:
    """``pyramid(level0, factors)``: level 0 and every f-th pixel of it (shapes rounded up, so
    downsamples are level-0 size / level size, not exactly f: as in SVS files)."""
    return _pyramid
