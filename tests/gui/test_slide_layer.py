"""SlideLayer: a slide layer's pyramid, units and placement, from this plugin's reader or from a
plain array; LayerCache: values that follow a layer's data."""

from __future__ import annotations

import numpy as np

from napari_patchheat._qt.slide_layer import LayerCache, SlideLayer, is_slide_candidate


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
    from napari_patchheat._reader import read_slides

    data, kwargs, _ = read_slides(str(svs_path))[0]
    slide = SlideLayer.from_layer(viewer.add_image(data, **kwargs))
    assert slide.path == svs_path and slide.mpp == tuple(kwargs["metadata"]["mpp"])
    assert slide.downsamples == [tuple(d) for d in kwargs["metadata"]["downsamples"]]
    assert slide.level_label(0).startswith(f"0: {data[0].shape[1]:,} x {data[0].shape[0]:,} px")


def test_heatmaps_and_3d_layers_are_no_slides(viewer):
    assert is_slide_candidate(viewer.add_image(np.zeros((20, 30, 3), np.uint8), rgb=True))
    assert not is_slide_candidate(viewer.add_image(np.zeros((4, 20, 30), np.uint8)))
    assert not is_slide_candidate(viewer.add_image(np.zeros((20, 30), np.float32),
                                                   metadata={"patchheat_heatmap": None}))


def test_layer_cache_values_follow_the_layers_data(viewer):
    layer = viewer.add_image(np.zeros((20, 30), np.uint8))
    cache = LayerCache()
    cache.set(layer, "k", 1)
    assert cache.get(layer, "k") == 1
    layer.data = np.ones((20, 30), np.uint8)  # new pixels: what was computed goes
    assert cache.get(layer, "k", "gone") == "gone"
