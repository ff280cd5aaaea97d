"""bench_widget part 6: what you look at, first (`bench_widget.py --parts 6`).

On a 100,000 x 100,000 px slide (bench_widget's tiled pyramidal TIFF, read from disk) with a CNN
(MobileNetV2, random weights, 224 px patches at level 0: 446 x 446 patches), the dock's run:
seconds from Run to the viewport's patches computed and shown, and from a pan to the new view's,
against the target (the view's patches / the model's rate + 1 s, the rate measured in this run)
and against today's reading order (a run without a view, in this session: its own rate measured,
the fill times of the same views extrapolated from where reading order reaches them). The values
of a view both runs computed are checked bit for bit.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

VIEW_PX_ACROSS = 2_000  # level-0 px across the canvas (~9 x 7 patches of 224 px)
VIEWS = {"Run, the slide's centre": (50_000, 50_000), "pan far (70k, 30k)": (70_000, 30_000),
         "pan to the top left": (1_000, 1_000)}
RATE_S = 10.0  # seconds of run after the first view, to measure the run's rate
BASELINE_S = 25.0  # seconds of reading-order run (its rate, and the top left's values)
FILL_TIMEOUT_S = 600.0


def look_at(viewer, widget, y: float, x: float) -> tuple[range, range]:
    """Centre the canvas on level-0 pixel (y, x), VIEW_PX_ACROSS wide; the patches in view."""
    from napari_patchheat._qt.canvas import camera, canvas_size
    from napari_patchheat._qt.view_focus import level_view
    from napari_patchheat.focus import view_patches

    slide, cam = widget.slide, camera(viewer)
    cam.center = tuple(slide.to_world(np.array([y, x])))
    cam.zoom = canvas_size(viewer)[1] / (VIEW_PX_ACROSS * float(slide.world_per_px[1]))
    return view_patches(widget.grid, level_view(viewer, widget.run_request()))


def computed(widget) -> np.ndarray:
    """(rows, cols) bool: the active run's patches with values on screen (NaN: none yet)."""
    run = widget.run_panel.active
    if run is None or run.heatmap is None:
        return np.zeros(widget.grid.shape, bool)
    return np.isfinite(run.heatmap.values[..., 0])


def wait_filled(app, widget, view: tuple[range, range], t0: float, settle) -> float:
    """Seconds from ``t0`` until every patch of ``view`` has its value on screen."""
    rows, cols = view
    while time.perf_counter() - t0 < FILL_TIMEOUT_S:
        if computed(widget)[rows.start:rows.stop, cols.start:cols.stop].all():
            return time.perf_counter() - t0
        settle(app, 0.005)
    raise TimeoutError("the view was not filled in time")


def reading_position(grid, view: tuple[range, range]) -> int:
    """Patches a run in reading order computes until the last one of ``view``."""
    from napari_patchheat.grid import READ_BLOCK_PX

    position = last = 0
    for rows, cols in grid.blocks(READ_BLOCK_PX):
        inside_r = [r for r in rows if r in view[0]]
        inside_c = [c for c in cols if c in view[1]]
        if inside_r and inside_c:
            row, col = inside_r[-1] - rows.start, inside_c[-1] - cols.start  # row-major
            last = position + row * len(cols) + col + 1
        position += len(rows) * len(cols)
    return last


def stop_run(app, widget, settle) -> None:
    widget.run_panel.cancel()
    while widget.run_panel.running:
        settle(app, 0.02)


def view_first(viewer, widget, app, settle, cache: str) -> tuple[dict, float, np.ndarray]:
    """The dock's run, view first: for each view of VIEWS its patches (rows, cols), the seconds
    to it filled and when it was asked for (s after Run); the run's rate (p/s); its values at
    the end."""
    widget.cache_dir = cache
    fills, rate, start = {}, 0.0, 0.0
    for k, (name, (y, x)) in enumerate(VIEWS.items()):
        if k == 0:
            view = look_at(viewer, widget, y, x)
            t0 = start = time.perf_counter()
            assert widget.run_panel.run(), widget.status.value
        else:  # the camera's events send the view to the run (the first at once)
            t0 = time.perf_counter()
            view = look_at(viewer, widget, y, x)
        fills[name] = (view, wait_filled(app, widget, view, t0, settle), t0 - start)
        print(f"    {name}: {len(view[0]) * len(view[1])} patches filled in "
              f"{fills[name][1]:.1f} s")
        if k == 0:  # the run's rate, while it goes on around the view
            n0, t1 = computed(widget).sum(), time.perf_counter()
            settle(app, RATE_S)
            rate = (computed(widget).sum() - n0) / (time.perf_counter() - t1)
    values = np.array(widget.run_panel.active.heatmap.values)
    stop_run(app, widget, settle)
    return fills, rate, values


def reading_order(viewer, widget, app, settle, cache: str) -> tuple[float, float, np.ndarray]:
    """Today's run (no view sent: reading order) for BASELINE_S: seconds to its first cells,
    its rate (p/s) after them, its values."""
    widget.run_panel.view.stop()  # the dock as it was: no camera watch, no view mode
    widget.cache_dir = cache
    t0 = time.perf_counter()
    assert widget.run_panel.run(), widget.status.value
    while not computed(widget).any():
        settle(app, 0.005)
    first, n0 = time.perf_counter() - t0, computed(widget).sum()
    t1 = time.perf_counter()
    settle(app, BASELINE_S)
    rate = (computed(widget).sum() - n0) / (time.perf_counter() - t1)
    values = np.array(widget.run_panel.active.heatmap.values)
    stop_run(app, widget, settle)
    return first, rate, values


def part_view(viewer, widget, app) -> None:
    """[6] Run -> viewport filled and pan -> new view filled, view first against reading order."""
    from bench_widget import (
        SLIDE_PX,
        drop_run_layer,
        mobilenet_file,
        settle,
        tiled_pyramid_file,
    )

    from napari_patchheat._reader import read_slides

    print(f"\n[6] what you look at, first: {SLIDE_PX:,} px slide (tiled TIFF, JPEG), MobileNetV2 "
          f"(random weights), 224 px patches, level 0, a view {VIEW_PX_ACROSS:,} level-0 px wide")
    data, kwargs, _ = read_slides(str(tiled_pyramid_file(SLIDE_PX)))[0]
    widget.image_layer.value = viewer.add_image(data, **{**kwargs, "name": "100k file"})
    widget.level.value = 0
    widget.tissue_threshold.value = 0.0
    widget.size.value = widget.stride.value = 224
    widget.batch_auto.value, widget.batch_size.value = False, 32
    with tempfile.TemporaryDirectory() as tmp:
        widget.model.value = "Keras file…"
        widget.model_file.value = mobilenet_file(Path(tmp))
        print(f"    grid {widget.grid.rows} x {widget.grid.cols} = {widget.grid.n_patches:,} "
              "patches; warm-up (the model loaded and compiled in the worker)")
        look_at(viewer, widget, 10_000, 10_000)
        widget.cache_dir = f"{tmp}/warm"
        widget.run_panel.run()
        while not computed(widget).any():
            settle(app, 0.05)
        stop_run(app, widget, settle)
        drop_run_layer(viewer, widget)
        fills, rate, ours = view_first(viewer, widget, app, settle, f"{tmp}/first")
        drop_run_layer(viewer, widget)  # the baseline's run in a layer of its own
        first, base_rate, base = reading_order(viewer, widget, app, settle, f"{tmp}/base")
        drop_run_layer(viewer, widget)
    both = np.isfinite(ours[..., 0]) & np.isfinite(base[..., 0])
    same = np.array_equal(ours[both], base[both])
    print(f"    the run's rate: view first {rate:.1f} patches/s, reading order {base_rate:.1f} "
          f"(first cells after {first:.1f} s)")
    print(f"    {'':<26} {'patches':>8} {'view first':>11} {'target':>8} {'reading order':>15}")
    for name, (view, seconds, asked) in fills.items():
        n = len(view[0]) * len(view[1])  # reading order: from Run to the view filled, less
        # the time since Run when the view was asked for (0: it was done already)
        base_s = max(0.0, first + reading_position(widget.grid, view) / base_rate - asked)
        print(f"    {name:<26} {n:>8} {seconds:>9.1f} s {n / rate + 1:>6.1f} s "
              f"{base_s:>13,.0f} s  (reading order / view first: {base_s / seconds:,.0f}x)")
    view, seconds, _ = fills[next(iter(VIEWS))]
    print(f"summary: viewport filled {seconds:.1f} s after Run (target "
          f"{len(view[0]) * len(view[1]) / rate + 1:.1f} s); values of the {both.sum()} patches "
          f"both runs computed bit-identical: {same}")
