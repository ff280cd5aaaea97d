"""The DICOM WSI backend (slide/dicom.py, wsidicom): every level of the DICOM conversion of the
CMU SVS read exactly (level 0 equal to the SVS's, levels 1-4 equal to their frames decoded
independently and to OpenSlide's level 4), metadata, associated images, the folder and its
files, closing, errors, routing, and runs through the folder equal to runs through the SVS."""

from __future__ import annotations

import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor

import imagecodecs
import numpy as np
import pydicom
import pytest
import tifffile
from pydicom.uid import UID
from slide_checks import expect_error

from napari_patchheat.slide import SlideError, open_slide
from napari_patchheat.slide.dicom import DicomLevel
from napari_patchheat.slide.openslide_reader import OpenSlideHandle, OpenSlideLevel

LABEL_INSTANCE = "1.2.826.0.1.3680043.8.498.62911140482695790995152712222076536957.dcm"
SHAPES = [(2967, 2220), (1484, 1110), (742, 555), (371, 278), (186, 139)]


def level0_instance(folder):
    return max(folder.glob("*.dcm"), key=lambda p: p.stat().st_size)


def frames_decoded_independently(folder, k, colorspace=None):
    """Level ``k`` assembled from wsidicom's encoded frames, decoded here by imagecodecs'
    libjpeg-turbo: in the colours the JPEG stream's markers say (``colorspace`` None), or as
    ``colorspace`` says; and wsidicom's own ``read_region`` of the whole level."""
    from wsidicom import WsiDicom

    with WsiDicom.open(folder) as wsi:
        level = wsi.pyramid.levels[k]
        assert str(level.default_instance.image_data.transfer_syntax) == "1.2.840.10008.1.2.4.50"
        (h, w), (th, tw) = SHAPES[k], (240, 240)
        out = np.zeros((-(-h // th) * th, -(-w // tw) * tw, 3), np.uint8)
        for ty in range(-(-h // th)):
            for tx in range(-(-w // tw)):
                data = wsi.read_encoded_tile(level.level, (tx, ty), crop_to_image_boundary=False)
                frame = imagecodecs.jpeg8_decode(data, colorspace=colorspace,
                                                 outcolorspace=colorspace)
                out[ty * th : ty * th + frame.shape[0], tx * tw : tx * tw + frame.shape[1]] = frame
        region = np.asarray(wsi.read_region((0, 0), level.level, (w, h), as_array=True))
    return out[:h, :w], region


def svs_block_means(svs_path, k):
    """The SVS's level 0 as means of 2**k x 2**k blocks (what the converter's levels show)."""
    f = 2**k
    svs = tifffile.imread(svs_path).astype(np.float64)
    h, w = svs.shape[0] // f, svs.shape[1] // f
    return svs[: h * f, : w * f].reshape(h, f, w, f, 3).mean(axis=(1, 3))


def test_every_level_of_the_folder(dicom_path, svs_path):
    with open_slide(dicom_path) as slide:
        assert all(isinstance(r, DicomLevel) for r in slide.tile_readers)
        assert slide.path == dicom_path and slide.vendor == "dicom"
        assert slide.stored_level_count == 5
        assert [lv.shape[:2] for lv in slide.levels] == SHAPES
        assert slide.downsamples[1] == (2967 / 1484, 2220 / 1110)
        np.testing.assert_allclose(slide.mpp, (0.499, 0.499), rtol=1e-6)
        assert slide.objective_power is None  # the converter wrote no objective lens power
        assert slide.tile_shapes == [(240, 240)] * 5
        want = tifffile.imread(svs_path)
        assert want.std() > 1 and np.array_equal(slide.levels[0].compute(), want)
        assert len(slide.icc_profile) == 588 and slide.icc_profile[36:40] == b"acsp"


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_converter_levels_equal_their_frames_decoded_independently(dicom_path, svs_path, k):
    """Levels 1-4, made by the converter: YCbCr JFIF frames (short at the right and bottom
    edges) under a header that says RGB. Ours are the frames decoded as their JFIF marker says,
    and look like the SVS's block means; wsidicom's own decoder (and OpenSlide) follow the
    header and show them without the colour transform."""
    frames, region = frames_decoded_independently(dicom_path, k)
    assert frames.std() > 1
    with open_slide(dicom_path) as slide:
        got = slide.levels[k].compute()
    assert np.array_equal(got, frames)
    means = svs_block_means(svs_path, k)
    h, w = means.shape[:2]
    assert np.abs(got[:h, :w] - means).mean() < 5  # lossy JPEGs of the same picture (3.7-4.1)
    untransformed, _ = frames_decoded_independently(dicom_path, k, "RGB")
    assert np.array_equal(region, untransformed)  # wsidicom 0.36's read_region
    assert np.abs(region[:h, :w] - means).mean() > 50  # colours off


def test_level_0_equals_openslide_s_and_level_4_its_frames(dicom_path):
    """OpenSlide reads level 0 exactly; level 4 (no short frames, read from its origin: an
    integer place, its downsample 15.95 being fractional elsewhere) it reads as the header's
    RGB says, so equal to its frames decoded without the colour transform."""
    handle = OpenSlideHandle(level0_instance(dicom_path), dicom_path)
    try:
        level4 = OpenSlideLevel(handle, 4, "level 4")[:, :]
        level0 = OpenSlideLevel(handle, 0, "level 0")[1000:1700, 300:1200]
    finally:
        handle.close()
    untransformed, _ = frames_decoded_independently(dicom_path, 4, "RGB")
    assert level4.std() > 1 and np.array_equal(level4, untransformed)
    with open_slide(dicom_path) as slide:
        assert level0.std() > 1
        assert np.array_equal(slide.levels[0][1000:1700, 300:1200].compute(), level0)
        assert not np.array_equal(slide.levels[4].compute(), level4)


def test_associated_images_equal_openslide_s(dicom_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # OpenSlide's levels left out
        reference = open_slide(dicom_path, backend="openslide")
    with open_slide(dicom_path) as slide, reference:
        assert {k: v.shape for k, v in slide.associated.items()} == {
            "label": (463, 387, 3), "macro": (431, 1280, 3), "thumbnail": (768, 574, 3)}
        for name, image in slide.associated.items():
            want = reference.associated[name].compute()
            assert want.std() > 1 and np.array_equal(image.compute(), want), name


def test_a_dcm_file_and_its_folder_give_the_same_slide(dicom_path):
    for file in (level0_instance(dicom_path), dicom_path / LABEL_INSTANCE):
        with open_slide(dicom_path) as folder, open_slide(file) as one:
            assert one.path == file and folder.path == dicom_path
            assert [lv.shape for lv in one.levels] == [lv.shape for lv in folder.levels]
            assert (one.mpp, one.vendor, set(one.associated)) == (
                folder.mpp, folder.vendor, set(folder.associated))
            for a, b in zip(one.levels, folder.levels):
                assert np.array_equal(a[100:900, 30:700].compute(), b[100:900, 30:700].compute())
            assert one.identity != folder.identity  # the path is part of it
            assert one.source_key == folder.source_key  # the level-0 instance's file


def test_the_identity_follows_the_level_0_file(dicom_path, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dicom_path, copy)
    with open_slide(copy) as before:
        identity = before.identity
    with open_slide(copy) as again:
        assert again.identity == identity
    file = level0_instance(copy)
    file.write_bytes(file.read_bytes())  # same bytes, a new modification time
    with open_slide(copy) as after:
        assert after.identity != identity


def test_dicom_files_without_a_suffix(dicom_path, tmp_path):
    bare = tmp_path / "export"
    bare.mkdir()
    for file in dicom_path.glob("*.dcm"):
        shutil.copy(file, bare / file.stem)
    (bare / "DICOMDIR.txt").write_text("not DICOM")
    with open_slide(bare) as got, open_slide(dicom_path) as want:
        assert got.path == bare and got.stored_level_count == 5
        assert np.array_equal(got.levels[2].compute(), want.levels[2].compute())
    with open_slide(bare / level0_instance(dicom_path).stem) as one:  # DICM, no suffix
        assert one.vendor == "dicom" and one.stored_level_count == 5


def test_backends_for_a_dicom_folder(dicom_path):
    with open_slide(dicom_path, backend="dicom") as forced, open_slide(dicom_path) as auto:
        assert forced.stored_level_count == auto.stored_level_count == 5
    with pytest.warns(UserWarning, match="levels 1, 2, 3, which are left out"):
        by_openslide = open_slide(dicom_path, backend="openslide")
    with by_openslide:
        assert by_openslide.stored_level_count == 2
        assert not any(isinstance(r, DicomLevel) for r in by_openslide.tile_readers)
    with pytest.raises(SlideError, match="with backend 'tifffile': it is a folder .*'dicom'"):
        open_slide(dicom_path, backend="tifffile")


def test_regions_edges_and_threads(dicom_path):
    with open_slide(dicom_path) as slide:
        level = slide.levels[1]
        whole = level.compute()
        for y0, y1, x0, x1, step in [(5, 7, 3, 1100, 1), (1440, 1484, 1000, 1110, 1),
                                     (100, 1400, 50, 999, 7)]:
            assert np.array_equal(level[y0:y1:step, x0:x1:step].compute(),
                                  whole[y0:y1:step, x0:x1:step])
        reader = slide.reader(1)
        assert isinstance(reader, DicomLevel) and reader.cached_edge_tiles > 0
        with ThreadPoolExecutor(4) as pool:
            got = reader.read_tiles((slice(0, 1484), slice(0, 1110)), pool.map)
        assert np.array_equal(got, whole)
        needed = reader.read_tiles((slice(0, 480), slice(0, 480)),
                                   needed=lambda y0, y1, x0, x1: y0 == 0)
        assert np.array_equal(needed[:240], whole[:240, :480])


def test_reading_after_close_is_a_slide_error(dicom_path):
    slide = open_slide(dicom_path)
    label = slide.associated["label"]
    slide.close()
    slide.close()  # twice is fine
    with pytest.raises(SlideError, match="the slide was closed") as info:
        slide.levels[0][:10, :10].compute()
    assert str(dicom_path) in str(info.value)
    with pytest.raises(SlideError, match="the slide was closed"):
        label.compute()


def test_closing_while_reads_run(dicom_path):
    """Reads running when the slide closes finish or fail as "the slide was closed"."""
    slide = open_slide(dicom_path)
    level = slide.raw_levels[0]

    def read(i: int) -> str:
        try:
            block = level[(i * 97) % 2000 :, (i * 61) % 1500 :][:900, :700].compute(
                scheduler="synchronous")
            return "read" if block.std() > 1 else "blank"
        except SlideError as exc:
            assert "the slide was closed" in str(exc)
            return "closed"

    with ThreadPoolExecutor(4) as pool:
        results = [pool.submit(read, i) for i in range(40)]
        slide.close()
        outcomes = {r.result() for r in results}
    assert outcomes <= {"read", "closed"} and "closed" in outcomes


def test_errors(tmp_path, dicom_path):
    garbage = tmp_path / "slide.dcm"
    garbage.write_bytes(bytes(range(256)) * 8)
    expect_error(garbage, "it is not a DICOM file", "open a DICOM WSI folder")
    only_label = tmp_path / "label-only"
    only_label.mkdir()
    shutil.copy(dicom_path / LABEL_INSTANCE, only_label)
    expect_error(only_label, "its 1 DICOM file holds no whole-slide pyramid level (1 label image)",
                 "open the folder that holds the whole slide")
    garbage_folder = tmp_path / "garbage"
    garbage_folder.mkdir()
    shutil.copy(garbage, garbage_folder)
    expect_error(garbage_folder, "holds no whole-slide pyramid level (1 not DICOM)")
    with pytest.raises(SlideError, match="it is not a DICOM file"):
        open_slide(garbage, backend="dicom")


def test_a_transfer_syntax_without_a_decoder(dicom_path, tmp_path):
    """A real level whose header says MPEG-2 (no decoder reads it): one sentence naming it."""
    folder = tmp_path / "mpeg2"
    folder.mkdir()
    dataset = pydicom.dcmread(min(
        (p for p in dicom_path.glob("*.dcm") if p.name != LABEL_INSTANCE),
        key=lambda p: p.stat().st_size))
    dataset.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")
    dataset.save_as(folder / "level.dcm", enforce_file_format=True)
    expect_error(folder, "level.dcm is compressed as MPEG2 Main Profile / Main Level, which "
                 "this installation cannot decode", "pip install -U imagecodecs")


def dab_heatmap(slide, out, tissue_threshold):
    """``patchheat run``'s job, end to end, with the built-in 'dab' model at level 0."""
    from napari_patchheat.heatmap import Heatmap
    from napari_patchheat.jobs import JobOutputs, run_job
    from napari_patchheat.options import RunOptions

    options = RunOptions(size=224, stride=160, tissue_threshold=tissue_threshold,
                         use_cache=False)
    files = run_job(slide, "dab", out, JobOutputs(("npz",)), options, quiet=True)
    assert files["npz"].name == f"{slide.name.removesuffix('.svs')}.dab.npz"
    return Heatmap.load_npz(files["npz"])


@pytest.mark.parametrize("tissue_threshold", [0.0, 0.5])
def test_a_run_through_the_folder_equals_the_run_through_the_svs(
        dicom_path, svs_path, tmp_path, tissue_threshold):
    """Every level present, so the tissue mask is read from the same level as the SVS's."""
    want = dab_heatmap(svs_path, tmp_path / "svs", tissue_threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no level left out
        got = dab_heatmap(dicom_path, tmp_path / "dicom", tissue_threshold)
    assert got.level == want.level == 0 and got.grid == want.grid
    assert np.nanstd(want.values) > 0.01
    if tissue_threshold == 0:
        assert not np.isnan(want.values).any()  # all computed
    else:
        assert 0 < np.isnan(want.values).sum() < want.values.size  # some skipped
    assert np.array_equal(np.isnan(got.values), np.isnan(want.values))
    assert np.array_equal(got.values, want.values, equal_nan=True)
