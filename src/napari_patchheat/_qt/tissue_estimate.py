"""The status line's tissue estimate: "41% tissue, 65,541 to run" for the dock's grid.

It counts what the run will compute: the per-patch tissue fraction
(:func:`~napari_patchheat.tissue.grid_tissue_fraction`) of the mask the run reads, from the same
pyramid (:func:`tissue_source`). The mask is read on a worker thread; values are kept per slide
layer and its data (:class:`~napari_patchheat._qt.slide_layer.LayerCache`).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..grid import PatchGrid
from ..tissue import choose_mask_level, grid_tissue_fraction, is_fluorescence, tissue_level_mask
from .coarse_build import is_pending
from .hover import HeatmapCell
from .slide_layer import LayerCache, SlideLayer
from .threads import Workers

# a layer without a file: its coarser levels are computed from the whole level the run reads, so
# no estimate past this many pixels there (a lazy 100k x 100k array: 10^10 px to compute)
TISSUE_ESTIMATE_MAX_COMPUTED_PX = 2**14 * 2**14
TISSUE_STATUS_MAX_PATCHES = 4_000_000  # above this the status line skips the tissue estimate
TISSUE_FRACTIONS_KEPT = 4  # per-patch fractions kept per layer: the grids tried last
_PENDING, _MISSING = "pending", "missing"


def tissue_source(slide: SlideLayer, level: int) -> tuple[SimpleNamespace, int] | None:
    """The pyramid a run of ``level`` reads its tissue from and the level's index in it.

    The slide's own levels when it has a file. Else the run gets that one level as a TIFF and
    :func:`~napari_patchheat.slide.open_slide` adds 2x coarser levels to it: the same pyramid,
    built lazily here (dask), whose every coarser level is computed from the whole level; None
    (no estimate) when that level has more than TISSUE_ESTIMATE_MAX_COMPUTED_PX pixels. Anything
    with ``.levels`` and ``.downsamples`` is what
    :func:`~napari_patchheat.tissue.patch_tissue_fraction` takes.
    """
    if slide.path is not None:
        return SimpleNamespace(levels=list(slide.levels),
                               downsamples=list(slide.downsamples)), level
    import dask.array as da

    from ..slide import CHUNK_TARGET_PX, rgb_pyramid

    image = slide.levels[level]
    if image.shape[0] * image.shape[1] > TISSUE_ESTIMATE_MAX_COMPUTED_PX:
        return None
    if not isinstance(image, da.Array):  # name=False: no hashing of the pixels
        image = da.from_array(image, chunks=(CHUNK_TARGET_PX, CHUNK_TARGET_PX) + image.shape[2:],
                              name=False)
    levels, downsamples = rgb_pyramid([image if image.ndim == 3 else image[..., None]])
    return SimpleNamespace(levels=levels, downsamples=downsamples), 0


def _origin(slide: SlideLayer, level: int) -> Any:
    """What an estimate of ``level`` was read from, for its cache key: the file, else the
    layer's level (a layer without a file gets a pyramid of its own per level)."""
    return "file" if slide.path is not None else ("level", level)


class TissueEstimate:
    """Per-patch tissue fractions of a slide layer's grid, as the run computes them.

    ``fraction(...)`` answers at once: the fractions, or None while the mask is read or the
    grid's fractions computed (it starts both on ``workers``) or where there is no estimate;
    ``on_ready()`` runs on the GUI thread once either is done.
    """

    def __init__(self, cache: LayerCache, workers: Workers, on_ready: Callable[[], None]):
        self.cache, self.workers, self.on_ready = cache, workers, on_ready

    def _source(self, slide: SlideLayer, level: int) -> tuple[Any, int] | None:
        """:func:`tissue_source` of ``level``, built once per layer and data: each parameter
        change asks for it, and the dask pyramid of a large array takes hundreds of ms to build."""
        source = self.cache.get(slide.layer, ("source", level), _MISSING)
        if isinstance(source, str):
            source = tissue_source(slide, level)
            self.cache.set(slide.layer, ("source", level), source)
        return source

    def _entries(self, slide: SlideLayer, level: int, grid: PatchGrid
                 ) -> tuple[Any, tuple[Any, ...], Any, tuple[Any, ...], Any]:
        """(tissue source, mask key, the mask's entry, fractions key, the fractions' entry) of
        ``grid`` on ``level``; an entry is _MISSING, _PENDING, None (none: failed or no
        estimate) or the value."""
        found = self._source(slide, level)
        if found is None:  # no estimate for this layer's level
            return None, (), None, (), None
        source, source_level = found
        mask_level = choose_mask_level(source, grid, source.downsamples[source_level])
        mask_key = ("mask", _origin(slide, level), mask_level)
        fraction_key = ("fraction", mask_key, grid, source.downsamples[source_level])
        return (source, mask_key, self.cache.get(slide.layer, mask_key, _MISSING), fraction_key,
                self.cache.get(slide.layer, fraction_key, _MISSING))

    def ready(self, slide: SlideLayer, level: int, grid: PatchGrid) -> bool:
        """True once the estimate of ``grid`` is known (or known to be skipped)."""
        if grid.n_patches > TISSUE_STATUS_MAX_PATCHES:
            return True
        if is_pending(slide.layer):
            return False
        _, _, mask, _, fraction = self._entries(slide, level, grid)
        if isinstance(mask, str):
            return False
        return mask is None or not isinstance(fraction, str)  # None: no estimate for the slide

    def fraction(self, slide: SlideLayer, level: int, grid: PatchGrid) -> np.ndarray | None:
        """Per-patch tissue fraction of ``grid`` on ``level``; None until known (see class), and
        while the layer's zoomed-out views are blank (being built)."""
        if grid.n_patches > TISSUE_STATUS_MAX_PATCHES or is_pending(slide.layer):
            return None
        source, mask_key, mask, fraction_key, fraction = self._entries(slide, level, grid)
        if isinstance(mask, str) and mask == _MISSING:
            self._compute(slide.layer, mask_key, tissue_level_mask, source, mask_key[-1])
            return None
        if not isinstance(mask, tuple):  # pending, or no estimate for this slide
            return None
        if isinstance(fraction, str):  # pending, or to compute: off the GUI thread too (a
            if fraction == _MISSING:  # 10^6-patch grid takes ~0.3 s)
                self._keep_fractions(slide.layer, fraction_key)
                self._compute(slide.layer, fraction_key, grid_tissue_fraction, mask[0], mask[1],
                              grid, fraction_key[-1])
            return None
        return fraction

    def below_threshold(self, slide: SlideLayer | None, cell: HeatmapCell) -> bool:
        """Whether a run at the tissue threshold of ``cell``'s heatmap skips the cell: its
        tissue fraction on ``slide`` below the threshold; False while not known, without a
        threshold, or for a heatmap whose grid is not of ``slide``'s level."""
        heatmap, row, col = cell.heatmap, cell.row, cell.col
        threshold = float(heatmap.extra.get("tissue_threshold") or 0.0)
        if slide is None or threshold <= 0 or heatmap.level >= len(slide.levels) \
                or slide.level_shape(heatmap.level) != (heatmap.grid.height, heatmap.grid.width):
            return False
        fraction = self.fraction(slide, heatmap.level, heatmap.grid)
        return fraction is not None and bool(fraction[row, col] < threshold)

    def _keep_fractions(self, layer: Any, fraction_key: tuple[Any, ...]) -> None:
        """Remember ``fraction_key`` among the last TISSUE_FRACTIONS_KEPT of ``layer``; forget
        the values of older ones (each is as large as its grid)."""
        keys = self.cache.get(layer, "fraction keys") or []
        keys = [k for k in keys if k != fraction_key] + [fraction_key]
        for old in keys[:-TISSUE_FRACTIONS_KEPT]:
            self.cache.set(layer, old, _MISSING)
        self.cache.set(layer, "fraction keys", keys[-TISSUE_FRACTIONS_KEPT:])

    def fluorescence(self, slide: SlideLayer, level: int) -> bool | None:
        """Whether what a run of ``level`` reads looks like fluorescence (a dark background:
        :func:`~napari_patchheat.tissue.is_fluorescence`); None until known (read off the GUI
        thread, then ``on_ready()``)."""
        if is_pending(slide.layer):
            return None
        found = self._source(slide, level)
        if found is None:
            return None
        key = ("fluorescence", _origin(slide, level))
        value = self.cache.get(slide.layer, key, _MISSING)
        if isinstance(value, str):
            if value == _MISSING:
                self._compute(slide.layer, key, is_fluorescence, found[0])
            return None
        return value

    def _compute(self, layer: Any, key: tuple[Any, ...], func: Callable[..., Any],
                 *args: Any) -> None:
        """``func(*args)`` on a worker thread, its result stored for ``layer``'s data under
        ``key`` (None if it failed), then ``on_ready()``."""
        self.cache.set(layer, key, _PENDING)
        data = layer.data

        def store(result: Any) -> None:
            if layer.data is data:  # else the layer's pixels were replaced meanwhile
                self.cache.set(layer, key, result)
            self.on_ready()

        self.workers.start(func, *args, returned=store, errored=lambda exc: store(None))
