"""Built-in models: stain quantification by colour deconvolution, as Keras models on TF ops.

Ruifrok & Johnston's colour deconvolution with exactly the conventions of
``skimage.color.rgb2hed``: optical density per channel as :mod:`napari_patchheat.density`
defines it (0 for white, 1 at the floor), stain concentrations
``max(OD @ hed_from_rgb, 0)``. Each model returns one value per patch, a fraction of its pixels
in 0..1 (definitions in docs/models.md and :data:`BUILTIN_DESCRIPTIONS`). They take any patch
size. This module imports TensorFlow only when a model is built.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..density import OD_FLOOR, od_table
from .patch_model import Fingerprint, PatchModel

BUILTIN_MODELS = ("tissue", "hematoxylin", "eosin", "dab")
STAIN_MODEL_VERSION = 1  # bump when a definition or threshold changes (invalidates caches)
# Ruifrok & Johnston's stain vectors (rows H, E, DAB; columns R, G, B), as skimage's rgb_from_hed.
RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))
STAIN_INDEX = {"hematoxylin": 0, "eosin": 1, "dab": 2}
# A pixel is positive for a stain when its rgb2hed concentration exceeds this (rgb2hed units;
# times ln(1e6)/ln(10) = 6 gives the usual log10 optical density).
POSITIVE_OD = {"hematoxylin": 0.03, "eosin": 0.02, "dab": 0.03}
# A pixel is tissue when the sum of its three channel ODs (rgb2hed units) reaches this: about
# 0.15 in log10 OD, i.e. a neutral grey of 227/255 or darker.
TISSUE_OD_SUM = 0.025
BUILTIN_CLASSES = {
    "tissue": ("tissue_fraction",),
    "hematoxylin": ("hematoxylin_positive",),
    "eosin": ("eosin_positive",),
    "dab": ("dab_positive",),
}
BUILTIN_DESCRIPTIONS = {
    "tissue": f"Fraction of the patch's pixels that are tissue: summed RGB optical density "
              f"(rgb2hed units) >= {TISSUE_OD_SUM}.",
    "hematoxylin": f"Fraction of the patch's pixels with hematoxylin (rgb2hed H) > "
                   f"{POSITIVE_OD['hematoxylin']}.",
    "eosin": f"Fraction of the patch's pixels with eosin (rgb2hed E) > {POSITIVE_OD['eosin']}.",
    "dab": f"Fraction of the patch's pixels that are DAB-positive (rgb2hed D) > "
           f"{POSITIVE_OD['dab']}.",
}


@functools.cache
def hed_from_rgb() -> np.ndarray:
    """skimage's ``hed_from_rgb`` (the inverse of :data:`RGB_FROM_HED`), float64 (3, 3)."""
    from skimage.color import hed_from_rgb as matrix

    return np.array(matrix, dtype=np.float64)


def rgb_to_od(x: Any) -> Any:
    """Per-channel optical density of RGB pixels (TF; uint8, or float 0..255) as float32."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if x.dtype.is_integer:
        table = tf.constant(od_table(), tf.float32)
        return tf.gather(table, tf.cast(x, tf.int32))
    rgb = tf.maximum(tf.cast(x, tf.float32) / 255.0, OD_FLOOR)
    return tf.math.log(rgb) / float(np.log(OD_FLOOR))


def rgb_to_hed(x: Any) -> Any:
    """``skimage.color.rgb2hed`` in TF: RGB (..., 3) 0..255 -> H, E, DAB (..., 3) float32."""
    import tensorflow as tf

    matrix = tf.constant(hed_from_rgb(), tf.float32)
    return tf.maximum(tf.tensordot(rgb_to_od(x), matrix, axes=1), 0.0)


def positive_fraction(x: Any, name: str) -> Any:
    """Per-patch value of built-in model ``name`` on patches (n, h, w, 3): (n, 1) float32."""
    import tensorflow as tf

    od = rgb_to_od(x)
    if name == "tissue":
        positive = tf.reduce_sum(od, axis=-1) >= TISSUE_OD_SUM
    else:
        column = tf.constant(hed_from_rgb()[:, STAIN_INDEX[name]], tf.float32)
        positive = tf.reduce_sum(od * column, axis=-1) > POSITIVE_OD[name]
    return tf.reduce_mean(tf.cast(positive, tf.float32), axis=[1, 2])[:, None]


@functools.cache
def _layer_class() -> type:
    import keras

    class StainFraction(keras.layers.Layer):
        """Fraction of a patch's pixels positive for a stain (or tissue); any patch size."""

        def __init__(self, stain: str, **kwargs: Any) -> None:
            kwargs.setdefault("dtype", "float32")
            super().__init__(**kwargs)
            if stain not in BUILTIN_MODELS:
                raise ValueError(f"stain={stain!r} is unknown: use one of {BUILTIN_MODELS}.")
            self.stain = stain

        def call(self, x: Any) -> Any:
            return positive_fraction(x, self.stain)

        def compute_output_shape(self, input_shape: tuple) -> tuple:
            return (input_shape[0], 1)

        def get_config(self) -> dict:
            return {**super().get_config(), "stain": self.stain}

    return StainFraction


def build_keras_model(name: str) -> Any:
    """The Keras model of built-in ``name``: uint8 (n, h, w, 3) of any size -> (n, 1)."""
    import keras

    inputs = keras.Input((None, None, 3), dtype="uint8", name="rgb")
    outputs = _layer_class()(name, name=f"{name}_fraction")(inputs)
    return keras.Model(inputs, outputs, name=f"patchheat_{name}")


def builtin_fingerprint(name: str) -> str:
    """Fingerprint of built-in ``name``: its definition, matrix, thresholds and version."""
    fp = Fingerprint("builtin")
    fp.add_json({"name": name, "version": STAIN_MODEL_VERSION, "od_floor": OD_FLOOR,
                 "tissue_od_sum": TISSUE_OD_SUM, "positive_od": POSITIVE_OD})
    fp.add_array("hed_from_rgb", hed_from_rgb())
    return fp.hexdigest()


def load_builtin(name: str, *, resize: bool = False, jit_compile: bool = True) -> PatchModel:
    """Built-in model ``name`` (one of :data:`BUILTIN_MODELS`) as a :class:`PatchModel`.

    XLA (``jit_compile``) fuses the per-pixel math: several times faster on CPU.
    """
    key = name.strip().lower()
    if key not in BUILTIN_MODELS:
        raise ValueError(
            f"{name!r} is not a built-in model: use one of {', '.join(BUILTIN_MODELS)}."
        )
    model = build_keras_model(key)
    return PatchModel(
        lambda x: model(x, training=False),
        name=key,
        class_names=BUILTIN_CLASSES[key],
        input_size=None,
        fingerprint=builtin_fingerprint(key),
        preprocessing="none",
        input_dtype="uint8",
        resize=resize,
        spec=key,
        kind="builtin",
        description=BUILTIN_DESCRIPTIONS[key],
        jit_compile=jit_compile,
        keepalive=model,
    )
