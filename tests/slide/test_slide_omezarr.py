"""OME-Zarr images (NGFF 0.4 on zarr v2, 0.5 on zarr v3) as slides: written by ome-zarr-py from
real pixels, opened by ``open_slide`` on the folder, compared level by level."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import downscale
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image, write_multiscale
from slide_checks import expect_error

from napari_patchheat._reader import read_slides
from napari_patchheat.slide import CHUNK_TARGET_PX, SlideError, open_slide
from napari_patchheat.slide.omezarr import open_omezarr_url

FORMATS = {"0.4": FormatV04(), "0.5": FormatV05()}
CHUNK_PX = 256
MPP_UM = 0.499


def write_ome_zarr(path: Path, pyramid: list[np.ndarray], version: str, axes: str = "cyx",
                   unit: str | None = "micrometer", pixel: float = MPP_UM, **kw) -> Path:
    """``pyramid`` (largest first, in the layout ``axes`` says) as an OME-Zarr of NGFF
    ``version`` with ome-zarr-py's writer; level 0's pixel is ``pixel`` ``unit``s."""
    group = zarr.open_group(path, mode="w", zarr_format=2 if version == "0.4" else 3)
    chunks = tuple(min(n, CHUNK_PX) if a in "yx" else 1 for a, n in zip(axes, pyramid[0].shape))
    write_multiscale(pyramid, group, fmt=FORMATS[version], axes=axes,
                     scale={"y": pixel, "x": pixel},
                     axes_units={"y": unit, "x": unit} if unit else None,
                     storage_options={"chunks": chunks}, **kw)
    return path


@pytest.fixture(scope="module")
def rgb_pyramid(real_pixels) -> list[np.ndarray]:
    """Three levels of real H&E pixels (the CMU SVS, else IHC), Y X 3, 2x apart."""
    levels = [real_pixels[:1500, :1100]]
    for _ in range(2):
        levels.append(downscale(levels[-1], 2))
    assert levels[0].std() > 20  # real tissue, not a flat image
    return levels


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_channel_first_rgb_levels_equal_the_written_pyramid(tmp_path, rgb_pyramid, version):
    cyx = [np.moveaxis(lv, -1, 0) for lv in rgb_pyramid]
    path = write_ome_zarr(tmp_path / "s.zarr", cyx, version)
    assert (path / (".zattrs" if version == "0.4" else "zarr.json")).is_file()
    with open_slide(path) as s:
        assert s.vendor == "ome-zarr" and s.stored_level_count == 3
        assert s.mpp == pytest.approx((MPP_UM, MPP_UM))
        assert [lv.shape for lv in s.raw_levels] == [lv.shape for lv in rgb_pyramid]
        assert s.downsamples[:3] == [(1.0, 1.0), (1500 / 750, 1100 / 550), (1500 / 375, 4.0)]
        assert s.tile_shapes == [(CHUNK_PX, CHUNK_PX)] * 3
        for k, want in enumerate(rgb_pyramid):
            np.testing.assert_array_equal(s.levels[k].compute(), want)
        np.testing.assert_array_equal(s.levels[0][700:1300, 130:1099].compute(),
                                      rgb_pyramid[0][700:1300, 130:1099])
        # dask chunks: whole zarr chunks, grouped to about CHUNK_TARGET_PX a side
        assert s.raw_levels[0].chunks[0][:-1] == (CHUNK_TARGET_PX,)
        assert s.raw_levels[0].chunks[2] == (3,)


@pytest.mark.parametrize("key", [
    (slice(300, 700), slice(90, 1000)), (5, slice(None)), (slice(None, None, 7), 1099, 2),
    (Ellipsis, 1), (np.array([3, 900, 17]), slice(10, 20)), (slice(1400, 1600), slice(-50, None)),
])
def test_a_level_reads_like_numpy_and_only_the_chunks_it_touches(tmp_path, rgb_pyramid, key):
    want = rgb_pyramid[0]
    path = write_ome_zarr(tmp_path / "s.zarr", [np.moveaxis(want, -1, 0)[None, :, None]], "0.5",
                          axes="tczyx")
    with open_slide(path) as s:
        np.testing.assert_array_equal(s.raw_levels[0][key].compute(), want[key])
    # a damaged chunk far from a region does not stop reading it (it is never read)
    (path / "s0" / "c" / "0" / "0" / "0" / "5" / "4").write_bytes(b"not zstd")
    with open_slide(path) as s:
        np.testing.assert_array_equal(s.levels[0][:600, :500].compute(), want[:600, :500])
        with pytest.raises(SlideError, match=f"Cannot read pixels 1200:1500, 1024:1100 of the "
                           f"dataset 's0' of {path}: .*Error"):
            s.levels[0][1200:, 1000:].compute()


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_grayscale_16_bit_yx_and_tczyx(tmp_path, rgb_pyramid, version):
    gray16 = [lv[..., 1].astype(np.uint16) * 257 + 3 for lv in rgb_pyramid]
    assert gray16[0].std() > 1000
    want8 = [((g.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8) for g in gray16]
    yx = write_ome_zarr(tmp_path / "yx.zarr", gray16, version, axes="yx")
    five = write_ome_zarr(tmp_path / "tczyx.zarr", [g[None, None, None] for g in gray16], version,
                          axes="tczyx")
    for path in (yx, five):
        with open_slide(path) as s:
            assert [lv.shape for lv in s.raw_levels] == [(*g.shape, 1) for g in gray16]
            assert s.raw_levels[0].dtype == np.uint16 and s.mpp == pytest.approx((MPP_UM,) * 2)
            for k, g in enumerate(gray16):
                np.testing.assert_array_equal(s.raw_levels[k][..., 0].compute(), g)
                np.testing.assert_array_equal(s.levels[k].compute(),
                                              np.repeat(want8[k][..., None], 3, axis=2))


def test_rgba_is_composited_over_white(tmp_path, rgb_pyramid):
    rgb = rgb_pyramid[1]
    alpha = np.linspace(0, 255, rgb.shape[1]).astype(np.uint8)[None, :].repeat(rgb.shape[0], 0)
    path = write_ome_zarr(tmp_path / "rgba.zarr", [np.moveaxis(np.dstack([rgb, alpha]), -1, 0)],
                          "0.5")
    with open_slide(path) as s:
        a = alpha[..., None].astype(np.int32)
        want = (rgb * a + 255 * (255 - a) + 127) // 255
        np.testing.assert_array_equal(s.levels[0].compute(), want.astype(np.uint8))


@pytest.mark.parametrize(("unit", "pixel", "mpp"), [("nanometer", 499.0, MPP_UM),
                                                    ("millimeter", 0.000499, MPP_UM),
                                                    (None, 1.0, None), ("parsec", 1.0, None)])
def test_mpp_from_the_first_dataset_scale_in_its_unit(tmp_path, rgb_pyramid, unit, pixel, mpp):
    yx = [lv[..., 0] for lv in rgb_pyramid]
    with open_slide(write_ome_zarr(tmp_path / "u.zarr", yx, "0.5", axes="yx", unit=unit,
                                   pixel=pixel)) as s:
        assert s.mpp == (None if mpp is None else pytest.approx((mpp, mpp)))


def test_ome_zarr_py_write_image_with_its_own_pyramid(tmp_path, rgb_pyramid):
    image = np.moveaxis(rgb_pyramid[0], -1, 0)
    group = zarr.open_group(tmp_path / "w.zarr", mode="w", zarr_format=3)
    write_image(image, group, axes="cyx", scale={"y": 0.25, "x": 0.26}, scale_factors=(2, 4),
                axes_units={"y": "micrometer", "x": "micrometer"},
                storage_options={"chunks": (3, 512, 512)})
    with open_slide(tmp_path / "w.zarr") as s:
        assert s.mpp == pytest.approx((0.25, 0.26)) and s.stored_level_count == 3
        assert [lv.shape[:2] for lv in s.raw_levels] == [(1500, 1100), (750, 550), (375, 275)]
        np.testing.assert_array_equal(s.levels[0].compute(), rgb_pyramid[0])


def test_identity_follows_the_metadata_file(tmp_path, rgb_pyramid):
    path = write_ome_zarr(tmp_path / "s.zarr", [rgb_pyramid[2][..., 0]], "0.5", axes="yx")
    with open_slide(path) as a, open_slide(path) as b:
        assert a.identity == b.identity
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    meta.write_text(json.dumps(doc, indent=4))  # same image, rewritten metadata
    os.utime(meta, ns=(meta.stat().st_atime_ns, meta.stat().st_mtime_ns + 10**9))
    with open_slide(path) as c:
        assert c.identity != a.identity
        np.testing.assert_array_equal(c.levels[0][..., 0].compute(), rgb_pyramid[2][..., 0])


def test_channel_labels_from_omero_metadata(tmp_path, rgb_pyramid):
    omero = {"channels": [{"label": n, "color": c} for n, c in
                          (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))]}
    path = write_ome_zarr(tmp_path / "s.zarr", [np.moveaxis(rgb_pyramid[2], -1, 0)], "0.4")
    group = zarr.open_group(path, mode="a")
    group.attrs["omero"] = omero
    with open_slide(path) as s:
        assert s.channel_names == ("red", "green", "blue")


def test_bioformats2raw_layout_opens_its_first_series(tmp_path, rgb_pyramid):
    root = zarr.open_group(tmp_path / "b2r.zarr", mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    write_ome_zarr(tmp_path / "b2r.zarr" / "0", [np.moveaxis(rgb_pyramid[1], -1, 0)], "0.4")
    with open_slide(tmp_path / "b2r.zarr") as s:
        np.testing.assert_array_equal(s.levels[0].compute(), rgb_pyramid[1])


def test_an_fsspec_url_opens_the_same_pixels(tmp_path, rgb_pyramid):
    path = write_ome_zarr(tmp_path / "s.zarr", [np.moveaxis(rgb_pyramid[1], -1, 0)], "0.5")
    with open_omezarr_url(path.as_uri()) as s, open_slide(path) as local:
        assert s.path.name == "s.zarr" and s.mpp == local.mpp
        assert s.identity != local.identity
        np.testing.assert_array_equal(s.levels[0].compute(), rgb_pyramid[1])


def test_an_s3_url_opens_the_same_pixels_and_its_identity_follows_the_metadata(
        tmp_path, rgb_pyramid, monkeypatch):
    """A real S3 API (moto's server, on a free local port) holding an OME-Zarr."""
    s3fs = pytest.importorskip("s3fs")
    server = pytest.importorskip("moto.server").ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {"client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("slides")
        local = write_ome_zarr(tmp_path / "s.zarr", [np.moveaxis(lv, -1, 0) for lv in rgb_pyramid],
                               "0.4")
        fs.put(str(local), "slides/s.zarr", recursive=True)
        with open_omezarr_url("s3://slides/s.zarr", options) as s:
            assert s.mpp == pytest.approx((MPP_UM, MPP_UM)) and s.stored_level_count == 3
            np.testing.assert_array_equal(s.levels[0][700:900, 20:1000].compute(),
                                          rgb_pyramid[0][700:900, 20:1000])
            np.testing.assert_array_equal(s.levels[2].compute(), rgb_pyramid[2])
            first = s.identity
        with open_omezarr_url("s3://slides/s.zarr", options) as s:
            assert s.identity == first
        fs.pipe("slides/s.zarr/.zattrs", (local / ".zattrs").read_bytes() + b"\n")
        with open_omezarr_url("s3://slides/s.zarr", options) as s:
            assert s.identity != first
        with pytest.raises(SlideError, match="Cannot open s3://slides/none.zarr: it is not a "
                                             "readable zarr group"):
            open_omezarr_url("s3://slides/none.zarr", options)
    finally:
        server.stop()


def test_the_napari_reader_opens_a_zarr_folder_as_a_multiscale_layer(tmp_path, rgb_pyramid):
    path = write_ome_zarr(tmp_path / "s.zarr", [np.moveaxis(lv, -1, 0) for lv in rgb_pyramid],
                          "0.5")
    [(data, kwargs, kind)] = read_slides(str(path))
    assert kind == "image" and kwargs["multiscale"] and kwargs["rgb"]
    assert kwargs["scale"] == pytest.approx((MPP_UM, MPP_UM))
    assert kwargs["metadata"]["vendor"] == "ome-zarr" and kwargs["name"] == "s.zarr"
    np.testing.assert_array_equal(data[2].compute(), rgb_pyramid[2])


# --- what is refused ---------------------------------------------------------------------------
def test_a_zarr_group_without_multiscales_is_one_sentence(tmp_path):
    group = zarr.open_group(tmp_path / "plain.zarr", mode="w", zarr_format=3)
    group.create_array("a", shape=(10, 10), dtype="uint8")
    expect_error(tmp_path / "plain.zarr", "without OME-Zarr multiscales metadata")


def test_a_broken_zarr_json_is_one_sentence(tmp_path, rgb_pyramid):
    path = write_ome_zarr(tmp_path / "s.zarr", [rgb_pyramid[2][..., 0]], "0.5", axes="yx")
    (path / "zarr.json").write_text("{ not json")
    expect_error(path, "not a readable zarr group")


def test_a_missing_dataset_is_one_sentence(tmp_path, rgb_pyramid):
    path = write_ome_zarr(tmp_path / "s.zarr", [rgb_pyramid[2][..., 0]] * 1, "0.4", axes="yx")
    group = zarr.open_group(path, mode="a")
    attrs = group.attrs.asdict()
    attrs["multiscales"][0]["datasets"].append({"path": "missing", "coordinateTransformations": [
        {"type": "scale", "scale": [1.0, 1.0]}]})
    group.attrs.update(attrs)
    expect_error(path, "does not name readable arrays")


@pytest.mark.parametrize(("layout", "shape", "dtype", "words"), [
    ("cyx", (5, 64, 64), "uint8", ("5 channels", "multiplexed images are not")),
    ("yx", (64, 64), "float32", ("float32 samples", "8- or 16-bit")),
    ("czyx", (1, 3, 64, 64), "uint8", ("z of size 3", "volumes are not slides")),
    ("tcyx", (4, 3, 64, 64), "uint8", ("t of size 4",)),
])
def test_what_is_not_a_slide_is_refused(tmp_path, real_pixels, layout, shape, dtype, words):
    data = np.resize(real_pixels[..., 0], shape).astype(dtype)
    assert data.std() > 0
    path = write_ome_zarr(tmp_path / "x.zarr", [data], "0.5", axes=layout)
    expect_error(path, *words)
