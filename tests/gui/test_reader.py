"""The npe2 reader in napari: slides open as one lazy multiscale RGB layer in µm; bad files give
an error message, never a crash. Runs in the GUI process: TensorFlow is never imported here."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from qtpy.QtWidgets import QApplication

from napari_patchheat._reader import napari_get_reader, read_slides
from napari_patchheat.slide import SlideError, open_slide

PLUGIN = "napari-patchheat"


def open_one(viewer, path):
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert len(layers) == 1 and len(viewer.layers) == 1
    return layers[0]


def test_svs_opens_as_a_multiscale_layer_in_um(make_napari_viewer, svs_path):
    viewer = make_napari_viewer()
    layer = open_one(viewer, svs_path)
    assert layer.multiscale and layer.rgb
    assert [d.shape for d in layer.data] == [(2967, 2220, 3), (1483, 1110, 3)]
    assert all(isinstance(d, da.Array) for d in layer.data)  # lazy
    assert tuple(layer.scale) == pytest.approx((0.499, 0.499))
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    assert tuple(layer.contrast_limits) == (0, 255)
    meta = layer.metadata
    assert meta["path"] == str(svs_path) and meta["mpp"] == (0.499, 0.499)
    assert meta["downsamples"] == [(1.0, 1.0), (2.0, 2.0)]  # computed: a 2x2 mean, not 2967 / 1483
    assert meta["vendor"] == "aperio" and meta["objective_power"] == 20.0


def test_computed_levels_carry_exact_downsamples(make_napari_viewer, odd_slide):
    """A 2601 x 4099 single-level slide: its computed levels' downsamples are powers of two in
    the metadata (napari's own factors are level-0 size / level size: see test_slide_layer)."""
    viewer = make_napari_viewer()
    layer = open_one(viewer, odd_slide[0])
    meta = layer.metadata
    assert meta["level_shapes"] == [(2601, 4099), (1300, 2049), (650, 1024)]
    assert meta["downsamples"] == [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    assert [tuple(f) for f in layer.downsample_factors[1:, :2]] != meta["downsamples"][1:]
    assert meta["objective_power"] == 40.0 and meta["mpp"] == pytest.approx((0.2283, 0.2283))


def test_ndpi_and_png(make_napari_viewer, ndpi_path, ihc_png_path):
    viewer = make_napari_viewer()
    layer = open_one(viewer, ndpi_path)
    assert [d.shape[:2] for d in layer.data] == [
        (4864, 3968), (2432, 1984), (1216, 992), (608, 496)]
    assert tuple(layer.scale) == pytest.approx((0.22818, 0.22818), abs=1e-5)
    viewer.layers.clear()
    layer = open_one(viewer, ihc_png_path)
    assert [d.shape for d in layer.data] == [(512, 512, 3)]
    assert tuple(layer.scale) == (1.0, 1.0) and layer.metadata["mpp"] is None


def test_generated_slide_draws(make_napari_viewer, slide_writer, real_pixels):
    """The viewer draws the lazy pyramid (levels are read as the camera asks for them)."""
    path, _ = slide_writer("drawn.ome.tif", real_pixels, layout="subifds", mpp=0.5)
    viewer = make_napari_viewer(show=True)
    layer = open_one(viewer, path)
    viewer.reset_view()
    QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.shape[2] == 4 and shot[..., :3].std() > 10  # tissue on screen, not a blank canvas
    viewer.camera.zoom *= 8  # zoom in: napari now reads level 0 tiles
    QApplication.processEvents()
    viewer.screenshot(canvas_only=True, flash=False)
    assert layer.data_level == 0


def test_bad_file_is_an_error_not_a_crash(make_napari_viewer, svs_path, tmp_path):
    bad = tmp_path / "half.svs"
    bad.write_bytes(svs_path.read_bytes()[: svs_path.stat().st_size // 2])
    viewer = make_napari_viewer()
    with pytest.raises(SlideError, match="truncated") as info:
        viewer.open(str(bad), plugin=PLUGIN)  # a chosen plugin's error reaches the caller as is
    assert str(info.value).startswith(f"Cannot open {bad}:")
    assert len(viewer.layers) == 0
    open_one(viewer, svs_path)  # the viewer goes on


def test_gui_open_shows_the_message(make_napari_viewer, tmp_path, monkeypatch):
    """File > Open of a broken slide, PatchHeat remembered for .svs: napari's reader dialog
    opens (to offer its other readers) and carries our sentence; nothing is added."""
    from napari._qt.dialogs import qt_reader_dialog
    from napari.settings import get_settings

    bad = tmp_path / "garbage.svs"
    bad.write_bytes(b"not a slide at all" * 100)
    shown = []

    def cancel(self):
        shown.append(self.findChildren(qt_reader_dialog.QLabel)[0].text())
        return None, False

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "get_user_choices", cancel)
    viewer = make_napari_viewer()  # resets napari's settings: set the preference after it
    plugins = get_settings().plugins
    monkeypatch.setattr(plugins, "extension2reader", {**plugins.extension2reader, "*.svs": PLUGIN})
    viewer.window._qt_viewer._qt_open([str(bad)], stack=False)
    assert shown, "napari showed no reader dialog"
    assert f"SlideError: Cannot open {bad}: no backend reads it" in shown[0]
    assert len(viewer.layers) == 0


def test_get_reader_claims_only_slides(tmp_path):
    assert napari_get_reader(str(tmp_path / "a.SVS")) is read_slides
    assert napari_get_reader([str(tmp_path / "a.ndpi"), str(tmp_path / "b.tif")]) is read_slides
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path)) is None  # a directory
    assert napari_get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.csv")]) is None
    assert napari_get_reader([]) is None


def test_get_reader_takes_the_suffixes_of_the_manifest(tmp_path):
    from npe2 import PluginManifest

    from napari_patchheat.slide import SLIDE_SUFFIXES

    [reader] = PluginManifest.from_distribution(PLUGIN).contributions.readers
    assert reader.filename_patterns == [f"*{suffix}" for suffix in SLIDE_SUFFIXES]
    assert reader.accepts_directories
    for name in ("a.mrxs", "b.VMS", "c.vmu", "d.svslide", "e.dcm"):
        assert napari_get_reader(str(tmp_path / name)) is read_slides


def test_dicom_folders_and_files_open_through_the_reader(dicom_path, tmp_path):
    """No viewer needed: the reader's layer data, for the folder and its level-0 file (read by
    wsidicom: every level)."""
    dcm = max(dicom_path.glob("*.dcm"), key=lambda p: p.stat().st_size)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not a slide")
    assert napari_get_reader(str(tmp_path / "plain")) is None
    for path in (dicom_path, dcm):
        assert napari_get_reader(str(path)) is read_slides
        [(data, kwargs, kind)] = read_slides(str(path))
        assert kind == "image" and kwargs["name"] == path.name
        assert [level.shape for level in data] == [
            (2967, 2220, 3), (1484, 1110, 3), (742, 555, 3), (371, 278, 3), (186, 139, 3)]
        assert kwargs["scale"] == (0.499, 0.499) and kwargs["metadata"]["vendor"] == "dicom"
        assert kwargs["metadata"]["path"] == str(path)
        assert data[1].compute().std() > 1


def test_a_dicom_folder_opens_in_napari(make_napari_viewer, dicom_path):
    viewer = make_napari_viewer(show=True)
    layer = open_one(viewer, dicom_path)
    assert layer.name == dicom_path.name and layer.multiscale and layer.rgb
    assert [level.shape[:2] for level in layer.data] == [
        (2967, 2220), (1484, 1110), (742, 555), (371, 278), (186, 139)]
    assert tuple(layer.scale) == (0.499, 0.499)
    viewer.reset_view()
    QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot[..., :3].std() > 10  # the slide is drawn
    viewer.camera.zoom *= 8  # level 0, read by wsidicom as the camera asks
    QApplication.processEvents()
    viewer.screenshot(canvas_only=True, flash=False)
    assert layer.data_level == 0


def test_reader_missing_file_raises(tmp_path):
    with pytest.raises(SlideError, match="no such file"):
        read_slides(str(tmp_path / "gone.svs"))


def test_sample_data_menu(make_napari_viewer, tmp_path, monkeypatch):
    from napari_patchheat import cache, samples

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(samples, "SAMPLE_SIZE_PX", 2048)
    viewer = make_napari_viewer()
    [ihc] = viewer.open_sample(PLUGIN, "ihc")
    assert ihc.data.shape == (512, 512, 3) and ihc.rgb
    [slide] = viewer.open_sample(PLUGIN, "slide")
    assert slide.multiscale and [d.shape for d in slide.data] == [(2048, 2048, 3), (1024, 1024, 3)]
    with open_slide(slide.metadata["path"]) as s:
        np.testing.assert_array_equal(s.levels[1].compute(), np.asarray(slide.data[1]))


def test_a_heatmap_ome_tiff_opens_back_over_its_slide(make_napari_viewer, svs_path, tmp_path):
    from napari_patchheat.export import write_ome_tiff
    from napari_patchheat.grid import PatchGrid
    from napari_patchheat.heatmap import Heatmap

    with open_slide(svs_path) as slide:
        level = 1  # a computed lower level of an odd-sized slide: its downsample is exactly 2
        h0, w0 = slide.levels[level].shape[:2]
        grid = PatchGrid(h0, w0, 100, 60, padding="SAME")
        values = np.random.default_rng(3).random((*grid.shape, 2)).astype(np.float32)
        values[::3] = np.nan
        heatmap = Heatmap(values, grid, level=level, downsample=slide.downsamples[level],
                          class_names=("a", "b"), mpp=slide.mpp, slide_path=str(svs_path),
                          slide_shape=slide.shape)
    path = write_ome_tiff(heatmap, tmp_path / "h.ome.tif")
    viewer = make_napari_viewer()
    viewer.open(str(svs_path), plugin="napari-patchheat")
    layers = viewer.open(str(path), plugin="napari-patchheat")
    assert [layer.name for layer in layers] == [heatmap.layer_name(0), heatmap.layer_name(1)]
    mpp = np.array(heatmap.mpp)
    for layer, c in zip(layers, range(2)):
        for i, j in [(0, 0), (1, 2), (grid.rows - 1, grid.cols - 1)]:
            world = grid.centers(i, j, heatmap.downsample) * mpp  # the slide layer is in µm
            cell = np.round(layer.world_to_data(world)).astype(int)
            assert tuple(cell) == (i, j)
            np.testing.assert_array_equal(layer.data[i, j], values[i, j, c])


def test_a_damaged_heatmap_ome_tiff_is_an_error_not_a_crash(make_napari_viewer, tmp_path):
    from napari_patchheat.export import write_ome_tiff
    from napari_patchheat.grid import PatchGrid
    from napari_patchheat.heatmap import Heatmap

    grid = PatchGrid(256, 256, 32, 32)
    heatmap = Heatmap(np.zeros((*grid.shape, 1), np.float32), grid, 0, (1.0, 1.0), ("a",))
    path = write_ome_tiff(heatmap, tmp_path / "h.ome.tif")
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 4)  # a TIFF header, then garbage
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match=f"{path} cannot be read as a heatmap"):
        viewer.open(str(path), plugin=PLUGIN)
    assert len(viewer.layers) == 0


def test_a_huge_sparse_tiff_opens_and_draws(make_napari_viewer, tmp_path):
    """The issue's 200,000 x 200,000 px single-level TIFF with one stored tile: napari opens it
    and draws the whole slide (its computed levels skip the glass)."""
    import tifffile

    red = np.zeros((512, 512, 3), np.uint8)
    red[..., 0] = 200
    count = (200_000 // 512 + 1) ** 2
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, (red if i == 0 else None for i in range(count)),
                     shape=(200_000, 200_000, 3), dtype=np.uint8, tile=(512, 512),
                     photometric="rgb", bigtiff=True)
    viewer = make_napari_viewer(show=True)
    layer = open_one(viewer, path)
    viewer.reset_view()
    QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert len(layer.data) == 8 and layer.data_level == 7
    assert (shot[..., :3] == 255).all(axis=-1).mean() > 0.5  # the glass, drawn white


def test_an_s3_url_opens_in_napari_like_the_file(make_napari_viewer, s3_env, svs_path):
    """``viewer.open("s3://...")`` (keys and endpoint from the environment): the reader claims
    the URL (a query string aside), the layer's levels equal the file's, its metadata keeps the
    URL, and the dock's view of the layer (SlideLayer) gets it as its source."""
    from napari_patchheat._qt.slide_layer import SlideLayer
    from napari_patchheat.slide.location import SlideURL

    url = s3_env.url(svs_path.name)
    assert napari_get_reader(url) is read_slides
    assert napari_get_reader(f"{url}?versionId=1") is read_slides
    assert napari_get_reader("s3://slides/notes.txt") is None
    data, kwargs, kind = read_slides(url)[0]
    with open_slide(svs_path) as local:
        for got, want in zip(data, local.levels):
            want = np.asarray(want)
            assert want.std() > 0
            np.testing.assert_array_equal(np.asarray(got), want)
    assert kind == "image" and kwargs["name"] == svs_path.name
    assert kwargs["metadata"]["path"] == url
    viewer = make_napari_viewer()
    layer = open_one(viewer, url)
    assert SlideLayer.from_layer(layer).path == SlideURL(url)
    assert tuple(layer.scale) == pytest.approx((0.499, 0.499))
