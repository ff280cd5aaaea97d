"""bench_widget part 4: the display controls of a 10^6-cell heatmap (1000 x 1000 cells over the
100k slide): the value range moved, "show at or above" typed, each timed as the control's
handler (the layer updated: contrast limits and colormap) and to the canvas painted, against the
baselines of the same threshold set the way it was before the colour table swap (napari's
colormap change alone: vispy rebuilds and relinks the shaders), of putting the values into the
layer again (what a display made by changing the data would cost at least) and a bare repaint
(software OpenGL under Xvfb paints the 100k slide's tiles too). Target: <= 50 ms each."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

CELLS_SIDE = 1000  # 10^6 cells


def heatmap_layer(viewer, widget):
    """A 1000 x 1000-cell heatmap of random values over the slide layer, in use in the dock."""
    from napari_patchheat._qt.slide_layer import SlideLayer
    from napari_patchheat.grid import PatchGrid
    from napari_patchheat.heatmap import Heatmap

    slide = SlideLayer.from_layer(viewer.layers["100k"])
    h, w = slide.level_shape(0)
    patch = h // CELLS_SIDE
    grid = PatchGrid(h, w, patch, patch, padding="VALID")
    values = np.random.default_rng(0).random((*grid.shape, 1)).astype(np.float32)
    heatmap = Heatmap(values, grid, 0, (1.0, 1.0), ("tumour",), model_name="bench")
    return widget.display.show_heatmap(heatmap, slide)


def part_display(viewer, widget, app, reps: int, timed: Callable) -> None:
    """[4] value range and threshold changes on a 10^6-cell heatmap: ms of the control's
    handler (the layer updated) and to the canvas painted, against a bare repaint."""
    layer = heatmap_layer(viewer, widget)
    controls = widget.display.values
    canvas = viewer.window._qt_viewer.canvas.native
    print(f"\n[4] display controls on a {layer.data.shape[0]} x {layer.data.shape[1]} = "
          f"{layer.data.size:,}-cell heatmap, ms (median, max of {reps}): the control's "
          f"handler, and from the change to the canvas painted")
    data = layer.data

    def change(name: str, call: Callable[[int], None]) -> tuple[list[float], list[float]]:
        handler: list[float] = []

        def timed_call(k: int) -> None:
            t0 = time.perf_counter()
            call(k)
            handler.append((time.perf_counter() - t0) * 1e3)

        painted = [timed(app, lambda k=k: timed_call(k)) for k in range(reps)]
        return handler, painted

    def move_range(k: int) -> None:
        controls.value_range.value = (0.05 * (k % 4), 1.0 - 0.05 * (k % 3))

    from napari_patchheat._qt.display_settings import show_values

    rows = {"value range": change("range", move_range),
            "show at or above": change("threshold", lambda k: setattr(
                controls.threshold, "value", f"{0.3 + 0.02 * (k % 10):g}")),
            "value range, threshold set": change("range", move_range),  # colormap rebuilt too
            "baseline: shaders rebuilt": change("threshold", lambda k: show_values(
                layer, "inferno", tuple(layer.contrast_limits), 0.5 + 0.02 * (k % 10))),
            "baseline: values set again": change("data", lambda k: setattr(
                layer, "data", data))}  # napari uploads them again
    assert widget.display.layer is layer and layer.data is data  # the values themselves
    bare = [timed(app, canvas.update) for _ in range(reps)]  # a repaint, nothing changed
    for name, (handler, painted) in rows.items():
        print(f"    {name:<28} handler {statistics.median(handler):5.1f} ms, max "
              f"{max(handler):5.1f}; painted {statistics.median(painted):6.1f} ms, max "
              f"{max(painted):6.1f}")
    print(f"    {'bare repaint (nothing changed)':<28} {statistics.median(bare):6.1f} ms, max "
          f"{max(bare):6.1f}")
    worst = max(max(h) for name, (h, _) in rows.items() if not name.startswith("baseline"))
    print(f"summary: display controls on 10^6 cells: slowest handler {worst:.1f} ms (target 50), "
          f"the values never copied; painted {statistics.median(rows['value range'][1]):.1f} ms, "
          f"threshold {statistics.median(rows['show at or above'][1]):.1f} ms (with the shaders "
          f"rebuilt {statistics.median(rows['baseline: shaders rebuilt'][1]):.1f} ms) "
          f"median where a bare repaint takes {statistics.median(bare):.1f} ms; setting the "
          f"values again: handler {statistics.median(rows['baseline: values set again'][0]):.1f} "
          f"ms")
