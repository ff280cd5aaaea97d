"""napari-patchheat: patch-prediction heatmaps of whole-slide images in napari.

The public names are imported lazily, so ``import napari_patchheat`` is fast and never loads
TensorFlow (see DESIGN.md: TensorFlow never runs in the napari process).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing is not imported: the console script starts faster (_script.py)
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.3.0.dev0"

_PUBLIC = {
    "PatchGrid": "grid",
    "extract_patches": "extract",
    "open_slide": "slide",
    "Slide": "slide",
    "sample_slide_path": "samples",
    "load_model": "models",
    "PatchModel": "models",
    "compute_heatmap": "inference",
    "RunOptions": "options",
    "Heatmap": "heatmap",
    "save_session": "_qt.session_io",
    "open_session": "_qt.session_io",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
