"""Sessions: a viewer saved, closed and opened in a new viewer with every layer equal (values,
place, display, order: slides, heatmaps, Shapes, Labels, Points, regions with their numbers) and
the camera; the dock's parameters and regions table, also when the dock opens after the session
(`patchheat open`); a moved slide; a missing slide; an unknown version; a version 1 file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from gui_helpers import random_heatmap
from napari.utils.colormaps import Colormap

from napari_patchheat import open_session, save_session
from napari_patchheat._qt.canvas import camera, is_outline_layer
from napari_patchheat._qt.display_settings import colormap_name, show_values, threshold_of
from napari_patchheat._qt.roi_panel import REGIONS_META_KEY
from napari_patchheat._qt.session_io import dock_parameters
from napari_patchheat._qt.slide_layer import SlideLayer
from napari_patchheat._reader import read_slides
from napari_patchheat.heatmap import HEATMAP_META_KEY
from napari_patchheat.session import SessionError, heatmaps_folder

DISPLAY = ("name", "visible", "opacity", "blending", "gamma", "units")


KINDS = ["Image", "Shapes", "Image", "Image", "Labels", "Points", "Shapes"]
SAVED = ("Image", "Shapes", "Labels", "Points")


def add_mask(viewer, slide):
    """A Labels layer over level 1 of ``slide`` (values beyond a byte), placed on it."""
    h, w = slide.level_shape(1)
    mask = np.zeros((h, w), np.uint16)
    mask[h // 4: h // 2, w // 3:] = 300
    mask[: h // 8, : w // 8] = 2
    dy, dx = slide.downsamples[1]
    scale = (slide.world_per_px[0] * dy, slide.world_per_px[1] * dx)
    centre = slide.world_offset + (np.array(scale) - slide.world_per_px) / 2
    return viewer.add_labels(mask, scale=scale, translate=tuple(centre), name="tumour mask",
                             opacity=0.4, units=("µm", "µm"))


def build_session(viewer, widget, slide_file, session):
    """The slide, a 2-class heatmap over it, a Shapes ROI, a Labels ROI, points, the regions of
    the second heatmap with their numbers; display, camera and the dock's parameters changed;
    saved. The layers saved, in their order."""
    data, kwargs, _ = read_slides(str(slide_file))[0]
    slide_layer = viewer.add_image(data, **kwargs)
    slide = SlideLayer.from_layer(slide_layer)
    widget.display.show_heatmap(random_heatmap(slide, 1, 224, 224), slide)
    widget.display.show_heatmap(random_heatmap(slide, 0, 96, 64, seed=1, model="toy2"), slide)
    roi = viewer.add_shapes([np.array([[100.0, 200.0], [900.0, 250.0], [800.0, 1500.0]])],
                            shape_type="polygon", name="ROI 1", edge_color="yellow",
                            units=("µm", "µm"))
    roi.add_ellipses(np.array([[2000.0, 2000.0], [2600.0, 2000.0], [2600.0, 3100.0],
                               [2000.0, 3100.0]]))
    mask = add_mask(viewer, slide)
    viewer.add_points(np.array([[120.5, 300.25], [2000.0, 1500.0], [3.0, 4.0]]), name="mitoses",
                      size=[20, 30, 40], face_color=["red", "blue", "#00ff0080"],
                      symbol=["disc", "cross", "square"], units=("µm", "µm"))
    heat = [layer for layer in viewer.layers if HEATMAP_META_KEY in layer.metadata]
    heat[0].opacity = 0.6
    show_values(heat[0], "viridis", (0.2, 0.7), 0.45)  # the dock's value range and threshold
    heat[-1].visible = False
    heat[-1].colormap = Colormap([[0, 0, 0, 0], [1, 0, 0, 1], [1, 1, 0, 1]], name="mine",
                                 controls=[0, 0.4, 0.7, 1], interpolation="zero")
    widget.region.layer.value = mask  # the region of interest: a row of the table
    widget.regions.threshold.value, widget.regions.min_cells.value = 0.9, 2
    viewer.layers.selection.active = heat[-1]  # its regions (1,564 cells)
    assert widget.regions.compute() and widget.regions.report.left_out > 0
    viewer.layers.move(viewer.layers.index(roi), 1)  # the ROI under the heatmaps
    camera(viewer).center, camera(viewer).zoom = (1500.0, 2500.0), 0.37
    widget.stride.value, widget.tissue_threshold.value = 112, 0.35
    widget.region.min_fraction.value, widget.show_grid.value = 0.3, False
    save_session(viewer, session, dock=widget)
    return [layer for layer in viewer.layers if type(layer).__name__ in SAVED
            and not is_outline_layer(layer)]


def assert_same_layer(a, b):
    assert type(a) is type(b)
    for name in DISPLAY:
        if hasattr(a, name):
            assert getattr(a, name) == pytest.approx(getattr(b, name)), name
    assert np.allclose(a.scale, b.scale) and np.allclose(a.translate, b.translate)
    if type(a).__name__ == "Shapes":
        assert a.shape_type == b.shape_type
        assert all(np.array_equal(p, q) for p, q in zip(a.data, b.data, strict=True))
        assert np.array_equal(a.edge_color, b.edge_color)
        assert (REGIONS_META_KEY in a.metadata) == (REGIONS_META_KEY in b.metadata)
        if REGIONS_META_KEY in a.metadata:  # the numbers (NaN and all)
            assert rows_text(a.metadata[REGIONS_META_KEY]) == rows_text(
                b.metadata[REGIONS_META_KEY])
    elif type(a).__name__ == "Labels":
        assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data)
    elif type(a).__name__ == "Points":
        assert np.array_equal(a.data, b.data) and np.array_equal(a.size, b.size)
        assert np.array_equal(a.face_color, b.face_color)
        assert np.array_equal(a.border_color, b.border_color)
        assert list(a.symbol) == list(b.symbol)
    elif HEATMAP_META_KEY in a.metadata:
        assert np.array_equal(a.data, b.data, equal_nan=True)
        assert np.array_equal(a.colormap.colors, b.colormap.colors)
        assert np.array_equal(a.colormap.controls, b.colormap.controls)
        assert a.colormap.interpolation == b.colormap.interpolation
        assert tuple(a.contrast_limits) == pytest.approx(tuple(b.contrast_limits))
        assert threshold_of(a) == threshold_of(b) and colormap_name(a) == colormap_name(b)
        assert a.metadata[HEATMAP_META_KEY].grid == b.metadata[HEATMAP_META_KEY].grid
    else:  # a slide: level 0 read again
        assert a.metadata["path"] == b.metadata["path"]
        assert np.array_equal(np.asarray(a.data[0][:512, :512]), np.asarray(b.data[0][:512, :512]))


def rows_text(report) -> str:
    """A regions layer's numbers as text: equal when every number is (NaN included)."""
    return json.dumps([vars(row) for row in report.rows])


def table_of(dock) -> tuple:
    """What the dock's regions table and its line show."""
    value = dock.regions.table.value
    return value["data"], list(value["columns"]), dock.regions.info.value


def test_a_session_opens_in_a_new_viewer_as_it_was_saved(make_napari_viewer, viewer, widget,
                                                        svs_path, tmp_path):
    session = tmp_path / "morning.patchheat.json"
    before = build_session(viewer, widget, svs_path, session)
    assert [type(x).__name__ for x in before] == KINDS
    assert np.nanstd(before[2].data) > 0.1  # the references vary
    assert len(np.unique(before[4].data)) == 3 and len(before[6].data) > 4
    saved = (tuple(camera(viewer).center), camera(viewer).zoom)
    viewer.close()

    fresh = make_napari_viewer()
    added = open_session(session, fresh)
    assert len(added) == len(before)
    for a, b in zip(before, added, strict=True):
        assert_same_layer(a, b)
    assert [x.name for x in fresh.layers] == [x.name for x in before]
    assert colormap_name(fresh.layers[2]) == "viridis" and fresh.layers[3].visible is False
    assert threshold_of(fresh.layers[2]) == 0.45  # "show at or above" kept
    assert tuple(camera(fresh).center)[-2:] == pytest.approx(saved[0][-2:])
    assert camera(fresh).zoom == pytest.approx(saved[1])
    doc = json.loads(session.read_text())
    assert doc["version"] == 2 and doc["dock"]["stride"] == 112
    assert doc["dock"]["tissue_threshold"] == pytest.approx(0.35)


def test_a_moved_slide_is_found_through_slide_paths_or_named(make_napari_viewer, viewer, widget,
                                                            svs_path, tmp_path):
    slide = tmp_path / "here" / svs_path.name
    slide.parent.mkdir()
    try:
        slide.symlink_to(svs_path)
    except OSError:
        shutil.copy(svs_path, slide)
    session = tmp_path / "s.patchheat.json"
    before = build_session(viewer, widget, slide, session)
    assert json.loads(session.read_text())["layers"][0]["slide"] == f"here/{svs_path.name}"
    moved = tmp_path / "moved" / svs_path.name
    moved.parent.mkdir()
    slide.rename(moved)
    fresh = make_napari_viewer()
    with pytest.raises(SessionError, match=f"The slide here/{svs_path.name} of the session"):
        open_session(session, fresh)
    assert len(fresh.layers) == 0  # nothing added before the question
    added = open_session(session, fresh, slide_paths={f"here/{svs_path.name}": str(moved)})
    assert added[0].metadata["path"] == str(moved)
    for a, b in zip(before[1:], added[1:], strict=True):
        assert_same_layer(a, b)
    assert added[2].metadata[HEATMAP_META_KEY].slide_path in ("", str(moved))


def test_a_session_of_an_unknown_version_is_one_sentence(viewer, widget, svs_path, tmp_path):
    session = tmp_path / "s.patchheat.json"
    build_session(viewer, widget, svs_path, session)
    assert len(list(heatmaps_folder(session).glob("*.ome.zarr"))) == 2
    doc = json.loads(session.read_text())
    session.write_text(json.dumps({**doc, "version": 7}))
    n = len(viewer.layers)
    with pytest.raises(SessionError, match=r"is of version 7, .* update napari-patchheat\.$"):
        open_session(session, viewer)
    assert len(viewer.layers) == n


def test_the_dock_buttons_save_and_open_asking_once_for_a_moved_slide(
        make_napari_viewer, viewer, widget, svs_path, tmp_path, monkeypatch, qtbot):
    from napari_patchheat._qt.widget import PatchHeatWidget

    slide = tmp_path / "here" / svs_path.name
    slide.parent.mkdir()
    slide.symlink_to(svs_path)
    before = build_session(viewer, widget, slide, tmp_path / "first.patchheat.json")
    answers = [str(tmp_path / "by-button")]  # the suffix is added
    asked: list[str] = []

    def ask(save, caption, name_filter):
        asked.append(caption)
        return answers.pop(0)

    monkeypatch.setattr("napari_patchheat._qt.session_panel.ask_file", ask)
    assert widget.sessions.save() == tmp_path / "by-button.patchheat.json"
    moved = tmp_path / "moved" / svs_path.name
    moved.parent.mkdir()
    slide.rename(moved)
    viewer.close()

    fresh = make_napari_viewer()
    dock = PatchHeatWidget(fresh)
    fresh.window.add_dock_widget(dock, name="PatchHeat")
    try:
        assert dock.stride.value != 112
        answers[:] = [str(tmp_path / "by-button.patchheat.json"), str(moved)]
        added = dock.sessions.open()
        assert asked[1:] == ["Open session", f"Where is the slide {svs_path.name} now?"]
        assert added is not None and added[0].metadata["path"] == str(moved)
        for a, b in zip(before[1:], added[1:], strict=True):
            assert_same_layer(a, b)
        assert dock.stride.value == 112 and dock.tissue_threshold.value == pytest.approx(0.35)
    finally:
        dock.run_panel.shutdown()
        qtbot.waitUntil(lambda: dock.workers.idle, timeout=30_000)


def test_patchheat_open_takes_a_session(make_napari_viewer, viewer, widget, svs_path, tmp_path):
    from napari_patchheat._qt.session_io import open_in_viewer

    session = tmp_path / "s.patchheat.json"
    before = build_session(viewer, widget, svs_path, session)
    fresh = make_napari_viewer()
    added = open_in_viewer(fresh, session)  # what `patchheat open SESSION` calls
    for a, b in zip(before, added, strict=True):
        assert_same_layer(a, b)
    slide = open_in_viewer(fresh, svs_path)  # a slide as before
    assert [x.metadata["path"] for x in slide] == [str(svs_path)]


def test_the_buttons_say_in_one_sentence_what_failed(viewer, widget, svs_path, tmp_path,
                                                     monkeypatch, errors):
    session = tmp_path / "s.patchheat.json"
    build_session(viewer, widget, svs_path, session)
    session.write_text(json.dumps({**json.loads(session.read_text()), "version": 9}))
    answers = [str(tmp_path / "no" / "folder" / "x.patchheat.json"), str(session)]
    monkeypatch.setattr("napari_patchheat._qt.session_panel.ask_file",
                        lambda *_: answers.pop(0))
    n = len(viewer.layers)
    assert widget.sessions.save() is None
    assert widget.sessions.open() is None
    assert len(viewer.layers) == n
    assert len(errors) == 2 and errors[0].startswith("PatchHeat: Cannot write to the folder")
    assert "no/folder" in errors[0] and "is of version 9" in errors[1]
    assert not (tmp_path / "no").exists()


def test_patchheat_open_gives_the_dock_the_sessions_parameters_and_regions_table(
        viewer, widget, svs_path, tmp_path, qtbot, monkeypatch):
    import napari

    from napari_patchheat.cli import open_viewer

    session = tmp_path / "s.patchheat.json"
    build_session(viewer, widget, svs_path, session)
    params, table = dock_parameters(widget), table_of(widget)
    assert params["region"] == "tumour mask" and params["stride"] == 112
    assert params["show_grid"] is False and params["region.min_fraction"] == pytest.approx(0.3)
    rows = table[0]
    assert len(rows) > 3 and rows[1][0] == "mask" and len({r[3] for r in rows}) > 2
    widget.display.export_folder.value, widget.display.export_stem.value = tmp_path / "a", "cmu"
    csv = widget.regions.export()["csv"].read_text()
    viewer.close()
    seen = {}

    def run() -> None:  # napari's event loop, as `patchheat open SESSION` reaches it
        fresh = napari.current_viewer()
        dock = fresh.window.dock_widgets["PatchHeat (napari-patchheat)"]
        try:
            seen.update(params=dock_parameters(dock), table=table_of(dock),
                        region=dock.region.layer.value is fresh.layers["tumour mask"],
                        regions=dock.regions.layer is fresh.layers[-1],
                        settings=(dock.regions.threshold.value, dock.regions.min_cells.value))
            dock.display.export_folder.value = tmp_path / "b"
            dock.display.export_stem.value = "cmu"
            seen["csv"] = dock.regions.export()["csv"].read_text()
        finally:
            dock.run_panel.shutdown()
            qtbot.waitUntil(lambda: dock.workers.idle, timeout=30_000)
            fresh.close()

    monkeypatch.setattr(napari, "run", run)
    assert open_viewer(session, []) == 0  # the layers, then the dock (cli.py)
    assert seen["params"] == params and seen["table"] == table
    assert seen["region"] and seen["regions"] and seen["settings"] == (0.9, 2)
    assert seen["csv"] == csv  # the same numbers written


def test_a_session_opened_from_python_fills_the_open_dock(make_napari_viewer, viewer, widget,
                                                          svs_path, tmp_path, qtbot):
    from napari_patchheat._qt.widget import PatchHeatWidget

    session = tmp_path / "s.patchheat.json"
    build_session(viewer, widget, svs_path, session)
    params, table = dock_parameters(widget), table_of(widget)
    viewer.close()
    fresh = make_napari_viewer()
    dock = PatchHeatWidget(fresh)
    fresh.window.add_dock_widget(dock, name="PatchHeat")
    try:
        assert dock_parameters(dock) != params and not dock.regions.export_button.enabled
        open_session(session, fresh)  # no dock given: the viewer's open dock
        assert dock_parameters(dock) == params and table_of(dock) == table
        again = save_session(fresh, tmp_path / "again.patchheat.json")  # its parameters too
        assert json.loads(again.read_text())["dock"] == json.loads(session.read_text())["dock"]
    finally:
        dock.run_panel.shutdown()
        qtbot.waitUntil(lambda: dock.workers.idle, timeout=30_000)


def test_a_version_1_session_opens_as_it_was(make_napari_viewer, viewer, widget, svs_path,
                                             tmp_path):
    """What version 1 wrote: slides, heatmaps, Shapes, no region numbers, fewer parameters."""
    session = tmp_path / "s.patchheat.json"
    before = build_session(viewer, widget, svs_path, session)
    doc = json.loads(session.read_text())
    kept = [i for i, layer in enumerate(doc["layers"])
            if not {"labels", "points", "regions"} & set(layer)]
    old_dock = {k: v for k, v in doc["dock"].items()
                if k not in ("show_grid", "region", "region.min_fraction", "region.centre")}
    session.write_text(json.dumps({**doc, "version": 1, "dock": old_dock,
                                   "layers": [doc["layers"][i] for i in kept]}))
    fresh = make_napari_viewer()
    dock = PatchHeatWidget_in(fresh)
    added = open_session(session, fresh)
    assert [type(x).__name__ for x in added] == ["Image", "Shapes", "Image", "Image"]
    for i, b in zip(kept, added, strict=True):
        assert_same_layer(before[i], b)
    assert dock.stride.value == 112 and dock.show_grid.value is True  # as the file says
    assert not dock.regions.export_button.enabled


def PatchHeatWidget_in(viewer):
    from napari_patchheat._qt.widget import PatchHeatWidget

    dock = PatchHeatWidget(viewer)
    viewer.window.add_dock_widget(dock, name="PatchHeat")
    return dock


def test_the_session_buttons_are_there_before_any_heatmap(viewer, widget):
    assert not any(HEATMAP_META_KEY in layer.metadata for layer in viewer.layers)
    row = widget.sessions.native
    assert row.isVisible() and row.parent() is widget.scroll.widget()  # in no section
    assert row.mapTo(widget.scroll.widget(), row.rect().topLeft()).y() < 10  # the top row
    assert [b.text for b in (widget.sessions.save_button, widget.sessions.open_button)] == [
        "Save session...", "Open session..."]


def test_a_batch_size_saved_before_auto_existed_stays_fixed(viewer, widget):
    """Dock parameters without "batch_auto" (a session written before it) keep their batch
    size; with it, the session's choice comes back."""
    from napari_patchheat._qt.session_io import set_dock_parameters

    params = dock_parameters(widget)
    assert params["batch_auto"] is True and widget.batch_size.value == 32
    set_dock_parameters(widget, {"batch_size": 48, "stride": 100}, viewer)  # an old session's
    assert widget.batch_auto.value is False and widget.batch_size.value == 48
    assert widget.batch_size.enabled and widget.stride.value == 100
    set_dock_parameters(widget, {"batch_auto": True, "batch_size": 48}, viewer)
    assert widget.batch_auto.value is True and not widget.batch_size.enabled
