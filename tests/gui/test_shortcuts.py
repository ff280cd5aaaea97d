"""The dock's keys, through napari's own key handling (Qt key presses on the canvas): Run,
Cancel, show/hide the heatmap in use and the grid, next/previous heatmap, the inspector; none of
napari's keys taken, all named in tooltips, all given back when the dock closes."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import random_heatmap, text
from napari.settings import get_settings
from napari.utils.key_bindings import coerce_keybinding
from qtpy.QtCore import Qt

from napari_patchheat._qt.shortcuts import SHORTCUTS, Shortcuts, key_text, napari_keys
from napari_patchheat._qt.slide_layer import SlideLayer
from napari_patchheat._qt.widget import INSPECTOR_SECTION

SHIFT = Qt.KeyboardModifier.ShiftModifier


@pytest.fixture
def before(viewer):
    """The viewer's keymap before the dock opened (a fixture: it runs before ``widget``)."""
    return dict(viewer.keymap)


def press(viewer, qtbot, action: str) -> None:
    """Shift + the action's letter, pressed on napari's canvas."""
    letter = SHORTCUTS[action][0].split("-")[1]
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, getattr(Qt.Key, f"Key_{letter}"), SHIFT)


def test_the_keys_are_bound_and_none_of_napari_s_is_taken(viewer, before, widget):
    keys = {coerce_keybinding(key) for key, _ in SHORTCUTS.values()}
    assert len(keys) == len(SHORTCUTS) == 7
    assert set(widget.shortcuts.bound) == set(SHORTCUTS)
    assert keys <= set(viewer.keymap)
    assert not keys & napari_keys(viewer)  # napari's settings, viewer and layer keymaps
    defaults = {k for v in get_settings().shortcuts.shortcuts.values() for k in v}
    assert len(defaults) > 50 and not keys & defaults
    for key, func in before.items():  # napari's own (and earlier) bindings untouched
        assert viewer.keymap[key] is func
    assert "Shift+R" in widget.run_panel.run_button.tooltip == "Shift+R: Run"
    assert key_text("cancel") in widget.run_panel.cancel_button.tooltip
    assert "Shift+G" in widget.show_grid.tooltip
    assert "Shift+I" in widget.collapsibles[INSPECTOR_SECTION].toolTip()
    # a key someone else holds stays theirs
    other = Shortcuts(viewer, {"run": lambda: None})
    assert other.bound == {} and viewer.keymap[coerce_keybinding("Shift-R")] is \
        widget.shortcuts.bound["run"]
    widget.shortcuts.remove()
    assert not keys & set(viewer.keymap) and widget.shortcuts.bound == {}


def test_run_and_cancel_by_key(viewer, widget, qtbot, errors):
    viewer.add_image(np.zeros((600, 700, 3), np.uint8), rgb=True, name="slide")
    widget.size.value = widget.stride.value = 50
    press(viewer, qtbot, "run")
    assert widget.run_panel.running
    press(viewer, qtbot, "run")
    assert "in progress" in errors[0]  # the key pressed Run
    press(viewer, qtbot, "cancel")
    qtbot.waitUntil(lambda: not widget.run_panel.running, timeout=30_000)
    assert "cancelled" in text(widget.run_panel.info)


def test_heatmap_grid_next_previous_and_inspector_by_key(viewer, widget, qtbot, svs_path):
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    svs = SlideLayer.from_layer(viewer.add_image(data, **kwargs))
    shown = [widget.display.show_heatmap(random_heatmap(svs, 0, 64, 64, classes=("a",),
                                                        seed=s, model=f"m{s}"), svs)
             for s in range(3)]
    assert len({id(layer) for layer in shown}) == 3 and widget.display.layer is shown[2]
    press(viewer, qtbot, "heatmap")
    assert not shown[2].visible
    press(viewer, qtbot, "heatmap")
    assert shown[2].visible
    grid = widget.show_grid.value
    press(viewer, qtbot, "grid")
    assert widget.show_grid.value is (not grid)
    press(viewer, qtbot, "next")  # wraps round to the first
    assert widget.display.layer is shown[0] and viewer.layers.selection.active is shown[0]
    press(viewer, qtbot, "previous")
    assert widget.display.layer is shown[2]
    press(viewer, qtbot, "previous")
    assert widget.display.layer is shown[1]
    box = widget.collapsibles[INSPECTOR_SECTION]
    assert not box.isExpanded()
    press(viewer, qtbot, "inspector")
    assert box.isExpanded()
    press(viewer, qtbot, "inspector")
    assert not box.isExpanded()
