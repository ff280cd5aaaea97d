"""A model's output averaged over test-time transforms and Monte-Carlo dropout passes.

:class:`AugmentedModel` is a :class:`PatchModel` that feeds its network each batch's patches
under every TTA transform in turn (transformed in TensorFlow: no extra reads), with
``mc_samples`` calls of a copy of a Keras network whose dropout layers are on while everything
else (BatchNormalization included) stays in inference mode. It returns the mean per class and,
with ``uncertainty``, the population standard deviation over all passes as ``"<class> sd"``
channels after the class channels. Settings: test_time.py; TensorFlow is imported when a model
runs. See docs/models.md.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..test_time import PLAIN, TestTime, sd_name
from .keras_model import _detail
from .patch_model import Fingerprint, InsideMask, PatchModel

AUGMENT_VERSION = 1  # bump when the averaging changes (invalidates cached runs with TTA/MC)
KERAS_KINDS = ("keras", "h5")
SEED_MODULUS = 2**31  # dropout seeds are taken from the model's fingerprint, below this
# each transform as steps applied in order: "lr" mirrors left-right (tf.image.flip_left_right),
# "ud" up-down, "rot" turns 90° counter-clockwise (tf.image.rot90)
TRANSFORM_STEPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "none": ((),),
    "flips": ((), ("lr",), ("ud",), ("lr", "ud")),  # the Klein group {id, h, v, h∘v = rot180}
    "dihedral": tuple((*lr, *("rot",) * k) for lr in ((), ("lr",)) for k in range(4)),  # D4
}


def augment_model(model: Any, tta: str | None = None, mc_samples: int | None = None,
                  uncertainty: bool | None = None) -> Any:
    """``model`` run with its card's test-time settings, each overridden by the arguments that
    are not None; ``model`` itself when that is one plain pass."""
    if isinstance(model, AugmentedModel):
        model = model.base
    card = getattr(model, "test_time", PLAIN)  # duck-typed models have no card
    settings = card.resolve(tta, mc_samples, uncertainty)
    return AugmentedModel(model, settings) if settings.active else model


class AugmentedModel(PatchModel):
    """``base`` with the :class:`TestTime` ``settings``: the same attributes, but ``predict``
    and ``tf_predict`` return the mean over the passes (and the sd channels), ``class_names``
    gains the sd names, ``fingerprint`` the settings, ``heatmap_extra`` says what ran."""

    def __init__(self, base: PatchModel, settings: TestTime):
        vars(self).update(vars(base))
        self.base, self.settings, self.test_time = base, settings, settings
        fp = Fingerprint("augment")
        fp.add_json({"base": base.fingerprint, "version": AUGMENT_VERSION, **settings.as_dict()})
        self.fingerprint = fp.hexdigest()
        if settings.uncertainty:
            self.class_names = (*base.class_names, *map(sd_name, base.class_names))
        self.mc_seed: int | None = None
        self.dropout_layers = 0
        self._networks = [base]  # one per Monte-Carlo sample that differs from the others
        if settings.mc_samples > 1:
            self.mc_seed = int(base.fingerprint[:8], 16) % SEED_MODULUS
            network, self.dropout_layers = dropout_on(base, self.mc_seed)
            if self.dropout_layers:  # without dropout every sample is the plain pass
                self._networks = [network] * settings.mc_samples

    @property
    def heatmap_extra(self) -> dict[str, Any]:
        """What a heatmap records of the passes (``extra["test_time"]``)."""
        s = self.settings
        return {"test_time": {**s.as_dict(), "transforms": s.transforms, "passes": s.passes,
                              "mc_seed": self.mc_seed, "dropout_layers": self.dropout_layers}}

    def check_patch_size(self, size: Any) -> None:
        """The base model's check; turns by 90° (``dihedral``) need square patches too."""
        self.base.check_patch_size(size)
        h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if self.settings.tta == "dihedral" and h != w:
            raise ValueError(
                f"tta='dihedral' turns patches by 90°, which needs square patches, not {h} x {w} "
                "px: use tta='flips' or a square patch size.")

    def validate_output(self, out: np.ndarray, n: int | None = None,
                        inside: InsideMask | None = None) -> np.ndarray:
        """The base model's checks on the class channels; the sd channels are NaN only where
        the mean is."""
        out = np.asarray(out)
        k = self.base.n_classes
        if out.ndim != 2 or out.shape[1] != self.n_classes:
            raise ValueError(f"Model {self.name!r} returned outputs of shape {out.shape}; with "
                             f"{self.n_classes} channels expected, (patches, channels).")
        mean = self.base.validate_output(out[:, :k], n, inside)
        if not self.settings.uncertainty:
            return mean
        sd = out[:, k:].astype(np.float32, copy=False)
        if (np.isnan(sd) != np.isnan(mean)).any() or np.isinf(sd).any():
            raise ValueError(f"Model {self.name!r} gave sd values that are not finite where "
                             "its mean is: check its weights and its preprocessing.")
        return np.concatenate([mean, sd], axis=1)

    def tf_predict(self, batch: Any, inside: InsideMask | None = None) -> Any:
        """Mean (and sd) over the passes of patches (n, h, w, 3) 0..255: (n, channels) float32.

        The network gets the batch under each transform in turn (calls of n patches, the batch
        size the run chose), once per Monte-Carlo sample.
        """
        import tensorflow as tf

        x = tf.convert_to_tensor(batch)
        if x.shape.rank == 4 and None not in tuple(x.shape[1:3]):
            self.check_patch_size(tuple(x.shape[1:3]))
        steps = TRANSFORM_STEPS[self.settings.tta]
        y = tf.stack([net.tf_predict(transform_patches(x, s),
                                     None if inside is None else transform_inside(inside, s))
                      for net in self._networks for s in steps])  # (passes, n, k)
        passes = int(y.shape[0])
        mean = tree_sum(y) / float(passes)
        if not self.settings.uncertainty:
            return mean
        sd = tf.sqrt(tree_sum(tf.square(y - mean)) / float(passes))
        return tf.concat([mean, sd], axis=1)


def tree_sum(y: Any) -> Any:
    """Sum over axis 0 in pairs (a tree), so that equal values sum exactly to a power of two
    of passes: the mean of 4 or 8 equal outputs is that output, bit for bit."""
    import tensorflow as tf

    while y.shape[0] > 1:
        half = y.shape[0] // 2
        pairs = y[:half] + y[half:2 * half]
        y = tf.concat([pairs, y[2 * half:]], axis=0) if y.shape[0] % 2 else pairs
    return y[0]


def transform_patches(x: Any, steps: tuple[str, ...]) -> Any:
    """Patches (n, h, w, c) under the transform ``steps`` (see :data:`TRANSFORM_STEPS`)."""
    import tensorflow as tf

    for step in steps:
        x = {"lr": tf.image.flip_left_right, "ud": tf.image.flip_up_down,
             "rot": tf.image.rot90}[step](x)
    return x


def transform_inside(inside: InsideMask, steps: tuple[str, ...]) -> InsideMask:
    """The inside mask (rows (n, h), columns (n, w)) of patches under the transform ``steps``:
    a mirror reverses one axis; a turn counter-clockwise makes the reversed columns the rows."""
    rows, cols = (np.asarray(m) for m in inside)
    for step in steps:
        if step == "lr":
            cols = cols[:, ::-1]
        elif step == "ud":
            rows = rows[:, ::-1]
        else:
            rows, cols = cols[:, ::-1], rows
    return rows, cols


@functools.cache
def _always_on(cls: Any) -> Any:
    """A subclass of dropout layer ``cls`` that drops whatever ``training`` says."""

    def call(self: Any, inputs: Any, training: Any = None) -> Any:
        return cls.call(self, inputs, training=True)

    return type(f"MonteCarlo{cls.__name__}", (cls,), {"call": call})


def dropout_on(model: PatchModel, seed: int) -> tuple[PatchModel, int]:
    """``model`` with its Keras network cloned so that its dropout layers (Dropout and its
    subclasses, GaussianDropout, AlphaDropout) drop at inference, seeded ``seed``, ``seed + 1``,
    ...; everything else runs as before (``training=False``). Also the number of such layers."""
    if model.kind not in KERAS_KINDS:
        raise ValueError(
            f"Model {model.name!r} ({model.kind}) has no dropout layers napari-patchheat can turn "
            "on: set mc_samples to 1 (Monte-Carlo dropout needs a Keras .keras or .h5 model); "
            "test-time augmentation (tta) still gives an sd map.")
    import keras

    found: list[Any]
    kinds = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout)
    network, found = model.keepalive, []  # the dropout layers met

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if not isinstance(layer, kinds):
            return layer.__class__.from_config(config)
        config["seed"] = seed + len(found)
        found.append(layer)
        kind: Any = layer.__class__
        return _always_on(kind).from_config(config)

    try:
        mc = keras.models.clone_model(network, clone_function=clone, recursive=True)
        mc.set_weights(network.get_weights())
    except Exception as exc:
        raise ValueError(
            f"Cannot rebuild model {model.name!r} with its dropout on ({_detail(exc)}): set "
            "mc_samples to 1.") from exc

    def forward(x: Any) -> Any:
        return mc(x, training=False)

    return model.with_forward(forward, mc), len(found)
