"""What you look at, first (_qt/view_focus.py): a real run on the CMU SVS computes the patches in
view first, a pan during the run moves the next patches into the new view, and "this view" mode
computes only the view, then extends to where the user pans. TensorFlow runs in the worker only."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import RUN_TIMEOUT_MS, text

from napari_patchheat._qt.canvas import camera, canvas_size
from napari_patchheat._qt.run_panel import RunPanel
from napari_patchheat._qt.view_focus import RUN_MODES, VIEW_SEND_MS, level_view
from napari_patchheat._qt.widget import MODEL_FILE_CHOICE
from napari_patchheat.focus import VIEW_ONLY, view_patches
from napari_patchheat.grid import READ_BLOCK_PX
from napari_patchheat.inference import Progress
from napari_patchheat.runner import Finished

SLACK_S = 1.0  # of the run's time after a pan before the new view's patches: the blocks read
# ahead (about 0.1 s each: they grow for a model this fast), the batches on their way to napari


@pytest.fixture
def svs_run(viewer, widget, tmp_path, svs_path):
    """The CMU SVS in the dock, 'tissue' model, 32 px patches every 16 px, batches of 4 (25,208
    patches, seconds of batches), every patch (no tissue threshold), a fresh cache."""
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "tissue"
    widget.tissue_threshold.value = 0.0
    widget.size.value, widget.stride.value, widget.batch_size.value = 32, 16, 4
    widget.batch_auto.value = False
    assert widget.grid.shape == (184, 137)
    return widget


def move(viewer, widget, y: float, x: float, px_across: float = 400) -> None:
    """Centre the canvas on level-0 pixel (y, x), ``px_across`` level-0 pixels wide."""
    slide = widget.slide
    cam = camera(viewer)
    cam.center = tuple(slide.to_world(np.array([y, x])))
    cam.zoom = canvas_size(viewer)[1] / (px_across * float(slide.world_per_px[1]))


def look_at(viewer, widget, y: float, x: float) -> tuple[range, range]:
    """:func:`move` there; the patch rows and columns in view."""
    move(viewer, widget, y, x)
    return view_patches(widget.grid, level_view(viewer, widget.run_request()))


def in_view(indices: np.ndarray, view: tuple[range, range]) -> np.ndarray:
    rows, cols = view
    return ((indices[:, 0] >= rows.start) & (indices[:, 0] < rows.stop)
            & (indices[:, 1] >= cols.start) & (indices[:, 1] < cols.stop))


def reading_position(grid, view: tuple[range, range]) -> int:
    """How many patches a run in reading order computes until the view's last one."""
    position, last = 0, 0
    for rows, cols in grid.blocks(READ_BLOCK_PX):
        for r in rows:
            for c in cols:
                position += 1
                if r in view[0] and c in view[1]:
                    last = position
    return last


def test_a_pan_during_a_run_moves_the_next_patches_into_the_new_view(viewer, svs_run, qtbot,
                                                                     monkeypatch):
    widget, panel = svs_run, svs_run.run_panel
    order: list[np.ndarray] = []  # each batch's indices, in the order the run computed them
    rates: list[float] = []
    handle = RunPanel.handle_messages

    def record(self, messages):
        batches = [m for m in messages if isinstance(m, Progress)]
        order.extend(m.indices for m in batches)
        rates.extend(m.patches_per_s for m in batches)
        handle(self, messages)

    monkeypatch.setattr(RunPanel, "handle_messages", record)
    first = look_at(viewer, widget, 2500, 1900)  # the bottom right: read last in reading order
    n_first = len(first[0]) * len(first[1])
    assert panel.run()
    qtbot.waitUntil(lambda: sum(map(len, order)) >= n_first, timeout=RUN_TIMEOUT_MS)
    done = np.concatenate(order)
    assert in_view(done[:n_first], first).all()  # the view first, patch for patch
    second = look_at(viewer, widget, 2600, 300)  # pan to the bottom left
    sent = level_view(viewer, widget.run_request())
    qtbot.waitUntil(lambda: panel.view.sent == sent, timeout=5_000)  # at most VIEW_SEND_MS
    mark = sum(map(len, order))
    n_second = len(second[0]) * len(second[1])
    slack = max(1_000, int(SLACK_S * rates[-1]))
    assert reading_position(widget.grid, second) > mark + n_second + 2 * slack
    qtbot.waitUntil(lambda: in_view(np.concatenate(order), second).sum() >= n_second
                    or not panel.running, timeout=RUN_TIMEOUT_MS)
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.running, timeout=RUN_TIMEOUT_MS)
    done = np.concatenate(order)
    hits = np.flatnonzero(in_view(done, second))
    assert len(hits) == n_second and len(np.unique(done, axis=0)) == len(done)
    assert hits[-1] < mark + n_second + slack  # the new view came next
    assert panel.view.sent is not None and text(panel.info).startswith("cancelled")


def test_this_view_computes_the_view_only_then_extends_as_the_user_pans(viewer, svs_run, qtbot,
                                                                         errors):
    widget, panel = svs_run, svs_run.run_panel
    panel.view.mode.value = next(k for k, v in RUN_MODES.items() if v == VIEW_ONLY)
    first = look_at(viewer, widget, 1200, 800)
    expected = np.zeros(widget.grid.shape, bool)
    expected[first[0].start:first[0].stop, first[1].start:first[1].stop] = True
    assert panel.run()
    qtbot.waitUntil(lambda: not panel.running, timeout=RUN_TIMEOUT_MS)
    heatmap = widget.display.heatmap
    assert 0 < expected.sum() < widget.grid.n_patches
    assert (heatmap.computed == expected).all()  # only what is in view
    assert text(panel.info).startswith("this view done")
    second = look_at(viewer, widget, 2000, 1500)  # a pan runs the new view (the cache: the old)
    expected[second[0].start:second[0].stop, second[1].start:second[1].stop] = True
    qtbot.waitUntil(lambda: panel.running, timeout=5_000)
    qtbot.waitUntil(lambda: not panel.running, timeout=RUN_TIMEOUT_MS)
    computed = widget.display.heatmap.computed
    assert (computed == expected).all(), (  # the patches computed beyond or short of the views
        np.argwhere(computed & ~expected)[:3], np.argwhere(~computed & expected)[:3], second)
    assert widget.display.layer is not None and len(
        [layer for layer in viewer.layers if layer.name == widget.display.layer.name]) == 1
    widget.model.value = MODEL_FILE_CHOICE  # no file chosen: a pan's run cannot start
    move(viewer, widget, 600, 600)
    qtbot.wait(2 * VIEW_SEND_MS)
    move(viewer, widget, 900, 900)
    qtbot.wait(2 * VIEW_SEND_MS)
    assert len(errors) == 1 and "Choose a model" in errors[0]  # said once; pans stop following
    assert not panel.running and not panel.view.follow


def test_a_pan_that_reaches_this_view_run_after_its_end_runs_next_and_a_zoom_in_runs_nothing(
        viewer, svs_run, qtbot, monkeypatch):
    widget, panel = svs_run, svs_run.run_panel
    panel.view.mode.value = next(k for k, v in RUN_MODES.items() if v == VIEW_ONLY)
    first = look_at(viewer, widget, 1200, 800)
    panned: list[tuple[range, range]] = []
    handle = RunPanel.handle_messages

    def pan_before_the_end(self, messages):
        if not panned and any(isinstance(m, Finished) for m in messages):
            panned.append(look_at(viewer, widget, 2000, 1500))  # the run walked its view
            panel.view.send_now()  # as the camera's event does outside VIEW_SEND_MS
        handle(self, messages)

    monkeypatch.setattr(RunPanel, "handle_messages", pan_before_the_end)
    assert panel.run()
    qtbot.waitUntil(lambda: bool(panned), timeout=RUN_TIMEOUT_MS)
    qtbot.waitUntil(lambda: panel.running, timeout=5_000)  # the pan runs once the end arrives
    qtbot.waitUntil(lambda: not panel.running, timeout=RUN_TIMEOUT_MS)
    expected = np.zeros(widget.grid.shape, bool)
    for rows, cols in (first, panned[0]):
        expected[rows.start:rows.stop, cols.start:cols.stop] = True
    assert 0 < expected.sum() < widget.grid.n_patches
    assert (widget.display.heatmap.computed == expected).all()
    move(viewer, widget, 2000, 1500, px_across=200)  # a zoom in: no patch outside the view done
    qtbot.wait(2 * VIEW_SEND_MS)
    assert not panel.running and panel.view.follow
