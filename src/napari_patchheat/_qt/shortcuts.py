"""The dock's keyboard shortcuts, bound on the viewer through napari's own keymap
(``viewer.bind_key``): Run, Cancel, show/hide the heatmap in use, show/hide the grid, the next
and previous heatmap, open/close the patch inspector (whose Alt+arrows step the patch,
inspector.py). A key napari already uses (its shortcut settings, the viewer's and every layer
type's keymap) or that another plugin bound is left alone; the dock unbinds its keys on close."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari import layers
from napari.settings import get_settings
from napari.utils.key_bindings import KeyBinding, coerce_keybinding

from .slide_layer import is_heatmap_layer

# action -> (napari key, what it does): Shift + a letter napari 0.9 leaves free
SHORTCUTS: dict[str, tuple[str, str]] = {
    "run": ("Shift-R", "Run"),
    "cancel": ("Shift-C", "Cancel the run"),
    "heatmap": ("Shift-H", "show/hide the heatmap in use"),
    "grid": ("Shift-G", "show/hide the patch grid"),
    "next": ("Shift-N", "next heatmap"),
    "previous": ("Shift-B", "previous heatmap"),
    "inspector": ("Shift-I", "open/close the patch inspector"),
}
LAYER_TYPES = (layers.Image, layers.Labels, layers.Shapes, layers.Points, layers.Surface,
               layers.Tracks, layers.Vectors)


def key_text(action: str) -> str:
    """The key of ``action`` as people read it, e.g. 'Shift+R'."""
    return str(coerce_keybinding(SHORTCUTS[action][0]))


def napari_keys(viewer: Any) -> set[KeyBinding]:
    """Every key napari binds: its shortcut settings (app-model actions), the viewer's keymaps
    and each layer type's class keymap."""
    keys = {k for bindings in get_settings().shortcuts.shortcuts.values() for k in bindings}
    keys |= {coerce_keybinding(k) for k in viewer.class_keymap}
    for kind in LAYER_TYPES:
        keys |= {coerce_keybinding(k) for k in kind.class_keymap}
    return keys


class Shortcuts:
    """Binds ``actions`` (name -> callable of no argument, names from SHORTCUTS) on
    ``viewer``; ``bound`` holds the keys it took, ``remove()`` gives them back."""

    def __init__(self, viewer: Any, actions: dict[str, Callable[[], object]]):
        self.viewer = viewer
        self.bound: dict[str, Callable[[Any], None]] = {}
        taken = napari_keys(viewer)
        for action, run in actions.items():
            key = SHORTCUTS[action][0]
            if coerce_keybinding(key) in taken:
                continue

            def handler(_viewer: Any, run: Callable[[], object] = run) -> None:
                run()

            try:
                viewer.bind_key(key, handler, overwrite=False)
            except ValueError:  # another plugin (or the user) bound it: theirs stays
                continue
            self.bound[action] = handler

    def remove(self) -> None:
        """Unbind the keys bound here (those still bound to our handlers)."""
        for action, handler in self.bound.items():
            key = coerce_keybinding(SHORTCUTS[action][0])
            if self.viewer.keymap.get(key) is handler:
                self.viewer.bind_key(key, None)
        self.bound = {}

    def tooltip(self, *actions: str) -> str:
        """'Shift+R: Run' lines for those of ``actions`` that are bound."""
        return "\n".join(f"{key_text(a)}: {SHORTCUTS[a][1]}" for a in actions if a in self.bound)


def step_heatmap(viewer: Any, current: Any, step: int) -> None:
    """Make the heatmap layer ``step`` places after ``current`` (in the layer list, wrapping
    round) the active layer, so the dock uses it; nothing without heatmap layers."""
    heatmaps = [layer for layer in viewer.layers if is_heatmap_layer(layer)]
    if not heatmaps:
        return
    at = heatmaps.index(current) if current in heatmaps else (-1 if step > 0 else 0)
    viewer.layers.selection.active = heatmaps[(at + step) % len(heatmaps)]


def dock_shortcuts(dock: Any, display_box: Any, inspector_box: Any) -> Shortcuts:
    """The dock's shortcuts on its viewer, named in the tooltips of what they press;
    ``display_box`` and ``inspector_box`` are its Display and Patch inspector sections."""
    display, run_panel, viewer = dock.display, dock.run_panel, dock.viewer

    def toggle_heatmap() -> None:
        if display.layer is not None and display.layer in viewer.layers:
            display.layer.visible = not display.layer.visible

    def toggle_inspector() -> None:
        if inspector_box.isExpanded():
            inspector_box.collapse(animate=False)
        else:
            inspector_box.expand(animate=False)
            dock.scroll.ensureWidgetVisible(inspector_box)

    keys = Shortcuts(viewer, {
        "run": run_panel.run, "cancel": run_panel.cancel, "heatmap": toggle_heatmap,
        "grid": lambda: setattr(dock.show_grid, "value", not dock.show_grid.value),
        "next": lambda: step_heatmap(viewer, display.layer, 1),
        "previous": lambda: step_heatmap(viewer, display.layer, -1),
        "inspector": toggle_inspector})
    for widget, actions in ((run_panel.run_button, ("run",)),
                            (run_panel.cancel_button, ("cancel",)),
                            (dock.show_grid, ("grid",))):
        widget.tooltip = "\n".join(filter(None, [widget.tooltip, keys.tooltip(*actions)]))
    display_box.setToolTip(keys.tooltip("heatmap", "next", "previous"))
    inspector_box.setToolTip(
        keys.tooltip("inspector") + "\nAlt+arrows: the next patch")
    return keys
