"""Screenshots of the PatchHeat widget for docs/usage.md, made the way a user works.

Opens napari with the IHC sample (File > Open Sample > napari-patchheat), docks the widget from
the Plugins menu, runs the built-in 'dab' model, selects a patch, and saves:
  docs/images/widget_heatmap_ihc.png    the window: heatmap over the slide, grid, parameters
  docs/images/widget_inspector_ihc.png  the same, the dock scrolled down: display, export, inspector
  docs/images/grid_preview_ihc.png      the canvas zoomed in: dilated SAME patches (rate 2)
Runs under Xvfb when there is no display. TensorFlow runs in the widget's worker process only.
Run: `.venv/bin/python scripts/make_screenshots.py [--out docs/images]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

WINDOW_PX = (1500, 980)  # width, height
RUN_TIMEOUT_S = 300


def settle(app, seconds: float) -> None:
    """Process Qt events for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "docs" / "images")
    args = ap.parse_args()
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1920, 1200), color_depth=24)
        display.start()
    import napari
    from qtpy.QtWidgets import QApplication, QScrollArea

    from napari_patchheat._qt.canvas import camera

    viewer = napari.Viewer(title="napari-patchheat", show=True)
    viewer.window._qt_window.resize(*WINDOW_PX)
    app = QApplication.instance()
    viewer.open_sample("napari-patchheat", "ihc")
    _, widget = viewer.window.add_plugin_dock_widget("napari-patchheat", "PatchHeat")
    settle(app, 0.5)
    with tempfile.TemporaryDirectory() as cache:
        widget.cache_dir = cache
        widget.model.value = "dab"
        widget.size.value, widget.stride.value = 32, 32
        widget.tissue_threshold.value = 0.2
        widget.display.colormap.value = "inferno"
        widget.display.opacity.value = 0.65
        if not widget.run_panel.run():
            print(f"could not start the run: {widget.status.value}", file=sys.stderr)
            return 1
        end = time.monotonic() + RUN_TIMEOUT_S
        while widget.run_panel.running and time.monotonic() < end:
            settle(app, 0.1)
        if widget.display.heatmap is None or widget.display.heatmap.n_computed == 0:
            print(f"the run did not finish: {widget.run_panel.info.value}", file=sys.stderr)
            return 1
        viewer.reset_view()
        widget.inspector.select(5, 9)
        widget.preview.update_now()
        settle(app, 1.0)  # sections that opened have scrolled into view by now
        scroll = widget.native.findChild(QScrollArea).verticalScrollBar()
        scroll.setValue(0)  # the dock's top: the grid and model parameters
        settle(app, 0.5)
        args.out.mkdir(parents=True, exist_ok=True)
        window = args.out / "widget_heatmap_ihc.png"
        viewer.screenshot(str(window), canvas_only=False, flash=False)
        scroll.setValue(scroll.maximum())  # the dock's lower half: display, export, inspector
        settle(app, 0.5)
        lower = args.out / "widget_inspector_ihc.png"
        viewer.screenshot(str(lower), canvas_only=False, flash=False)

        # the grid preview close up: SAME padding, rate 2 (each patch spans 2 * 32 - 1 px)
        widget.display.layer.visible = False
        widget.size.value, widget.stride.value, widget.rate.value = 32, 48, 2
        widget.padding.value = "SAME"
        cam = camera(viewer)
        cam.center, cam.zoom = (75.0, 90.0), 3.0
        widget.inspector.select(0, 1)
        widget.preview.update_now()
        settle(app, 1.0)
        preview = args.out / "grid_preview_ihc.png"
        viewer.screenshot(str(preview), canvas_only=True, flash=False)
    viewer.close()
    if display is not None:
        display.stop()
    print(f"wrote {window}, {lower} and {preview}")
    return 0


if __name__ == "__main__":  # the run's worker is a spawned process: guard the main module
    sys.exit(main())
