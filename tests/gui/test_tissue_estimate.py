"""The status line's tissue estimate: the count to run is exactly what the run computes."""

from __future__ import annotations

import numpy as np
import pytest
from gui_helpers import text


@pytest.mark.parametrize("with_file", [True, False])
def test_the_status_lines_count_to_run_is_the_runs(viewer, widget, qtbot, slide_writer,
                                                   real_pixels, tmp_path, with_file):
    """"N to run" is what the run computes: tissue.patch_tissue_fraction of the slide the run
    opens (the file, or the level written as a TIFF for a layer without one) >= threshold."""
    from napari_patchheat._reader import read_slides
    from napari_patchheat.runner import array_to_tiff
    from napari_patchheat.slide import open_slide
    from napari_patchheat.tissue import patch_tissue_fraction

    image = np.tile(real_pixels, (2, 1, 1))[:4500]  # big enough for a computed level (> 2048 px)
    path, levels = slide_writer("s.ome.tif", image, layout="subifds", levels=2, mpp=0.5)
    if with_file:
        data, kwargs, _ = read_slides(str(path))[0]
        viewer.add_image(data, **kwargs)
    else:
        viewer.add_image(levels, rgb=True, multiscale=True, name="s")
    threshold = 0.5
    for level, size in [(0, 64), (1, 48), (1, 8)]:
        widget.level.value = level
        widget.size.value = widget.stride.value = size
        widget.tissue_threshold.value = threshold
        qtbot.waitUntil(lambda: widget.tissue_ready and "to run" in text(widget.status),
                        timeout=60_000)
        if with_file:
            run_slide, run_level = open_slide(path), level
        else:
            (tmp_path / f"{level}-{size}").mkdir()
            run_slide = open_slide(array_to_tiff(levels[level], tmp_path / f"{level}-{size}"))
            run_level = 0
        want = int((patch_tissue_fraction(run_slide, widget.grid, run_level) >= threshold).sum())
        run_slide.close()
        assert 0 < want < widget.grid.n_patches
        assert f", {want:,} to run" in text(widget.status), (level, size, text(widget.status))


def test_the_status_lines_tissue_share_does_not_follow_the_threshold(viewer, widget, qtbot,
                                                                     svs_path):
    """"x% tissue" counts the patches at least TISSUE_SHOWN_FRACTION tissue whatever the
    threshold; "N to run" counts those at the threshold (the run's patch_tissue_fraction)."""
    from napari_patchheat._reader import read_slides
    from napari_patchheat.slide import open_slide
    from napari_patchheat.tissue import TISSUE_SHOWN_FRACTION, patch_tissue_fraction

    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    widget.level.value = 0
    widget.size.value = widget.stride.value = 64
    with open_slide(svs_path) as slide:
        fraction = patch_tissue_fraction(slide, widget.grid, 0)
    thresholds = [0.0, 0.1, 0.5, 0.9]
    at = {t: fraction >= (t if t > 0 else TISSUE_SHOWN_FRACTION) for t in thresholds}
    assert len({f"{keep.mean():.0%}" for keep in at.values()}) == 3  # the shares differ
    shown = f", {at[0.5].mean():.0%} tissue"
    for t in thresholds:
        widget.tissue_threshold.value = t
        qtbot.waitUntil(lambda: widget.tissue_ready and " tissue" in text(widget.status),
                        timeout=60_000)
        line = text(widget.status)
        assert shown in line, (t, line)
        assert (f", {int(at[t].sum()):,} to run" in line) == (t > 0), (t, line)


def test_a_builtin_model_on_a_fluorescence_slide_is_warned_of(viewer, widget, qtbot, ndpi_path,
                                                             svs_path):
    from napari_patchheat._reader import read_slides
    from napari_patchheat.tissue import FLUORESCENCE_MODEL_WARNING

    for path, warns in ((ndpi_path, True), (svs_path, False)):
        data, kwargs, _ = read_slides(str(path))[0]
        widget.image_layer.value = viewer.add_image(data, **kwargs)
        widget.model.value = "hematoxylin"
        widget.size.value = widget.stride.value = 512
        qtbot.waitUntil(lambda: widget.tissue.fluorescence(widget.slide, 0) is not None,
                        timeout=60_000)
        widget.model.value = "dab"  # the warning names the model
        status = text(widget.status)
        assert (FLUORESCENCE_MODEL_WARNING.format(model="dab") in " ".join(status.split())) \
            == warns, status
        assert ("channels: DAPI 2 (387)" in status) == warns  # the NDPI names its filter


def test_the_per_patch_fractions_are_computed_off_the_gui_thread(viewer, widget, qtbot,
                                                                 svs_path, monkeypatch):
    """A 10^6-patch grid's fractions take ~0.3 s: a parameter change must not wait for them
    (the status line shows the grid at once, its tissue share once computed)."""
    import threading

    from napari_patchheat._qt import tissue_estimate
    from napari_patchheat._reader import read_slides

    threads, compute = [], tissue_estimate.grid_tissue_fraction

    def watched(*args):  # the real computation, its thread noted
        threads.append(threading.current_thread())
        return compute(*args)

    monkeypatch.setattr(tissue_estimate, "grid_tissue_fraction", watched)
    data, kwargs, _ = read_slides(str(svs_path))[0]
    viewer.add_image(data, **kwargs)
    widget.level.value, widget.tissue_threshold.value = 0, 0.5
    for size in (64, 32, 64):
        widget.size.value = widget.stride.value = size
        line = text(widget.status)
        assert line.startswith(f"{widget.grid.rows} x {widget.grid.cols} = ")
        qtbot.waitUntil(lambda: widget.tissue_ready and "to run" in text(widget.status),
                        timeout=60_000)
    assert len(threads) >= 2 and threading.main_thread() not in threads


def test_no_estimate_is_computed_from_a_huge_level_without_a_file(viewer, widget, qtbot):
    """A layer without a file gets its coarser levels computed from the whole level the run
    reads: past TISSUE_ESTIMATE_MAX_COMPUTED_PX the dock estimates nothing and reads nothing of
    it (a lazy 100k x 100k array kept two background threads busy for minutes); below, it
    estimates from that level."""
    import threading

    import dask.array as da

    from napari_patchheat._qt.tissue_estimate import TISSUE_ESTIMATE_MAX_COMPUTED_PX

    reads: dict[int, int] = {}
    lock = threading.Lock()

    def pixels(block, level):  # a tissue-pink level, its block reads counted
        with lock:
            reads[level] = reads.get(level, 0) + 1
        return np.broadcast_to(np.array([200, 120, 190], np.uint8), block.shape[:2] + (3,))

    side = 20_480
    assert side * side > TISSUE_ESTIMATE_MAX_COMPUTED_PX >= (side // 4) ** 2
    levels = []
    for level in range(5):
        n = side >> level
        shape = da.zeros((n, n, 1), np.uint8, chunks=(1024, 1024, 1))
        levels.append(da.map_blocks(pixels, shape, level, dtype=np.uint8,
                                    chunks=shape.chunks[:2] + ((3,),)))
    viewer.add_image(levels, rgb=True, multiscale=True, contrast_limits=(0, 255), name="lazy")
    widget.size.value = widget.stride.value = 256
    for level, estimated in ((0, False), (2, True)):
        reads.clear()
        widget.level.value = level
        qtbot.waitUntil(lambda: widget.tissue_ready and widget.workers.idle, timeout=60_000)
        qtbot.wait(300)
        qtbot.waitUntil(lambda: widget.workers.idle, timeout=60_000)
        assert ("tissue" in text(widget.status)) == estimated, (level, text(widget.status))
        assert (widget.tissue.fluorescence(widget.slide, level) is None) != estimated
        assert (reads.get(level, 0) > 0) == estimated, (level, reads)
