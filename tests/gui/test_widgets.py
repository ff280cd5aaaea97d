"""The dock's small widgets."""

from __future__ import annotations

from napari_patchheat._qt.widgets import TEXT_WRAP_CHARS, TextLabel, section


def test_text_labels_break_long_lines_and_keep_line_breaks():
    label = TextLabel()
    label.value = "word " * 40 + "\nsecond line"
    lines = label.value.splitlines()
    assert len(lines) > 2 and max(map(len, lines)) <= TEXT_WRAP_CHARS
    assert lines[-1] == "second line"
    assert " ".join(label.value.split()) == " ".join(("word " * 40 + "second line").split())


def test_a_section_title_is_bold():
    assert section("Run").value == "<b>Run</b>"
