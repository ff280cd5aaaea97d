"""Built-in models: stain quantification by colour deconvolution, as TF functions.

Ruifrok & Johnston's colour deconvolution with exactly the conventions of
``skimage.color.rgb2hed``: optical density per channel as :mod:`napari_patchheat.density`
defines it (0 for white, 1 at the floor), stain concentrations
``max(OD @ hed_from_rgb, 0)``. Each model returns one value per patch, a fraction of its pixels
in 0..1 (definitions in docs/models.md and :data:`BUILTIN_DESCRIPTIONS`), counted over the
patch's samples inside the level: SAME's zero padding is neither stain nor tissue. They take any
patch size. This module imports TensorFlow only when a model is built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from ..density import OD_FLOOR, od_table
from .patch_model import Fingerprint, InsideMask, PatchModel

BUILTIN_MODELS = ("tissue", "hematoxylin", "eosin", "dab")
# Bump when a definition or threshold changes (invalidates caches). 2: SAME's zero padding is
# no longer counted (fractions over the samples inside the level). 3: integer counts and one
# correctly rounded division, so a value no longer depends on its batch (it moved by <= 1 ulp).
STAIN_MODEL_VERSION = 3
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
BUILTIN_DESCRIPTIONS = {  # "in the level": SAME's zero padding does not count
    "tissue": f"Fraction of the patch's pixels in the level that are tissue: summed RGB "
              f"optical density (rgb2hed units) >= {TISSUE_OD_SUM}.",
    "hematoxylin": f"Fraction of the patch's pixels in the level with hematoxylin (rgb2hed H) > "
                   f"{POSITIVE_OD['hematoxylin']}.",
    "eosin": f"Fraction of the patch's pixels in the level with eosin (rgb2hed E) > "
             f"{POSITIVE_OD['eosin']}.",
    "dab": f"Fraction of the patch's pixels in the level that are DAB-positive (rgb2hed D) > "
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


@functools.cache
def score_tables(name: str) -> np.ndarray:
    """Per-channel terms of built-in ``name``'s pixel score for uint8 values: float32 (3, 256).

    A pixel's score is ``(t[0][r] + t[1][g]) + t[2][b]``: its summed OD (tissue) or its stain
    concentration before the floor at 0 (each term rounded to float32 as ``od * column``).
    """
    od = od_table().astype(np.float32)
    if name == "tissue":
        table = np.stack([od, od, od])
    else:
        column = hed_from_rgb()[:, STAIN_INDEX[name]].astype(np.float32)
        table = column[:, None] * od[None, :]
    table.flags.writeable = False
    return table


def positive_pixels(x: Any, name: str) -> Any:
    """bool (n, h, w): the pixels of patches (n, h, w, 3) that built-in ``name`` counts (TF).

    For uint8 (or any integer) pixels, three table look-ups and two additions in a fixed order:
    no product left to fuse, so a pixel's verdict cannot depend on the batch it is in.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    if x.dtype.is_integer:
        index = tf.cast(x, tf.int32)
        table = tf.constant(score_tables(name), tf.float32)
        terms = [tf.gather(table[c], index[..., c]) for c in range(3)]
        score = (terms[0] + terms[1]) + terms[2]
    else:
        od = rgb_to_od(x)
        if name == "tissue":
            score = tf.reduce_sum(od, axis=-1)
        else:
            column = tf.constant(hed_from_rgb()[:, STAIN_INDEX[name]], tf.float32)
            score = tf.reduce_sum(od * column, axis=-1)
    return score >= TISSUE_OD_SUM if name == "tissue" else score > POSITIVE_OD[name]


def positive_fraction(x: Any, name: str, inside: InsideMask | None = None) -> Any:
    """Per-patch value of built-in ``name`` on patches (n, h, w, 3): (n, 1) float32.

    With ``inside`` (:data:`InsideMask`), the fraction is over the samples inside the level
    only, NaN for a patch with none; without it, over every sample. Counts are int32 and the
    one division is float64, rounded once to float32: the correctly rounded fraction (for
    patches of up to 2**24 samples), whatever the batch, its size or its padded patches.
    """
    import tensorflow as tf

    positive = tf.cast(positive_pixels(x, name), tf.int32)
    if inside is None:
        hits = tf.reduce_sum(positive, axis=[1, 2])
        shape = tf.shape(positive)
        count = tf.fill(tf.shape(hits), shape[1] * shape[2])
    else:
        rows, cols = (tf.cast(m, tf.int32) for m in inside)
        hits = tf.reduce_sum(tf.reduce_sum(positive * cols[:, None, :], axis=2) * rows, axis=1)
        count = tf.reduce_sum(rows, axis=1) * tf.reduce_sum(cols, axis=1)
    # float64 quotient (even if XLA multiplies by a constant count's reciprocal) then one
    # rounding to float32: a / b with b <= 2**24 is never a float32 tie nor within 2**-49 of
    # one, so this is the float32 nearest a / b; 0 / 0 is NaN
    fraction = tf.cast(hits, tf.float64) / tf.cast(count, tf.float64)
    return tf.cast(fraction, tf.float32)[:, None]


def builtin_fingerprint(name: str) -> str:
    """Fingerprint of built-in ``name``: its definition, matrix, thresholds and version."""
    fp = Fingerprint("builtin")
    fp.add_json({"name": name, "version": STAIN_MODEL_VERSION, "od_floor": OD_FLOOR,
                 "tissue_od_sum": TISSUE_OD_SUM, "positive_od": POSITIVE_OD})
    fp.add_array("hed_from_rgb", hed_from_rgb())
    return fp.hexdigest()


def load_builtin(name: str, *, resize: bool = False, jit_compile: bool = True) -> PatchModel:
    """Built-in model ``name`` (one of :data:`BUILTIN_MODELS`) as a :class:`PatchModel`.

    XLA (``jit_compile``) fuses the per-pixel math: several times faster on CPU. The model
    takes an inside mask (``needs_inside_mask``): see :func:`positive_fraction`. Its Python
    branches are on shapes and dtypes only, so it is traced without AutoGraph (the same graph;
    AutoGraph's source conversion was most of the first batch's cost, docs/benchmarks.md).
    """
    key = name.strip().lower()
    if key not in BUILTIN_MODELS:
        raise ValueError(
            f"{name!r} is not a built-in model: use one of {', '.join(BUILTIN_MODELS)}."
        )
    return PatchModel(
        _forward(key),
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
        needs_inside_mask=True,
        autograph=False,
    )


def _forward(name: str) -> Callable[[Any, InsideMask | None], Any]:
    def forward(x: Any, inside: InsideMask | None) -> Any:
        return positive_fraction(x, name, inside)

    return forward
