"""RunOptions: defaults, normalised pairs, checks with one sentence, picklable, documented."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from napari_patchheat.options import RunOptions


def test_defaults():
    o = RunOptions()
    assert (o.level, o.size, o.stride, o.rate, o.padding) == (0, None, None, (1, 1), "VALID")
    assert (o.batch_size, o.tissue_threshold, o.resize, o.mixed_precision) == (None, 0.0, False,
                                                                               False)
    assert o.decode_threads is None  # both chosen by the run from measured costs
    assert (o.backend, o.cache_dir, o.use_cache) == ("auto", None, True)


def test_pairs_and_padding_are_normalised():
    o = RunOptions(size=224, stride=(100, 120), rate=[1, 2, 2, 1], padding="same")
    assert (o.size, o.stride, o.rate, o.padding) == ((224, 224), (100, 120), (2, 2), "SAME")
    assert o == RunOptions(size=(224, 224), stride=[100, 120], rate=2, padding="SAME")


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(batch_size=0), r"^batch_size=0 must be a whole number of at least 1, or None to "
                             r"choose it from the measured costs\.$"),
        (dict(batch_size=-4), r"^batch_size=-4 must be a whole number of at least 1, or None"),
        (dict(decode_threads=0), r"^decode_threads=0 must be a whole number of at least 1, or "
                                 r"None to choose it from the measured costs\.$"),
        (dict(decode_threads=-1), r"^decode_threads=-1 must be a whole number"),
        (dict(decode_threads=1.5), r"^decode_threads=1\.5 must be a whole number"),
        (dict(batch_size=2.5), "batch_size=2.5"),
        (dict(batch_size=True), "batch_size=True"),
        (dict(tissue_threshold=1.5), r"^tissue_threshold=1\.5 must be a fraction from 0"),
        (dict(tissue_threshold=-0.1), "tissue_threshold=-0.1"),
        (dict(stride=0), r"^stride=0 must hold whole numbers of at least 1\.$"),
        (dict(size=(3, 4, 5)), "size="),
        (dict(rate=[2, 2, 2, 2]), r"rate=\[2, 2, 2, 2\] must be \[1, rows, cols, 1\]"),
        (dict(padding="full"), r"^padding='full' is unknown: use 'VALID' or 'SAME'\.$"),
        (dict(backend="cuda"), r"^backend='cuda' is unknown: use 'auto', 'tf' or 'numpy'\.$"),
    ],
)
def test_bad_values_are_one_sentence(fields, message):
    with pytest.raises(ValueError, match=message):
        RunOptions(**fields)


def test_frozen_and_replace_checks_again():
    o = RunOptions(size=64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.size = 32  # type: ignore[misc]
    assert dataclasses.replace(o, stride=32).stride == (32, 32)
    with pytest.raises(ValueError, match="batch_size=0"):
        dataclasses.replace(o, batch_size=0)


def test_picklable_for_the_worker(tmp_path):
    o = RunOptions(size=(64, 48), padding="SAME", cache_dir=tmp_path, use_cache=False)
    assert pickle.loads(pickle.dumps(o)) == o


@pytest.mark.parametrize("f", dataclasses.fields(RunOptions), ids=lambda f: f.name)
def test_every_field_describes_itself(f):
    assert f.metadata["help"] and f.metadata["kind"] in ("int", "float", "pair", "choice",
                                                         "switch", "path")
    if f.metadata["kind"] == "choice":  # None: the model card's (tta)
        assert f.default is None or f.default in f.metadata["choices"]


def test_color_is_a_choice_of_any_case():
    assert RunOptions().color == "as stored"
    assert RunOptions(color="sRGB").color == "srgb"
    with pytest.raises(ValueError, match="color='adobe' is unknown: use 'as stored' or 'srgb'."):
        RunOptions(color="adobe")


def test_keys_of_the_automatic_choices_stay_those_of_before():
    """A batch's key: batch_size None (chosen by the run) keys as the old default 32 did, and
    decode_threads appears only when set, so the manifests written before stay valid."""
    auto, old = RunOptions(size=64).key_fields(), RunOptions(size=64, batch_size=32).key_fields()
    assert auto == old and auto["batch_size"] == 32 and "decode_threads" not in auto
    assert RunOptions(size=64, batch_size=128).key_fields()["batch_size"] == 128
    assert RunOptions(size=64, decode_threads=2).key_fields()["decode_threads"] == 2
