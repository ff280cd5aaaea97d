"""npe2 sample data: scikit-image's IHC image and the generated pyramidal slide (samples.py)."""

from __future__ import annotations

from typing import Any

from . import samples


def make_ihc_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """npe2 sample: scikit-image's IHC image (colon, DAB + hematoxylin), 512 x 512 RGB."""
    from skimage.data import immunohistochemistry

    return [(immunohistochemistry(), {"name": "IHC (scikit-image)", "rgb": True}, "image")]


def make_slide_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """npe2 sample: the generated pyramidal slide (written to the cache on first use)."""
    from ._reader import slide_layer_data
    from .slide import open_slide

    return [slide_layer_data(open_slide(samples.sample_slide_path(samples.SAMPLE_SIZE_PX)))]
