"""Keras CNNs for the benchmarks: random weights, BatchNorm statistics set from real patches.

With Keras' initial moving statistics (mean 0, variance 1) a deep random network saturates:
every patch gets the same output, which would hide a wrong patch or a wrong order. Setting
each BatchNormalization layer's moving statistics to those of a batch of the slide's patches
(one training-mode call with momentum 0) keeps activations in range, so outputs vary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# name -> (keras.applications constructor, preprocessing family of its card)
CNNS = {"MobileNetV2": "mobilenet_v2", "ResNet50": "resnet50"}
INPUT_PX = 224
MIN_OUTPUT_SD = 1e-3  # outputs must vary at least this much across patches (probabilities)
MIN_DISTINCT = 10  # and take at least this many values (glass patches all take one)
STATS_PATCHES = (4, 8)  # rows, cols of the slide's patches whose statistics the layers take


def _walk(model: object) -> list:
    """The layers of ``model``, those of nested models included."""
    found = []
    for layer in getattr(model, "layers", []):
        found += [layer, *_walk(layer)]
    return found


def set_batchnorm_stats(model: object, batch: np.ndarray) -> int:
    """Set every BatchNormalization layer's moving mean and variance (nested models too) to
    those of ``batch`` (already preprocessed) as the network sees it; returns how many."""
    import keras

    layers = [la for la in _walk(model) if isinstance(la, keras.layers.BatchNormalization)]
    momenta = [la.momentum for la in layers]
    for layer in layers:
        layer.momentum = 0.0  # moving = batch statistics
    model(batch, training=True)  # type: ignore[operator]
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    return len(layers)


def sample_patches(slide: Path, level: int) -> np.ndarray:
    """:data:`STATS_PATCHES` patches of 224 px from the centre of ``level`` of ``slide``
    (uint8, (n, 224, 224, 3))."""
    from napari_patchheat import open_slide

    (rows, cols), k = STATS_PATCHES, INPUT_PX
    with open_slide(slide) as s:
        image = s.levels[level]
        y, x = (image.shape[0] - rows * k) // 2, (image.shape[1] - cols * k) // 2
        region = np.asarray(image[y:y + rows * k, x:x + cols * k])
    return region.reshape(rows, k, cols, k, 3).transpose(0, 2, 1, 3, 4).reshape(-1, k, k, 3)


def cnn_path(name: str, folder: Path, patches: np.ndarray) -> Path:
    """``name`` (a key of :data:`CNNS`) at 224 px with 2 classes and random weights (seeded),
    its BatchNorm statistics set from ``patches`` (uint8 RGB), saved as .keras with a card."""
    import keras

    from napari_patchheat.models.patch_model import preprocess

    family = CNNS[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(INPUT_PX, INPUT_PX, 3),
                                              classes=2)
    set_batchnorm_stats(model, preprocess(patches.astype(np.float32), family))
    path = folder / f"{name.lower()}.keras"
    model.save(path)
    path.with_suffix(".json").write_text(json.dumps(
        {"class_names": ["benign", "tumour"], "preprocessing": family}))
    return path


def check_varies(values: np.ndarray, what: str) -> None:
    """Raise unless ``values`` (patches, classes) vary across patches (a usable reference)."""
    sd = float(np.std(values[:, -1]))
    distinct = len(np.unique(values[:, -1]))
    if sd < MIN_OUTPUT_SD or distinct < min(MIN_DISTINCT, len(values)):
        raise SystemExit(f"{what}: outputs do not vary across patches (sd {sd:.2g}, {distinct} "
                         f"distinct of {len(values)}): no reference to compare against")
