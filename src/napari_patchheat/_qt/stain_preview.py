"""The stain fit the patch inspector previews normalisation with: the run's own fit.

When the dock's Model input asks for stain normalisation, the inspector shows the patch as read
and normalised. The fit is :func:`~napari_patchheat.models.normalised.slide_fit` of the slide
file opened as the run opens it (so the statistics are the run's), fitted on a worker thread
(it takes about half a second) and kept per slide, method, target and model; the pixels are
normalised by :func:`~napari_patchheat.models.stain_norm.normalise_numpy` (no TensorFlow here).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..messages import first_line
from ..models.normalised import slide_fit
from ..models.stain_norm import StainFit
from .slide_layer import SlideLayer
from .threads import Workers

FITTING_TEXT = "normalised: fitting the slide's stain…"
NO_FILE_TEXT = ("normalised: no preview for a layer without a slide file (the run fits the "
                "TIFF it writes of it).")
PREVIEW_FITS_KEPT = 16  # fits (or their errors) kept: a slide's is computed once


def _file_key(path: Any) -> tuple[str, int] | None:
    """A file's path and modification time (a changed file is fitted again); None for none."""
    if path is None:
        return None
    try:
        return str(path), Path(path).expanduser().stat().st_mtime_ns
    except OSError:  # the fit says what is wrong with it
        return str(path), -1


def _fit(method: str, path: Any, target: Any, spec: str | None) -> StainFit:
    """The run's fit of the slide file ``path`` (opened as the run opens it)."""
    from ..slide import open_slide

    return slide_fit(method, open_slide(path), target, spec)


class StainPreview:
    """What the inspector needs to preview normalisation. ``fields()`` gives the dock's Model
    input fields (``stain_norm``, ``stain_target``), ``spec()`` the model file (None for a
    built-in); ``on_ready()`` is called (GUI thread) when a fit started here has finished."""

    def __init__(self, workers: Workers, fields: Callable[[], dict[str, Any]],
                 spec: Callable[[], str | None], on_ready: Callable[[], None]) -> None:
        self.workers, self.fields, self.spec, self.on_ready = workers, fields, spec, on_ready
        self._fits: dict[tuple[Any, ...], StainFit | str] = {}  # a fit, or why there is none
        self._pending: set[tuple[Any, ...]] = set()

    def fit(self, slide: SlideLayer) -> tuple[bool, StainFit | None, str]:
        """(asked, fit, line): whether normalisation is asked; the fit of ``slide`` when known
        (else None, and it is started); the one line to show instead of the normalised patch
        (fitting, or why it cannot be fitted)."""
        fields = self.fields()
        method = fields.get("stain_norm", "none")
        if method == "none":
            return False, None, ""
        if slide.path is None:
            return True, None, NO_FILE_TEXT
        target, spec = fields.get("stain_target"), self.spec()
        key = (str(slide.path), method, _file_key(target), _file_key(spec))
        known = self._fits.get(key)
        if isinstance(known, StainFit):
            return True, known, ""
        if known is not None:
            return True, None, known
        if key not in self._pending:
            self._pending.add(key)
            self.workers.start(_fit, method, slide.path, target, spec,
                               returned=lambda fit: self._done(key, fit),
                               errored=lambda exc: self._done(key, f"normalised: "
                                                                   f"{first_line(exc)}"))
        return True, None, FITTING_TEXT

    def _done(self, key: tuple[Any, ...], result: StainFit | str) -> None:
        self._pending.discard(key)
        self._fits[key] = result
        while len(self._fits) > PREVIEW_FITS_KEPT:
            del self._fits[next(iter(self._fits))]
        self.on_ready()
