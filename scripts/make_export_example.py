"""Make docs/images/export_overlay_ihc.png: the PNG overlay export of a real-looking heatmap.

The "slide" is scikit-image's immunohistochemistry image (512 x 512, DAB + hematoxylin). The
heatmap is computed with numpy alone, no TensorFlow: for every patch of a VALID grid (size 32,
stride 16), the mean DAB optical density of the patch exactly as TensorFlow would sample it
(PatchGrid.read_patch), via skimage.color.rgb2hed. Background patches (bright, little
hematoxylin) are left NaN, so the overlay shows the slide unchanged there.

    .venv/bin/python scripts/make_export_example.py [OUT_DIR]

writes the PNG into docs/images/ and, with OUT_DIR, every export format into OUT_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from skimage import data
from skimage.color import rgb2hed

from napari_patchheat.export import export_heatmap, write_png_overlay
from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap

ROOT = Path(__file__).resolve().parents[1]
PNG_PATH = ROOT / "docs" / "images" / "export_overlay_ihc.png"
BACKGROUND_MIN_GREY = 0.85  # a patch brighter than this on average is background


def ihc_heatmap() -> tuple[Heatmap, np.ndarray]:
    """Heatmap of mean hematoxylin and DAB optical density per patch, and the RGB slide."""
    slide = data.immunohistochemistry()
    grid = PatchGrid(*slide.shape[:2], size=32, stride=16, padding="VALID")
    heatmap = Heatmap.empty(
        grid, ("hematoxylin", "DAB"), level=0, downsample=1.0, model_name="rgb2hed",
        slide_path="skimage.data.immunohistochemistry", slide_shape=slide.shape[:2],
    )
    for i in range(grid.rows):
        for j in range(grid.cols):
            patch = grid.read_patch(slide, i, j)
            if patch.mean() / 255 > BACKGROUND_MIN_GREY:
                continue
            hed = rgb2hed(patch)
            heatmap.update([[i, j]], [[hed[..., 0].mean(), hed[..., 2].mean()]])
    return heatmap, slide


def main(out_dir: str | None = None) -> None:
    heatmap, slide = ihc_heatmap()
    dab = heatmap.values[..., 1]
    value_range = (float(np.nanpercentile(dab, 2)), float(np.nanpercentile(dab, 98)))
    style = dict(class_name="DAB", colormap="inferno", opacity=0.6, value_range=value_range)
    PNG_PATH.parent.mkdir(parents=True, exist_ok=True)
    write_png_overlay(heatmap, PNG_PATH, slide, **style)
    n, total = heatmap.n_computed, heatmap.grid.n_patches
    print(f"wrote {PNG_PATH.relative_to(ROOT)} ({n} of {total} patches computed)")
    if out_dir:
        written = export_heatmap(heatmap, out_dir, "ihc", thumbnail=slide, **style)
        for fmt, path in written.items():
            print(f"{fmt:>12}: {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
