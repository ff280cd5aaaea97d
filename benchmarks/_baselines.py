"""Per-patch baselines: what a user writes without napari-patchheat, fed to the same model.

Each baseline reads level 0 of a slide in its own way and yields batches of patches in
row-major grid order, for a VALID grid whose stride is its size: (a) OpenSlide's
``read_region`` per patch, (b) tifffile reading the whole level, cut by one
``tf.image.extract_patches`` call, (c) tiffslide's ``read_region`` per patch (skipped, with the
reason, where tiffslide is not installed: ``pip install tiffslide``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from napari_patchheat import PatchGrid

Batches = Callable[[Path, PatchGrid, int], Iterator[np.ndarray]]


def _corners(grid: PatchGrid) -> list[tuple[int, int]]:
    """(x, y) level-0 corner of each patch, row-major (a VALID grid on level 0)."""
    if grid.padding != "VALID" or grid.rate != (1, 1):
        raise ValueError("the per-patch baselines take VALID grids at rate 1 on level 0")
    return [(j * grid.stride[1], i * grid.stride[0])
            for i in range(grid.shape[0]) for j in range(grid.shape[1])]


def _per_patch(read: Callable[[tuple[int, int]], np.ndarray], grid: PatchGrid, batch: int
               ) -> Iterator[np.ndarray]:
    corners = _corners(grid)
    for start in range(0, len(corners), batch):
        yield np.stack([read(xy) for xy in corners[start:start + batch]])


def openslide_batches(path: Path, grid: PatchGrid, batch: int) -> Iterator[np.ndarray]:
    """(a) ``OpenSlide.read_region`` per patch (RGBA; the slide is opaque, so RGB is exact)."""
    import openslide

    size = (grid.size[1], grid.size[0])
    with openslide.OpenSlide(str(path)) as slide:
        yield from _per_patch(
            lambda xy: np.asarray(slide.read_region(xy, 0, size))[..., :3], grid, batch)


def tiffslide_batches(path: Path, grid: PatchGrid, batch: int) -> Iterator[np.ndarray]:
    """(c) ``TiffSlide.read_region`` per patch, as numpy."""
    import tiffslide

    size = (grid.size[1], grid.size[0])
    with tiffslide.TiffSlide(str(path)) as slide:
        yield from _per_patch(
            lambda xy: slide.read_region(xy, 0, size, as_array=True)[..., :3], grid, batch)


def tifffile_tf_batches(path: Path, grid: PatchGrid, batch: int) -> Iterator[np.ndarray]:
    """(b) tifffile reads the whole level; one ``tf.image.extract_patches`` call cuts it."""
    import tensorflow as tf
    import tifffile

    level = tifffile.imread(path, level=0)
    (k, kw), (s, sw) = grid.size, grid.stride
    cut = tf.image.extract_patches(level[None], [1, k, kw, 1], [1, s, sw, 1], [1, 1, 1, 1],
                                   "VALID")
    patches = tf.reshape(cut, (-1, k, kw, level.shape[-1])).numpy()
    for start in range(0, len(patches), batch):
        yield patches[start:start + batch]


def baselines() -> tuple[dict[str, Batches], dict[str, str]]:
    """The baselines that can run here, and why each other one cannot."""
    found: dict[str, Batches] = {"OpenSlide per patch": openslide_batches,
                                 "tifffile whole level + extract_patches": tifffile_tf_batches}
    skipped = {}
    try:
        import tiffslide  # noqa: F401
    except ImportError as exc:
        skipped["tiffslide per patch"] = f"{exc}: pip install tiffslide"
    else:
        found["tiffslide per patch"] = tiffslide_batches
    return found, skipped


def predict_all(model: object, batches: Iterator[np.ndarray]) -> np.ndarray:
    """``model.predict`` on each batch: (patches, classes), row-major."""
    return np.concatenate([model.predict(b) for b in batches])  # type: ignore[attr-defined]
