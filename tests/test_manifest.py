"""The batch manifest: its files, what counts as done, the slide lists."""

from pathlib import Path

import pytest

from napari_patchheat.manifest import (
    MANIFEST_CSV,
    MANIFEST_JSON,
    Manifest,
    SlideRow,
    read_slide_list,
)


def done_row(tmp_path: Path, name: str) -> SlideRow:
    npz = tmp_path / f"{name}.dab.npz"
    npz.write_bytes(b"x")
    return SlideRow(str(tmp_path / f"{name}.svs"), "ok", patches=10, computed=10, seconds=2.0,
                    outputs={"npz": str(npz)})


def test_the_manifest_round_trips_and_is_written_whole(tmp_path):
    rows = [done_row(tmp_path, "a"),
            SlideRow(str(tmp_path / "b.svs"), "failed", error="Cannot open b.svs, a, \"b\"."),
            SlideRow(str(tmp_path / "c.svs"))]
    m = Manifest("k1", rows, "dab", {"size": [64, 64]})
    m.write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if "batch" in p.name) == [
        MANIFEST_CSV, MANIFEST_JSON]  # no temporary file left
    back = Manifest.read(tmp_path)
    assert back == m
    csv = (tmp_path / MANIFEST_CSV).read_text().splitlines()
    assert csv[0].startswith("slide,status,patches,computed,seconds,patches_per_s")
    assert csv[1].endswith(f",ok,10,10,2.000,5.0,0,,npz={tmp_path / 'a.dab.npz'}")
    assert csv[2].endswith(',failed,0,0,0.000,0.0,0,"Cannot open b.svs, a, ""b"".",')
    assert m.summary == "3 slides: 1 ok, 1 failed, 1 pending"
    assert Manifest.read(tmp_path / "elsewhere") is None


def test_done_rows_need_the_same_key_and_every_output(tmp_path):
    a, b = done_row(tmp_path, "a"), done_row(tmp_path, "b")
    m = Manifest("k1", [a, b])
    Path(b.outputs["npz"]).unlink()
    assert list(m.done_rows("k1")) == [a.slide]
    assert m.done_rows("k2") == {}
    with pytest.raises(ValueError, match="status='done'"):
        SlideRow("x", "done")


def test_an_ome_zarr_output_is_there_when_its_folder_is(tmp_path):
    a = done_row(tmp_path, "a")
    a.outputs["omezarr"] = str(tmp_path / "a.dab.ome.zarr")
    assert list(Manifest("k1", [a]).done_rows("k1")) == []
    (tmp_path / "a.dab.ome.zarr").mkdir()
    assert list(Manifest("k1", [a]).done_rows("k1")) == [a.slide]


def test_slide_lists_in_text_and_csv(tmp_path):
    (tmp_path / "l.txt").write_text("# slides\na.svs\n\n /abs/b.svs  # the second\n")
    assert read_slide_list(tmp_path / "l.txt") == [tmp_path / "a.svs", Path("/abs/b.svs")]
    (tmp_path / "l.csv").write_text("case,slide\n1,a.svs\n2,c/d.svs\n")
    assert read_slide_list(tmp_path / "l.csv") == [tmp_path / "a.svs", tmp_path / "c/d.svs"]
    (tmp_path / "n.csv").write_text("a.svs,1\nb.svs,2\n")
    assert read_slide_list(tmp_path / "n.csv") == [tmp_path / "a.svs", tmp_path / "b.svs"]


def test_a_deeply_nested_or_binary_manifest_is_no_manifest_and_is_replaced(tmp_path):
    for content in (b"[" * 200_000, bytes(range(256))):
        (tmp_path / MANIFEST_JSON).write_bytes(content)
        assert Manifest.read(tmp_path) is None  # a later batch starts afresh, never a traceback
    Manifest("k", [done_row(tmp_path, "a")]).write(tmp_path)
    assert Manifest.read(tmp_path).rows[0].status == "ok"
