"""The OpenSlide backend (slide/openslide_reader.py): the same pixels and metadata as the
tifffile backend on the real SVS and NDPI, DICOM WSI folders and files (``backend="openslide"``;
``"auto"`` reads them with wsidicom: test_slide_dicom.py), closing and errors."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import tifffile
from slide_checks import expect_error

from napari_patchheat.slide import SlideError, open_slide
from napari_patchheat.slide.openslide_reader import OpenSlideLevelWarning

LABEL_INSTANCE = "1.2.826.0.1.3680043.8.498.62911140482695790995152712222076536957.dcm"


def open_dicom(path):
    """The DICOM slide read by OpenSlide, with its warning about the levels it cannot read."""
    with pytest.warns(OpenSlideLevelWarning, match="levels 1, 2, 3, which are left out") as info:
        slide = open_slide(path, backend="openslide")
    assert "Dimensional mismatch reading JPEG" in str(info[0].message)
    return slide


def level0_instance(folder):
    return max(folder.glob("*.dcm"), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("name", ["svs_path", "ndpi_path"])
def test_openslide_equals_tifffile(name, request):
    path = request.getfixturevalue(name)
    with open_slide(path, backend="tifffile") as ref, open_slide(path, backend="openslide") as got:
        assert got.stored_level_count >= ref.stored_level_count
        for k in range(ref.stored_level_count):
            want = ref.levels[k].compute()
            assert want.std() > 1  # real pixels: the comparison can fail
            assert got.levels[k].shape == want.shape
            assert np.array_equal(got.levels[k].compute(), want), f"level {k}"
        np.testing.assert_allclose(got.mpp, ref.mpp, rtol=1e-4)
        assert got.objective_power == ref.objective_power and got.objective_power in (20, 40)
        assert got.vendor == ref.vendor
        both = set(ref.associated) & set(got.associated)  # OpenSlide has no NDPI "map"
        assert "macro" in both
        for name in both:
            assert np.array_equal(got.associated[name].compute(),
                                  ref.associated[name].compute()), name


def test_ndpi_keeps_openslide_s_own_lower_levels(ndpi_path):
    with open_slide(ndpi_path, backend="openslide") as slide:
        # 4 pages in the file; OpenSlide adds 3 from the JPEG's scaled decoding
        assert slide.stored_level_count == 7
        assert slide.downsamples == [(2.0**k, 2.0**k) for k in range(7)]
        assert slide.tile_shapes[0] == (8, 3968)  # NDPI's restart-interval strips


def test_svs_by_openslide(svs_path):
    with open_slide(svs_path, backend="openslide") as slide:
        assert slide.vendor == "aperio" and slide.mpp == (0.499, 0.499)
        assert slide.tile_shapes == [(240, 240)]
        assert slide.raw_levels[0].chunksize == (960, 960, 3)  # 4 x 4 tiles
        assert slide.levels[0] is slide.raw_levels[0]  # made RGB in the read: regions pass in
        assert slide.icc_profile is None  # the SVS has none


def test_alpha_is_composited_over_white(svs_path):
    """OpenSlide's RGBA: opaque on the SVS; past the level's edge (as a scanner's no-data
    areas) transparent, which reads as white glass."""
    from napari_patchheat.slide.openslide_reader import OpenSlideHandle, OpenSlideLevel

    handle = OpenSlideHandle(svs_path, svs_path)
    try:
        rgba = handle.read(0, 2200, 2900, 40, 100, "level 0")  # 20 x 67 px inside
        assert (rgba[:67, :20, 3] == 255).all() and (rgba[67:, :, 3] == 0).all()
        assert (rgba[:, 20:, 3] == 0).all() and rgba[:67, :20, :3].std() > 1
        level = OpenSlideLevel(handle, 0, "level 0")
        level.shape = (3000, 2300, 3)  # as if the level went on where OpenSlide has no data
        rgb = level[2900:3000, 2200:2240]
        assert np.array_equal(rgb[:67, :20], rgba[:67, :20, :3])
        assert (rgb[67:] == 255).all() and (rgb[:, 20:] == 255).all()
    finally:
        handle.close()


def test_dicom_folder(dicom_path, svs_path):
    slide = open_dicom(dicom_path)
    with slide:
        assert slide.path == dicom_path and slide.vendor == "dicom"
        assert slide.mpp == (0.499, 0.499) and slide.objective_power is None
        # OpenSlide reports 5 levels; 1-3 have short edge tiles it cannot decode
        assert [lv.shape[:2] for lv in slide.levels] == [(2967, 2220), (186, 139)]
        assert slide.downsamples[1] == (2967 / 186, 2220 / 139)
        level0 = slide.levels[0].compute()
        want = tifffile.imread(svs_path)
        assert want.std() > 1 and np.array_equal(level0, want)
        assert {k: v.shape for k, v in slide.associated.items()} == {
            "label": (463, 387, 3), "macro": (431, 1280, 3), "thumbnail": (768, 574, 3)}
        for image in slide.associated.values():
            assert image.dtype == np.uint8 and image.compute().std() > 1
        assert len(slide.icc_profile) == 588 and slide.icc_profile[36:40] == b"acsp"
        thumb = slide.thumbnail(128)
        assert thumb.shape == (128, 96, 3) and thumb.std() > 1


def test_a_dcm_file_and_its_folder_give_the_same_slide(dicom_path):
    file = level0_instance(dicom_path)
    with open_dicom(dicom_path) as folder, open_dicom(file) as one:
        assert one.path == file and folder.path == dicom_path
        assert [lv.shape for lv in one.levels] == [lv.shape for lv in folder.levels]
        assert (one.mpp, one.vendor, set(one.associated)) == (
            folder.mpp, folder.vendor, set(folder.associated))
        for a, b in zip(one.levels, folder.levels):
            assert np.array_equal(a[1000:1500, 300:900].compute(), b[1000:1500, 300:900].compute())
        assert one.identity != folder.identity  # the path is part of it


def test_the_identity_of_a_folder_follows_the_file_read(dicom_path, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dicom_path, copy)
    with open_dicom(copy) as before:
        identity = before.identity
    with open_dicom(copy) as again:
        assert again.identity == identity
    file = level0_instance(copy)
    file.write_bytes(file.read_bytes())  # same bytes, a new modification time
    with open_dicom(copy) as after:
        assert after.identity != identity


def test_dicom_files_without_a_suffix(dicom_path, tmp_path):
    """DICOM exports often name files without .dcm: their first bytes say DICOM."""
    bare = tmp_path / "export"
    bare.mkdir()
    for file in dicom_path.glob("*.dcm"):
        shutil.copy(file, bare / file.stem)
    (bare / "DICOMDIR.txt").write_text("not DICOM")
    with open_dicom(bare) as got, open_dicom(dicom_path) as want:
        assert got.path == bare and [lv.shape for lv in got.levels] == [
            lv.shape for lv in want.levels]
        assert np.array_equal(got.levels[0][:600, :700].compute(),
                              want.levels[0][:600, :700].compute())


def test_openslide_reads_a_dicom_folder_when_asked(dicom_path):
    with open_dicom(dicom_path) as forced, open_slide(dicom_path) as auto:
        assert auto.vendor == forced.vendor == "dicom"  # OpenSlide's vendor name, kept
        assert (forced.stored_level_count, auto.stored_level_count) == (2, 5)
        assert np.array_equal(auto.levels[0][:500, :600].compute(),
                              forced.levels[0][:500, :600].compute())


def test_regions_read_from_inside_chunks(dicom_path):
    with open_dicom(dicom_path) as slide:
        level = slide.levels[0]
        whole = level.compute()
        for y0, y1, x0, x1, step in [(5, 7, 3, 1100, 1), (2960, 2967, 2000, 2220, 1),
                                     (100, 1900, 50, 999, 7)]:
            part = level[y0:y1:step, x0:x1:step].compute()
            assert np.array_equal(part, whole[y0:y1:step, x0:x1:step])
        assert slide.levels[0][[3, 900, 2000], 7].compute().tolist() == whole[[3, 900, 2000],
                                                                              7].tolist()


def test_reading_after_close_is_a_slide_error(dicom_path, svs_path):
    slide = open_dicom(dicom_path)
    label = slide.associated["label"]
    slide.close()
    slide.close()  # twice is fine
    with pytest.raises(SlideError, match="the slide was closed") as info:
        slide.levels[0][:10, :10].compute()
    assert str(dicom_path) in str(info.value)
    with pytest.raises(SlideError, match="the slide was closed"):
        label.compute()
    with open_slide(svs_path, backend="openslide") as svs:
        pass
    with pytest.raises(SlideError, match="the slide was closed"):
        svs.levels[0][:10, :10].compute()


def test_a_failed_read_leaves_the_slide_readable(dicom_path):
    """OpenSlide keeps an error for good; the reader opens the file again for the next reads."""
    from napari_patchheat.slide.openslide_reader import OpenSlideHandle, OpenSlideLevel

    handle = OpenSlideHandle(level0_instance(dicom_path), dicom_path)
    try:
        level1 = OpenSlideLevel(handle, 1, "level 1")
        with pytest.raises(SlideError, match="Dimensional mismatch") as info:
            level1[1480:, :]  # its bottom row of tiles is short
        assert str(dicom_path) in str(info.value) and "level 1" in str(info.value)
        top = level1[:100, :100]
        assert top.shape == (100, 100, 3) and top.std() > 1
    finally:
        handle.close()


def test_errors(tmp_path, dicom_path):
    garbage = tmp_path / "slide.mrxs"
    garbage.write_bytes(bytes(range(256)) * 8)
    expect_error(garbage, "OpenSlide does not recognise it", "the plugin reads", "MRXS")
    only_label = tmp_path / "label-only"
    only_label.mkdir()
    shutil.copy(dicom_path / LABEL_INSTANCE, only_label)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning from a file that never opened
        with pytest.raises(SlideError, match="OpenSlide finds no DICOM slide in its 1 DICOM "
                           "file .*No pyramid levels found") as info:
            open_slide(only_label, backend="openslide")
    assert info.value.path == str(only_label)
    with pytest.raises(SlideError, match="does not recognise it as a slide") as info:
        open_slide(garbage, backend="openslide")
    assert info.value.path == str(garbage)



def test_closing_while_reads_run(svs_path):
    """close() waits for the reads running (closing under one would free its memory)."""
    from concurrent.futures import ThreadPoolExecutor

    slide = open_slide(svs_path, backend="openslide")
    level = slide.raw_levels[0]

    def read(i: int) -> str:
        try:
            block = level[(i * 97) % 2000 :, (i * 61) % 1500 :][:900, :700].compute(
                scheduler="synchronous")
            return "read" if block[..., :3].std() > 1 else "blank"
        except SlideError as exc:
            assert "the slide was closed" in str(exc)
            return "closed"

    with ThreadPoolExecutor(4) as pool:
        results = [pool.submit(read, i) for i in range(40)]
        slide.close()
        outcomes = {r.result() for r in results}
    assert outcomes <= {"read", "closed"} and "closed" in outcomes


def test_levels_with_a_fractional_downsample_are_resampled_by_openslide(dicom_path):
    """OpenSlide takes a level-0 location and divides it by the level's downsample: where that
    is not a whole number (15.96 at the DICOM's level 4) a region read off the level's origin
    lands a fraction of a pixel off and is resampled (docs/slides.md). Level 0 is exact."""
    from napari_patchheat.slide.openslide_reader import OpenSlideHandle, OpenSlideLevel

    handle = OpenSlideHandle(level0_instance(dicom_path), dicom_path)
    try:
        level = OpenSlideLevel(handle, 4, "level 4")
        assert level.downsample % 1 > 0.9
        whole = level[:, :].astype(int)  # read from the origin: the stored pixels
        diffs = [np.abs(level[y:y + 64, x:x + 64] - whole[y:y + 64, x:x + 64]).max()
                 for y, x in [(1, 1), (50, 30), (100, 70), (121, 74)]]
        assert 0 < max(diffs) <= 32, diffs
    finally:
        handle.close()
