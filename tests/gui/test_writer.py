"""The npe2 writer: a heatmap layer saved as OME-TIFF through napari comes back equal.

Runs in the GUI test process (never imports TensorFlow). The tests go through the installed
plugin's own manifest entry (command, python_name, extensions), not only the function.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_patchheat._writer import write_heatmap
from napari_patchheat.export import read_ome_tiff
from napari_patchheat.grid import PatchGrid
from napari_patchheat.heatmap import Heatmap

PLUGIN = "napari-patchheat"


@pytest.fixture
def heatmap() -> Heatmap:
    grid = PatchGrid(300, 420, 32, 24, padding="SAME")
    values = np.random.default_rng(0).random((*grid.shape, 2)).astype(np.float32)
    values[:3] = np.nan
    return Heatmap(values, grid, level=1, downsample=(4.0, 4.0), class_names=("normal", "tumor"),
                   mpp=(0.25, 0.25), model_name="toy", slide_path="/data/s.svs",
                   slide_shape=(1200, 1680))


def test_writer_writes_all_classes_of_a_heatmap_layer(heatmap, tmp_path):
    from napari.layers import Image

    layer = Image(**heatmap.layer_kwargs("tumor"))
    data, meta, kind = layer.as_layer_data_tuple()
    written = write_heatmap(str(tmp_path / "h.ome.tif"), data, meta)
    assert written == [str(tmp_path / "h.ome.tif"), str(tmp_path / "h.json")]
    back = read_ome_tiff(written[0])
    assert np.array_equal(back.values, heatmap.values, equal_nan=True)
    assert back.metadata() == heatmap.metadata()


def test_npe2_routes_ome_tif_to_the_writer(heatmap, tmp_path):
    import npe2
    from napari.layers import Image

    npe2.PluginManager.instance().discover()  # as napari does at start: no viewer made it here

    layer = Image(**heatmap.layer_kwargs(0))
    written = npe2.write(str(tmp_path / "h.ome.tiff"), [layer], plugin_name=PLUGIN)
    assert sorted(written) == [str(tmp_path / "h.json"), str(tmp_path / "h.ome.tiff")]
    back = read_ome_tiff(tmp_path / "h.ome.tiff")
    assert np.array_equal(back.values, heatmap.values, equal_nan=True)


def test_viewer_saves_a_heatmap_layer_and_a_plain_layer(make_napari_viewer, heatmap, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_image(**heatmap.layer_kwargs("tumor"))
    viewer.layers.selection = {layer}
    written = viewer.layers.save(str(tmp_path / "saved.ome.tif"), selected=True,
                                 plugin=PLUGIN)
    assert str(tmp_path / "saved.ome.tif") in written
    back = read_ome_tiff(tmp_path / "saved.ome.tif")
    assert np.array_equal(back.values, heatmap.values, equal_nan=True)
    assert back.placement() == heatmap.placement()

    plain = viewer.add_image(np.arange(12 * 16, dtype=np.uint16).reshape(12, 16), name="plain")
    viewer.layers.selection = {plain}
    written = viewer.layers.save(str(tmp_path / "plain.ome.tif"), selected=True,
                                 plugin=PLUGIN)
    assert written == [str(tmp_path / "plain.ome.tif")]
    assert np.array_equal(tifffile.imread(tmp_path / "plain.ome.tif"), plain.data)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["plain.ome.tif", "saved.json", "saved.ome.tif"]
