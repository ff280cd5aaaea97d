"""Model cards: the JSON file next to a model that says how to feed it and what it outputs.

A card is ``<model>.json`` beside the model file (``tumour.keras`` -> ``tumour.json`` or
``tumour.keras.json``); for a SavedModel directory ``<dir>.json`` beside it or
``<dir>/model_card.json`` inside it. See docs/models.md. Pure Python: no TensorFlow here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import JSONError, loads_json
from ..grid import as_pair
from ..test_time import PLAIN, TestTime
from .stain_norm import card_stain_target

# Preprocessing modes; every value maps raw RGB 0..255 (float32) to what the model was trained on.
PREPROCESSING_MODES = ("none", "0..1", "-1..1", "caffe", "torch")
# keras.applications families and the mode their ``preprocess_input`` applies. The families
# whose preprocess_input is a no-op (EfficientNet, ConvNeXt, MobileNetV3) carry their own
# rescaling layers inside the model.
PREPROCESSING_FAMILIES = {
    "vgg16": "caffe",
    "vgg19": "caffe",
    "resnet": "caffe",
    "resnet50": "caffe",
    "resnet_v2": "-1..1",
    "inception_v3": "-1..1",
    "inception_resnet_v2": "-1..1",
    "xception": "-1..1",
    "mobilenet": "-1..1",
    "mobilenet_v2": "-1..1",
    "nasnet": "-1..1",
    "densenet": "torch",
    "efficientnet": "none",
    "efficientnet_v2": "none",
    "convnext": "none",
    "mobilenet_v3": "none",
}
_ALIASES = {"tf": "-1..1", "0-1": "0..1", "-1-1": "-1..1", "identity": "none"}
# Approximate pixel size at 1x objective magnification: 20x ~ 0.5 um/px, 40x ~ 0.25 um/px.
MPP_AT_1X_UM = 10.0
CARD_FILENAME_IN_DIR = "model_card.json"
CARD_KEYS = ("class_names", "preprocessing", "input_size", "mpp", "magnification", "name",
             "description", "positive_threshold", "tta", "mc_samples", "uncertainty",
             "stain_target")


def preprocessing_mode(name: str) -> str:
    """The basic mode ("none", "0..1", "-1..1", "caffe", "torch") a preprocessing name means."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key in PREPROCESSING_MODES:
        return key
    if key in PREPROCESSING_FAMILIES:
        return PREPROCESSING_FAMILIES[key]
    raise ValueError(
        f"preprocessing={name!r} is unknown: use one of {', '.join(PREPROCESSING_MODES)} or a "
        f"keras.applications family ({', '.join(sorted(PREPROCESSING_FAMILIES))})."
    )


@dataclass(frozen=True)
class ModelCard:
    """What a card says; every field is optional (None: ask the model itself)."""

    class_names: tuple[str, ...] | None = None
    preprocessing: str | None = None
    input_size: tuple[int, int] | None = None
    mpp: float | None = None
    magnification: float | None = None
    name: str | None = None
    description: str | None = None
    path: Path | None = None
    positive_threshold: float | None = None  # one-output models: exported tiles classified >= it
    test_time: TestTime = PLAIN  # tta, mc_samples, uncertainty a run uses unless told
    stain_target: dict[str, Any] | None = None  # the training stain: {"method", its statistics}

    @property
    def effective_mpp(self) -> float | None:
        """µm/px the model was trained at: ``mpp``, else ``MPP_AT_1X_UM / magnification``."""
        if self.mpp is not None:
            return self.mpp
        if self.magnification is not None:
            return MPP_AT_1X_UM / self.magnification
        return None


def card_candidates(model_path: Path) -> list[Path]:
    """Where the card of ``model_path`` may be, in the order they are tried."""
    model_path = Path(model_path)
    out = [model_path.with_name(model_path.name + ".json")]
    if model_path.suffix:
        out.insert(0, model_path.with_suffix(".json"))
    if model_path.is_dir():
        out.append(model_path / CARD_FILENAME_IN_DIR)
    return out


def find_card(model_path: Path) -> ModelCard:
    """Read the card of ``model_path`` if there is one; an empty card otherwise."""
    for candidate in card_candidates(model_path):
        if candidate.is_file():
            return read_card(candidate)
    return ModelCard()


def read_card(path: str | Path) -> ModelCard:
    """Parse and check a model card; a ValueError names the file and the bad entry."""
    path = Path(path)
    try:
        data = loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, JSONError) as exc:
        raise ValueError(f"Model card {path} is not readable JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise ValueError(f"Model card {path} must hold a JSON object, not {type(data).__name__}.")
    try:
        return parse_card(data, path)
    except ValueError as exc:
        raise ValueError(f"Model card {path}: {exc}") from None


def parse_card(data: dict[str, Any], path: Path | None = None) -> ModelCard:
    """Check the entries of a card's JSON object; see :func:`read_card`."""
    unknown = sorted(set(data) - set(CARD_KEYS))
    if unknown:
        raise ValueError(
            f"unknown entr{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
            f"a card may hold {', '.join(CARD_KEYS)}."
        )
    names = data.get("class_names")
    if names is not None:
        if (not isinstance(names, list) or not names
                or not all(isinstance(n, str) and n for n in names)):
            raise ValueError("class_names must be a non-empty list of non-empty strings.")
        if len(set(names)) != len(names):
            raise ValueError(f"class_names {names} holds a name twice.")
        names = tuple(names)
    prep = data.get("preprocessing")
    if prep is not None:
        if not isinstance(prep, str):
            raise ValueError(f"preprocessing must be a string, not {prep!r}.")
        preprocessing_mode(prep)
    size = data.get("input_size")
    if size is not None:
        size = as_pair("input_size", size)
    mpp = _positive(data, "mpp")
    mag = _positive(data, "magnification")
    for key in ("name", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"{key} must be a string.")
    stain = data.get("stain_target")
    return ModelCard(names, prep, size, mpp, mag, data.get("name"), data.get("description"), path,
                     _positive_threshold(data, names), _test_time(data),
                     None if stain is None else card_stain_target(stain))


def _positive(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{key}={value!r} must be a positive number.")
    return float(value)


def _positive_threshold(data: dict[str, Any], names: tuple[str, ...] | None) -> float | None:
    """The card's positive threshold: a finite number, for a model with one output only."""
    value = data.get("positive_threshold")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"positive_threshold={value!r} must be a finite number, e.g. 0.5.")
    if names is not None and len(names) != 1:
        raise ValueError(
            f"positive_threshold is for models with one output, but class_names names "
            f"{len(names)} classes: remove it (exports classify by the top class).")
    return float(value)


def _test_time(data: dict[str, Any]) -> TestTime:
    """The card's test-time settings (``tta``, ``mc_samples``, ``uncertainty``)."""
    uncertainty = data.get("uncertainty", False)
    if not isinstance(uncertainty, bool):
        raise ValueError(f"uncertainty={uncertainty!r} must be true or false.")
    return TestTime(data.get("tta", "none"), data.get("mc_samples", 1), uncertainty)
