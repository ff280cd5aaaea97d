"""The dock's "Run on all open slides": a real batch on a local cluster of worker processes
(TensorFlow in those only, never in this one); each heatmap opens over its slide."""

from __future__ import annotations

import numpy as np
from gui_helpers import text

from napari_patchheat.heatmap import HEATMAP_META_KEY, Heatmap
from napari_patchheat.manifest import Manifest

BATCH_TIMEOUT_MS = 240_000


def test_run_on_all_open_slides_opens_each_heatmap_over_its_slide(viewer, widget, qtbot,
                                                                    tmp_path, svs_path,
                                                                    ihc_png_path, errors):
    from napari_patchheat._qt.widget import BATCH_SECTION
    from napari_patchheat._reader import read_slides

    section = widget.collapsibles[BATCH_SECTION]
    viewer.add_image(np.zeros((300, 300), np.uint8), name="no file")  # left out of the batch
    assert section.isHidden()  # nothing to batch: the section is not there
    for path in (svs_path, ihc_png_path):
        data, kwargs, _ = read_slides(str(path))[0]
        viewer.add_image(data, **kwargs)
    assert not section.isHidden()
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "dab"
    widget.size.value, widget.stride.value = 64, 64
    panel = widget.batch_panel
    panel.out.value = tmp_path / "out"
    assert set(panel.open_slides()) == {str(svs_path.resolve()), str(ihc_png_path.resolve())}
    try:
        assert panel.run()
        assert not panel.run_button.enabled and not panel.run()  # one batch at a time
        qtbot.waitUntil(lambda: panel.dashboard.visible, timeout=BATCH_TIMEOUT_MS)
        link = panel._clients[""].dashboard_link  # the local cluster's (bokeh: test extra)
        assert link.startswith("http://127.0.0.1:") and panel.dashboard.native.openExternalLinks()
        assert panel.dashboard.value == f'<a href="{link}">dask dashboard</a>: {link}'
        qtbot.waitUntil(lambda: not panel.running, timeout=BATCH_TIMEOUT_MS)
    finally:
        panel.shutdown()
    assert errors == ["PatchHeat: A batch is in progress: wait for it to finish."]
    manifest = Manifest.read(tmp_path / "out")
    assert [r.status for r in manifest.rows] == ["ok", "ok"]
    assert "2 slides: 2 ok, 0 failed" in text(panel.info) and panel.progress.value == 2
    for row in manifest.rows:
        saved = Heatmap.load_npz(row.outputs["npz"])
        layers = [layer for layer in viewer.layers if HEATMAP_META_KEY in layer.metadata
                  and layer.metadata[HEATMAP_META_KEY].slide_path == row.slide]
        assert len(layers) == 1
        shown = layers[0].metadata[HEATMAP_META_KEY]
        np.testing.assert_array_equal(shown.values, saved.values)
        assert np.nanstd(saved.values) > 0.01 and saved.n_computed > 0
        slide = next(s for s in panel.slide_layers.values() if str(s.path.resolve()) == row.slide)
        scale, translate = saved.placement(slide.world_per_px)
        np.testing.assert_allclose(layers[0].scale, scale)
        np.testing.assert_allclose(layers[0].translate, np.add(translate, slide.world_offset))


def test_cancel_leaves_the_unfinished_slides_pending(viewer, widget, qtbot, tmp_path, svs_path):
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    widget.cache_dir = str(tmp_path / "cache")
    widget.model.value = "dab"
    widget.size.value, widget.stride.value = 8, 2  # 1.6M patches: seconds of work
    widget.tissue_threshold.value = 0.0
    panel = widget.batch_panel
    panel.out.value = tmp_path / "out"
    assert not panel.cancel_button.enabled
    try:
        assert panel.run() and panel.cancel_button.enabled
        qtbot.waitUntil(lambda: "/ " in text(panel.info) and not text(panel.info).startswith(
            "CMU-1-Small-Region.svs: 0 /"), timeout=BATCH_TIMEOUT_MS)  # computing
        panel.cancel_button.native.click()
        assert not panel.cancel_button.enabled and "cancelling" in text(panel.info)
        qtbot.waitUntil(lambda: not panel.running, timeout=BATCH_TIMEOUT_MS)
    finally:
        panel.shutdown()
    assert [r.status for r in Manifest.read(tmp_path / "out").rows] == ["pending"]
    assert "1 pending" in text(panel.info) and "cancelled" in text(panel.info)
    assert panel.run_button.enabled and not panel.cancel_button.enabled
