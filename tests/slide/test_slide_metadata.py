"""What a slide's metadata says: vendor, level-0 µm/px, objective power and channel names."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_patchheat.slide import MPP_PLAUSIBLE_UM, open_slide


def test_svs_metadata(svs_path):
    with open_slide(svs_path) as s:
        assert s.vendor == "aperio"
        assert s.mpp == (0.499, 0.499)
        assert s.objective_power == 20.0


def test_ndpi_metadata(ndpi_path):
    with open_slide(ndpi_path) as s:
        assert s.vendor == "hamamatsu"
        assert s.mpp == pytest.approx((0.2282, 0.2282), abs=1e-4)
        assert s.objective_power == 40.0


def test_svs_layout_metadata(slide_writer, real_pixels):
    path, _ = slide_writer("a.svs", real_pixels, layout="svs", factor=4, mpp=0.2523,
                           tile=(240, 240))
    with open_slide(path) as s:
        assert s.vendor == "aperio" and s.objective_power == 40
        assert s.mpp == pytest.approx((0.2523, 0.2523))


@pytest.mark.parametrize("text", ["abc", "0", "-0.25", "inf", "nan", ""])
def test_unusable_aperio_mpp_is_unknown(slide_writer, real_pixels, text):
    path, _ = slide_writer("bad.svs", real_pixels[:600, :600], layout="svs", levels=2, mpp=text)
    with open_slide(path) as s:
        assert s.vendor == "aperio" and s.mpp is None


def test_ome_metadata_units(tmp_path, real_pixels):
    path = tmp_path / "nm.ome.tif"
    tifffile.imwrite(
        path, real_pixels[:512, :512], photometric="rgb", tile=(256, 256),
        metadata={"axes": "YXS", "PhysicalSizeX": 250.0, "PhysicalSizeXUnit": "nm",
                  "PhysicalSizeY": 0.26, "PhysicalSizeYUnit": "µm"},
    )  # fmt: skip
    with open_slide(path) as s:
        assert s.vendor == "ome"
        assert s.mpp == pytest.approx((0.26, 0.25))


def test_ome_with_one_pixel_size_has_no_mpp(tmp_path, real_pixels):
    path = tmp_path / "half.ome.tif"
    tifffile.imwrite(path, real_pixels[:256, :256], photometric="rgb",
                     metadata={"axes": "YXS", "PhysicalSizeX": 0.25})
    with open_slide(path) as s:
        assert s.vendor == "ome" and s.mpp is None


@pytest.mark.parametrize(("mpp", "kept"), [(0.5, True), (MPP_PLAUSIBLE_UM[1] * 2, False)])
def test_resolution_tags_give_mpp_when_plausible(slide_writer, real_pixels, mpp, kept):
    path, _ = slide_writer("res.tif", real_pixels[:600, :600], layout="single", mpp=mpp)
    with open_slide(path) as s:
        assert s.vendor == "tiff"
        assert s.mpp == (pytest.approx((mpp, mpp)) if kept else None)


def test_ndpi_channel_names(ndpi_path):
    with tifffile.TiffFile(ndpi_path) as tif:
        fluorescence = tif.pages[0].ndpi_tags["Fluorescence"]  # tifffile's NDPI tag reader
    assert fluorescence == "DAPI 2 (387)"
    with open_slide(ndpi_path) as s:
        assert s.channel_names == (fluorescence,)


def test_brightfield_slides_name_no_channels(svs_path, ihc_png_path):
    for path in (svs_path, ihc_png_path):
        with open_slide(path) as s:
            assert s.channel_names is None


def ome_channel_names(path, image):
    """Channel names of OME Image ``image`` of ``path`` as tifffile's OME-XML parser reads them."""
    def listed(value):
        return value if isinstance(value, list) else [value]

    with tifffile.TiffFile(path) as tif:
        images = listed(tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"])
    return tuple(c.get("Name") for c in listed(images[image]["Pixels"]["Channel"]))


def test_ome_channel_names_of_the_slide_image(tmp_path):
    """Two OME Images: a small overview first, then the slide; the slide's names are read."""
    rng = np.random.default_rng(0)
    path = tmp_path / "plex.ome.tif"
    names = ("DAPI", "FITC", "TRITC")
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(rng.integers(0, 255, (3, 64, 80), np.uint8), photometric="minisblack",
                  metadata={"axes": "CYX", "Channel": {"Name": ["a", "b", "c"]}})
        tif.write(rng.integers(0, 4095, (3, 512, 640), np.uint16), photometric="minisblack",
                  tile=(256, 256), metadata={"axes": "CYX", "Channel": {"Name": list(names)}})
    assert ome_channel_names(path, 1) == names and ome_channel_names(path, 0) != names
    with open_slide(path) as s:
        assert s.shape == (512, 640) and s.channel_names == names


def test_ome_grey_channel_name_and_unnamed_channels(tmp_path, real_pixels):
    grey = tmp_path / "dapi.ome.tif"
    tifffile.imwrite(grey, real_pixels[:256, :256, 2], photometric="minisblack",
                     metadata={"axes": "YX", "Channel": {"Name": ["DAPI"]}})
    unnamed = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(unnamed, real_pixels[:256, :256], photometric="rgb", metadata={"axes": "YXS"})
    assert ome_channel_names(grey, 0) == ("DAPI",) and ome_channel_names(unnamed, 0) == (None,)
    with open_slide(grey) as s:
        assert s.channel_names == ("DAPI",)
    with open_slide(unnamed) as s:
        assert s.channel_names is None
