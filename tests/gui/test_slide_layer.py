"""SlideLayer: a slide layer's pyramid, units and placement, from this plugin's reader or from a
plain array; LayerCache: values that follow a layer's data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication

from napari_patchheat._qt.slide_layer import LayerCache, SlideLayer, is_slide_candidate
from napari_patchheat._reader import read_slides
from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap

SHOT_PX_PER_LEVEL0_PX = 8  # screenshot zoom: screen px per level-0 px


def test_a_pyramid_without_metadata_gets_downsamples_from_its_shapes(viewer, pyramid):
    layer = viewer.add_image(pyramid(np.zeros((1001, 1403, 3), np.uint8), (4,)), rgb=True,
                             multiscale=True, scale=(0.25, 0.25), translate=(10, 20))
    slide = SlideLayer.from_layer(layer)
    assert slide.downsamples == [(1.0, 1.0), (1001 / 251, 1403 / 351)]
    assert slide.path is None and slide.mpp is None and slide.level_shape(1) == (251, 351)
    assert slide.world_per_px == (0.25, 0.25) and slide.world_offset == (10.0, 20.0)
    np.testing.assert_allclose(slide.to_level0(slide.to_world(np.array([3.0, 7.0]))), [3, 7])
    # pixel p covers [p - 0.5, p + 0.5): the box [0, 4) ends at world (4 - 0.5) * 0.25 + 20
    corners = slide.box_to_world(np.array([[0, 0, 4, 8]]))[0]
    np.testing.assert_allclose(corners[2], [(4 - 0.5) * 0.25 + 10, (8 - 0.5) * 0.25 + 20])


def test_the_readers_metadata_gives_path_mpp_and_levels(viewer, svs_path):
    data, kwargs, _ = read_slides(str(svs_path))[0]
    slide = SlideLayer.from_layer(viewer.add_image(data, **kwargs))
    assert slide.path == svs_path and slide.mpp == tuple(kwargs["metadata"]["mpp"])
    assert slide.downsamples == [tuple(d) for d in kwargs["metadata"]["downsamples"]]
    assert slide.level_label(0).startswith(
        f"0: {data[0].shape[0]:,} x {data[0].shape[1]:,} px (h x w)")


def test_a_dicom_folder_layer_has_the_folder_as_its_path(viewer, dicom_path):
    """So a run from the dock opens the folder in its worker, as the CLI does."""
    slide = open_in(viewer, dicom_path)
    assert slide.path == dicom_path and slide.mpp == (0.499, 0.499)
    assert slide.downsamples == [(2967 / h, 2220 / w) for h, w in [
        (2967, 2220), (1484, 1110), (742, 555), (371, 278), (186, 139)]]


def open_in(viewer, path) -> SlideLayer:
    data, kwargs, _ = read_slides(str(path))[0]
    return SlideLayer.from_layer(viewer.add_image(data, **kwargs))


def test_magnification_is_the_files_objective_power_over_the_downsample(viewer, odd_slide):
    """AppMag 40 at 0.2283 µm/px: 40x, 20x, 10x (not 43.8x from 10 µm / µm/px)."""
    slide = open_in(viewer, odd_slide[0])
    assert slide.downsamples == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    assert f"{10 / 0.2283:.3g}" == "43.8"  # what the µm/px rule would say
    assert [slide.level_label(k) for k in range(3)] == [
        "0: 2,601 x 4,099 px (h x w), 0.228 µm/px (40x)",
        "1: 1,300 x 2,049 px (h x w), 0.457 µm/px (20x)",
        "2: 650 x 1,024 px (h x w), 0.913 µm/px (10x)"]


@pytest.mark.parametrize("name, labels", [
    ("svs", ["0.499 µm/px (20x)", "0.998 µm/px (10x)"]),  # AppMag 20
    ("ndpi", ["0.228 µm/px (40x)", "0.456 µm/px (20x)", "0.913 µm/px (10x)",
              "1.83 µm/px (5x)"]),  # magnification tag 40; 10 µm / 0.228 would say 43.8x
])
def test_magnification_of_the_real_slides(viewer, svs_path, ndpi_path, name, labels):
    slide = open_in(viewer, svs_path if name == "svs" else ndpi_path)
    assert [slide.level_label(k).split("w), ")[1] for k in range(len(slide.levels))] == labels


def test_magnification_without_an_objective_power_comes_from_the_pixel_size(viewer, slide_writer,
                                                                             real_pixels):
    path, _ = slide_writer("p.ome.tif", real_pixels, layout="subifds", levels=2, mpp=0.25)
    slide = open_in(viewer, path)
    assert slide.layer.metadata["objective_power"] is None
    assert slide.level_label(0).endswith(", 0.25 µm/px (40x)")
    assert slide.level_label(1).endswith(f", {0.25 * 2967 / 1483:.3g} µm/px (20x)")


def test_magnification_without_a_pixel_size_is_the_objective_powers(viewer, slide_writer,
                                                                     real_pixels):
    path, _ = slide_writer("nompp.svs", real_pixels, layout="svs", levels=2)  # AppMag 40 only
    slide = open_in(viewer, path)
    assert slide.mpp is None
    assert slide.level_label(0) == "0: 2,967 x 2,220 px (h x w) (40x)"
    assert slide.level_label(1) == f"1: 1,483 x 1,110 px (h x w), 1/{2220 / 1110:.3g} (20x)"


def white_cells(slide: SlideLayer, level: int, size: int) -> tuple[PatchGrid, np.ndarray]:
    """A VALID grid of ``size`` = stride on ``level`` and its cells whose pixels are all white."""
    pixels = np.asarray(slide.levels[level])
    grid = PatchGrid(*pixels.shape[:2], size, size)
    white = (pixels[: grid.rows * size, : grid.cols * size] == 255).all(axis=-1)
    return grid, white.reshape(grid.rows, size, grid.cols, size).all(axis=(1, 3))


def add_heatmap(viewer, slide: SlideLayer, level: int, size: int) -> tuple[Any, np.ndarray]:
    """A heatmap layer over ``slide``: 1 on the white cells of ``level``, NaN elsewhere."""
    grid, white = white_cells(slide, level, size)
    values = np.where(white, 1.0, np.nan)[..., None]
    heatmap = Heatmap(values, grid, level, slide.downsamples[level], ("white",), mpp=slide.mpp)
    kwargs = heatmap.layer_kwargs(0, world_per_px=slide.mpp, colormap="gray", opacity=1.0)
    return viewer.add_image(kwargs.pop("data"), **kwargs), np.argwhere(white)


@pytest.mark.parametrize("level, size", [(1, 32), (2, 16)])
def test_a_heatmap_cell_on_a_computed_level_lands_on_its_level0_pixels(viewer, odd_slide, level,
                                                                        size):
    """Through napari's own transforms (``data_to_world``), the cell of a patch of a computed
    level spans exactly the level-0 pixels that patch averages, at the far edge too."""
    path, squares = odd_slide
    slide = open_in(viewer, path)
    layer, cells = add_heatmap(viewer, slide, level, size)
    assert len(cells) == len(squares)
    for (i, j), (y0, x0, y1, x1) in zip(cells, sorted(squares)):
        for cell_corner, pixel_corner in [((i - 0.5, j - 0.5), (y0 - 0.5, x0 - 0.5)),
                                          ((i + 0.5, j + 0.5), (y1 - 0.5, x1 - 0.5))]:
            np.testing.assert_allclose(layer.data_to_world(cell_corner),
                                       slide.layer.data_to_world(pixel_corner), atol=1e-9)


def bright_span(viewer, axis: int) -> tuple[float, float]:
    """World extent, along ``axis`` (0: y, 1: x), of the white run through the canvas centre."""
    shot = viewer.screenshot(canvas_only=True, flash=False)
    line = shot[:, shot.shape[1] // 2] if axis == 0 else shot[shot.shape[0] // 2]
    run = np.flatnonzero(line[:, :3].min(axis=1) > 200)
    zoom, centre = viewer.camera.zoom, viewer.camera.center[-2 + axis]
    return ((run[0] - len(line) / 2) / zoom + centre,
            (run[-1] + 1 - len(line) / 2) / zoom + centre)


def test_napari_draws_a_computed_level_within_one_of_its_pixels(viewer, odd_slide):
    """What holds on screen (docs/coordinates.md): at level 0 the heatmap cell and the white
    square it covers are drawn on the same screen pixels; napari draws level k's pixel u at its
    own factor, level-0 size / level size, so the square drawn from a computed level is off by
    u * (that - 2**k) level-0 px: under one pixel of that level, under a screen pixel at the
    zoom napari picks that level for."""
    path, squares = odd_slide
    slide = open_in(viewer, path)
    heat, _ = add_heatmap(viewer, slide, 1, 32)
    y0, x0, y1, x1 = squares[-1]  # the far one
    mpp = np.array(slide.mpp)
    viewer.camera.center = ((y0 + y1 - 1) / 2 * mpp[0], (x0 + x1 - 1) / 2 * mpp[1])
    viewer.camera.zoom = SHOT_PX_PER_LEVEL0_PX / mpp[0]
    screen_px = 1 / SHOT_PX_PER_LEVEL0_PX  # in level-0 px
    exact = np.array([[y0 - 0.5, y1 - 0.5], [x0 - 0.5, x1 - 0.5]])

    def drawn(layer) -> np.ndarray:  # (axis, start/end) level-0 px of the white run
        for other in viewer.layers:
            other.visible = other is layer
        QApplication.processEvents()
        return np.array([bright_span(viewer, a) for a in (0, 1)]) / mpp[:, None]

    np.testing.assert_allclose(drawn(heat), exact, atol=1.5 * screen_px)
    for level in (0, 1, 2):
        slide.layer.locked_data_level = level
        factor = slide.layer.downsample_factors[level]  # napari's: level-0 size / level size
        assert slide.layer.data_level == level
        u = np.array([y0, x0]) / slide.downsamples[level]  # the square's first level pixel
        napari_offset = u * (factor - slide.downsamples[level])
        got = drawn(slide.layer)
        np.testing.assert_allclose(got, exact + napari_offset[:, None], atol=1.5 * screen_px)
        assert (napari_offset < slide.downsamples[level]).all()
        assert level == 0 or napari_offset.max() > 0.9  # the test can see a drawn offset
    slide.layer.locked_data_level = None
    viewer.reset_view()  # the whole slide: napari picks a computed level
    slide.layer.visible = True
    QApplication.processEvents()
    level = slide.layer.data_level
    shape = np.array(slide.level_shape(level))
    worst = (shape - 1) * (slide.layer.downsample_factors[level] - slide.downsamples[level])
    assert level > 0 and (worst * viewer.camera.zoom * mpp < 1).all()  # under a screen pixel


def test_heatmaps_overlays_and_3d_layers_are_no_slides(viewer):
    assert is_slide_candidate(viewer.add_image(np.zeros((20, 30, 3), np.uint8), rgb=True))
    assert not is_slide_candidate(viewer.add_image(np.zeros((4, 20, 30), np.uint8)))
    assert not is_slide_candidate(viewer.add_image(np.zeros((20, 30), np.float32),
                                                   metadata={"patchheat_heatmap": None}))
    from napari_patchheat._qt.canvas import add_overlay_layer

    assert not is_slide_candidate(add_overlay_layer(viewer, "lines"))


def test_layer_cache_values_follow_the_layers_data(viewer):
    layer = viewer.add_image(np.zeros((20, 30), np.uint8))
    cache = LayerCache()
    cache.set(layer, "k", 1)
    assert cache.get(layer, "k") == 1
    layer.data = np.ones((20, 30), np.uint8)  # new pixels: what was computed goes
    assert cache.get(layer, "k", "gone") == "gone"
