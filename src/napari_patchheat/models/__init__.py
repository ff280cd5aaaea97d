"""Models: load a user's Keras model or a built-in stain model as a :class:`PatchModel`.

Importing this package never imports TensorFlow (the GUI lists :data:`BUILTIN_MODELS` and
reads cards); :func:`load_model` does. See docs/models.md.
"""

from __future__ import annotations

from pathlib import Path

from .card import PREPROCESSING_FAMILIES, PREPROCESSING_MODES, ModelCard, find_card, read_card
from .patch_model import PatchModel
from .stain import BUILTIN_CLASSES, BUILTIN_DESCRIPTIONS, BUILTIN_MODELS

__all__ = [
    "BUILTIN_CLASSES",
    "BUILTIN_DESCRIPTIONS",
    "BUILTIN_MODELS",
    "PREPROCESSING_FAMILIES",
    "PREPROCESSING_MODES",
    "ModelCard",
    "PatchModel",
    "find_card",
    "is_builtin",
    "load_model",
    "read_card",
]


def is_builtin(spec: str | Path) -> bool:
    """True when ``spec`` names a built-in model (names win over files of the same name)."""
    return isinstance(spec, str) and spec.strip().lower() in BUILTIN_MODELS


def load_model(spec: str | Path, *, resize: bool = False, mixed_precision: bool = False
               ) -> PatchModel:
    """Load a model: a built-in name (:data:`BUILTIN_MODELS`) or a path.

    Paths: a Keras ``.keras`` or legacy ``.h5`` file or a TensorFlow SavedModel directory, with
    an optional model card beside it. ``resize`` resizes patches to the model's input size on the
    fly; without it a patch size that differs is a ValueError. ``mixed_precision`` runs a Keras
    model's layers in float16 (float32 variables and outputs): faster on GPUs with tensor cores,
    slower on CPUs. Built-in models always compute in float32. Imports TensorFlow.
    """
    if is_builtin(spec):
        from .stain import load_builtin

        if mixed_precision:
            raise ValueError(
                f"The built-in model {spec!r} computes optical densities in float32 only: turn "
                "mixed precision off."
            )
        return load_builtin(str(spec), resize=resize)
    from .keras_model import load_user_model

    return load_user_model(Path(spec), resize=resize, mixed_precision=mixed_precision,
                           builtins=BUILTIN_MODELS)
