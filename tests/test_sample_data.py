"""The npe2 sample-data adapter: napari's sample menu entries."""

from __future__ import annotations

from napari_patchheat import _sample_data, samples
from napari_patchheat.cache import CACHE_ENV


def test_ihc_sample():
    [(data, kwargs, kind)] = _sample_data.make_ihc_sample()
    assert kind == "image" and kwargs["rgb"] and data.shape == (512, 512, 3)


def test_slide_sample_layer(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(samples, "SAMPLE_SIZE_PX", 2048)
    [(data, kwargs, kind)] = _sample_data.make_slide_sample()
    assert kind == "image" and kwargs["multiscale"] and kwargs["rgb"]
    assert [d.shape for d in data] == [(2048, 2048, 3), (1024, 1024, 3)]
    assert kwargs["metadata"]["mpp"] == (samples.SAMPLE_MPP_UM,) * 2
    assert (tmp_path / "patchheat-sample-2048x2048-v1.ome.tif").is_file()
