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
