"""A model fed stain-normalised patches, and the fits it is built from.

The source is fitted once per slide from its tissue (the tissue mask's low level,
``tissue.slide_tissue_pixels``), the target from a target image's tissue or from the model
card's ``stain_target``. :class:`NormalisedModel` applies the transform inside the model's
compiled TensorFlow function, before resizing and the model's own preprocessing; its
fingerprint holds the fit, so the resume cache keys on it. No TensorFlow at import.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .card import find_card
from .patch_model import Fingerprint, InsideMask, PatchModel
from .stain_norm import StainFit, fit_stain, tf_normalise

FIT_MAX_PX = 2**20  # tissue pixels a fit uses at most (every k-th of the mask level's)
FITS_KEPT = 16  # fits kept in memory: a slide's or a target image's is computed once
_FITTED: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
# the last normalised models, by model and fit: a slide run again reuses its traced graph (each
# holds its model, so the model's id is not reused while it is here)
WRAPPED_KEPT = 4
_WRAPPED: OrderedDict[tuple[int, str], PatchModel] = OrderedDict()


def tissue_stats(method: str, image: Any) -> dict[str, Any]:
    """``method``'s statistics of the tissue of ``image`` (a Slide, or a path opened as one):
    the tissue mask's level, at most :data:`FIT_MAX_PX` of its tissue pixels (every k-th).
    Kept in memory by the slide's identity or the file's path, size and time."""
    from ..slide import open_slide
    from ..tissue import slide_tissue_pixels

    slide = open_slide(image) if isinstance(image, (str, Path)) else image  # a SlideError
    if isinstance(image, (str, Path)):
        stat = Path(image).stat()
        key: tuple[Any, ...] = (method, str(Path(image).resolve()), stat.st_size, stat.st_mtime_ns)
    else:
        key = (method, image.identity)
    if key in _FITTED:
        _FITTED.move_to_end(key)
        return copy.deepcopy(_FITTED[key])
    pixels, mask, _ = slide_tissue_pixels(slide, mode="brightfield")
    where = np.flatnonzero(mask)
    step = max(1, math.ceil(len(where) / FIT_MAX_PX))
    _FITTED[key] = fit_stain(method, pixels[..., :3].reshape(-1, 3)[where[::step]])
    while len(_FITTED) > FITS_KEPT:
        _FITTED.popitem(last=False)
    return copy.deepcopy(_FITTED[key])


def target_stats(method: str, target: Any, spec: str | None) -> dict[str, Any]:
    """The target's statistics: of the ``target`` image's tissue, else the ``stain_target`` of
    the card of the model file ``spec`` (None: a built-in, no card) when it is of ``method``;
    a ValueError saying what to give otherwise."""
    if target is not None:
        try:
            return tissue_stats(method, Path(target).expanduser())
        except ValueError as exc:
            raise ValueError(f"Cannot fit the stain target {target}: {exc}") from None
    card = find_card(Path(spec)) if spec else None
    stored = None if card is None else card.stain_target
    if stored is not None and stored["method"] == method:
        return {k: v for k, v in stored.items() if k != "method"}
    have = f" (its card's target is {stored['method']})" if stored is not None else ""
    raise ValueError(
        f"stain_norm={method!r} needs a target stain: give --stain-target (an image of the "
        f"stain the model was trained on) or use a model card with a {method} stain_target"
        f"{have}.")


def slide_fit(method: str, slide: Any, target: Any, spec: str | None) -> StainFit:
    """The fit a run of ``method`` on ``slide`` (a Slide) makes: its tissue's statistics and
    the target's (see :func:`target_stats`; ``spec``: the model file, None for a built-in).
    NumPy only: the dock's inspector previews a run with it."""
    try:
        source = tissue_stats(method, slide)
    except ValueError as exc:
        raise ValueError(f"Cannot fit the stain of {Path(str(slide.path)).name}: {exc}") from None
    return StainFit(method, source, target_stats(method, target, spec))


def normalise_model(model: PatchModel, slide: Any, method: str, target: Any) -> PatchModel:
    """``model`` fed patches normalised from ``slide``'s stain to the target's (see
    :func:`slide_fit`); ``model`` itself for method "none"."""
    if method == "none":
        return model
    fit = slide_fit(method, slide, target, None if model.kind == "builtin" else str(model.spec))
    key = (id(model), fit.key())
    if key not in _WRAPPED:
        _WRAPPED[key] = NormalisedModel(model, fit)
        while len(_WRAPPED) > WRAPPED_KEPT:
            _WRAPPED.popitem(last=False)
    _WRAPPED.move_to_end(key)
    return _WRAPPED[key]


class NormalisedModel(PatchModel):
    """``model`` with each patch stain-normalised by ``fit`` first (in its TF function).

    Everything else is ``model``'s (name, classes, spec, card settings); the fingerprint is
    ``model``'s and the fit's, and ``stain_fit`` holds the fit.
    """

    def __init__(self, model: PatchModel, fit: StainFit) -> None:
        fp = Fingerprint("stain-normalised")
        fp.add_json({"model": model.fingerprint, "stain_norm": fit.to_json()})
        self.stain_fit = fit
        self._normalise = _compiled(tf_normalise(fit))
        super().__init__(
            model._forward_fn, name=model.name, class_names=model.class_names,
            input_size=model.input_size, fingerprint=fp.hexdigest(),
            preprocessing=model.preprocessing, input_dtype=model._input_dtype.name,
            mpp=model.mpp, magnification=model.magnification, resize=model.resize,
            spec=model.spec, kind=model.kind, description=model.description,
            jit_compile=model.jit_compile, keepalive=model.keepalive, precision=model.precision,
            needs_inside_mask=model.needs_inside_mask,
            positive_threshold=model.positive_threshold, test_time=model.test_time)

    def _forward(self, x: Any, inside: InsideMask | None = None) -> Any:
        return super()._forward(self._normalise(x), inside)


def _compiled(normalise: Any) -> Any:
    """``normalise`` compiled by XLA (its per-pixel math fused: several times faster on a CPU);
    as it is where XLA is missing or fails on this platform (tried on one pixel)."""
    import tensorflow as tf

    jitted = tf.function(normalise, jit_compile=True)
    try:
        jitted(tf.zeros((1, 1, 1, 3), tf.uint8))
    except Exception:  # XLA missing or failing here
        return normalise
    return jitted
