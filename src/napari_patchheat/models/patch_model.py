"""PatchModel: one image classifier/regressor fed RGB patches, behind one interface.

Built-in stain models and user Keras/SavedModel models are both a :class:`PatchModel`: raw RGB
patches (0..255) in, ``(patches, classes)`` float32 out, with resizing, the card's preprocessing
and output checks inside. TensorFlow is imported only when a model is built or run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..extract import ALIGN_BYTES, aligned_empty
from ..test_time import PLAIN, TestTime
from .card import preprocessing_mode

Size = tuple[int, int]
# Per patch, which sample rows (n, size_y) and columns (n, size_x) lie inside the level (bool;
# numpy or TF): PatchGrid.inside_samples. Sample (ky, kx) is inside when both are True.
InsideMask = tuple[Any, Any]
CHANNELS = 3  # napari-patchheat feeds RGB patches
# TensorFlow's CPU kernels refuse (abort the process on) inputs not aligned to Eigen's
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def preprocess(x: Any, preprocessing: str) -> Any:
    """Apply a preprocessing mode or keras.applications family to float32 RGB 0..255 (TF).

    ``x`` is a float32 tensor (..., 3); returns a tensor of the same shape. Equal to the family's
    ``keras.applications.<family>.preprocess_input`` (the tests hold it to that).
    """
    import tensorflow as tf

    mode = preprocessing_mode(preprocessing)
    if mode == "none":
        return x
    if mode == "0..1":
        return x / 255.0
    if mode == "-1..1":
        return x / 127.5 - 1.0
    if mode == "caffe":
        return x[..., ::-1] - tf.constant(_CAFFE_MEAN_BGR, x.dtype)
    return (x / 255.0 - tf.constant(_TORCH_MEAN, x.dtype)) / tf.constant(_TORCH_STD, x.dtype)


class Fingerprint:
    """An incremental SHA-256 of JSON values and arrays; ``hexdigest()`` is the fingerprint."""

    def __init__(self, kind: str) -> None:
        self._h = hashlib.sha256(f"napari-patchheat model fingerprint v1:{kind}".encode())

    def add_json(self, value: Any) -> None:
        """Hash ``value`` as canonical JSON (sorted keys; unknown objects by ``str``)."""
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        self._h.update(len(text).to_bytes(8, "little") + text.encode())

    def add_array(self, name: str, array: Any) -> None:
        """Hash an array's name, dtype, shape and bytes."""
        arr = np.ascontiguousarray(np.asarray(array))
        self.add_json([name, arr.dtype.str, list(arr.shape)])
        self._h.update(arr.tobytes())

    def add_bytes(self, data: bytes) -> None:
        """Hash raw bytes (length-prefixed)."""
        self._h.update(len(data).to_bytes(8, "little") + data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def as_size(value: int | Sequence[int]) -> Size:
    """A patch size as an (h, w) pair of ints (an int means square)."""
    items = [value, value] if isinstance(value, (int, np.integer)) else list(value)
    if len(items) != 2:
        raise ValueError(f"size={value!r} must be an int or an (h, w) pair.")
    return int(items[0]), int(items[1])



def _in_place(arr: np.ndarray) -> bool:
    """True when TensorFlow can read ``arr`` where it lies (DLPack: C order, aligned,
    writeable, native byte order)."""
    return bool(arr.flags.c_contiguous and arr.flags.writeable and arr.dtype.isnative
                and arr.ctypes.data % ALIGN_BYTES == 0)


def _no_sample_inside(inside: InsideMask) -> np.ndarray:
    """(n,) bool: the patches of an :data:`InsideMask` with no sample inside the level."""
    rows, cols = (np.asarray(m, bool) for m in inside)
    return np.asarray(~(rows.any(axis=1) & cols.any(axis=1)))


class PatchModel:
    """A model that maps RGB patches to one value per class.

    Attributes: ``name``, ``class_names``, ``input_size`` ((h, w), or None when any size works),
    ``channels`` (3), ``mpp`` (µm/px it was trained at, or None), ``magnification``,
    ``preprocessing``, ``resize``, ``fingerprint`` (hex SHA-256 of weights, config and
    preprocessing), ``spec`` (what to pass to ``load_model`` to get it again, e.g. in a worker
    process), ``kind`` ("builtin", "keras", "h5" or "savedmodel"), ``precision`` ("float32",
    or "mixed_float16" for a Keras model loaded with mixed precision) and ``needs_inside_mask``
    (True for the built-ins: they count only a patch's samples inside the level, and ``forward``
    takes ``(x, inside)``, ``inside`` an :data:`InsideMask` or None when every sample is inside),
    ``positive_threshold`` (the model card's, for classifying a one-output model's tiles),
    ``test_time`` (the card's TTA, Monte-Carlo dropout and uncertainty: models/augment.py),
    ``autograph`` (tf.function's: False for a forward with no Python control flow on tensors,
    the built-ins, whose first batch then traces in ~0.02 s instead of ~0.27 s).
    """

    channels = CHANNELS

    def __init__(
        self,
        forward: Callable[..., Any],
        *,
        name: str,
        class_names: Sequence[str],
        input_size: Size | None,
        fingerprint: str,
        preprocessing: str = "none",
        input_dtype: str = "float32",
        mpp: float | None = None,
        magnification: float | None = None,
        resize: bool = False,
        spec: str = "",
        kind: str = "keras",
        description: str | None = None,
        jit_compile: bool = False,
        keepalive: Any = None,
        precision: str = "float32",
        needs_inside_mask: bool = False,
        positive_threshold: float | None = None,
        test_time: TestTime = PLAIN,
        autograph: bool = True,
    ) -> None:
        import tensorflow as tf

        self.name = name
        self.class_names = tuple(class_names)
        self.input_size = None if input_size is None else as_size(input_size)
        self.fingerprint = fingerprint
        self.preprocessing = preprocessing
        self.mpp = mpp
        self.magnification = magnification
        self.resize = bool(resize)
        self.spec = spec
        self.kind = kind
        self.description = description
        self.precision = precision
        self.needs_inside_mask = bool(needs_inside_mask)
        self.positive_threshold = positive_threshold  # the card's, for a one-output model
        self.test_time = test_time
        self._forward_fn = forward
        self._input_dtype = tf.as_dtype(input_dtype)
        self._mode = preprocessing_mode(preprocessing)
        self.keepalive = keepalive  # e.g. a loaded SavedModel whose variables forward uses
        self.jit_compile = bool(jit_compile)
        self.autograph = bool(autograph)  # off: no source conversion when tracing (~0.25 s)
        self._compiled = tf.function(self._forward, reduce_retracing=True, jit_compile=jit_compile,
                                     autograph=self.autograph)
        self._jit_checked = not jit_compile
        self._staging = threading.local()  # per thread: an aligned copy of an unaligned batch

    def __repr__(self) -> str:
        size = "any" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"
        return (f"PatchModel({self.name!r}, kind={self.kind!r}, classes={list(self.class_names)}, "
                f"input_size={size}, preprocessing={self.preprocessing!r})")

    def with_forward(self, forward: Callable[..., Any], keepalive: Any) -> PatchModel:
        """A copy that runs ``forward`` (holding ``keepalive``) in place of the network, with the
        same resizing, preprocessing, checks and attributes (e.g. the network with dropout on)."""
        import tensorflow as tf

        new = copy.copy(self)
        new._forward_fn, new.keepalive = forward, keepalive
        new._compiled = tf.function(new._forward, reduce_retracing=True,
                                    jit_compile=self.jit_compile, autograph=self.autograph)
        new._jit_checked = not self.jit_compile
        return new

    @property
    def n_classes(self) -> int:
        """Width of the output: ``len(class_names)``."""
        return len(self.class_names)

    # --- checks -------------------------------------------------------------------------------
    def check_patch_size(self, size: int | Sequence[int]) -> None:
        """Raise a ValueError when patches of ``size`` ((h, w) samples) cannot be fed.

        Fine when the model takes any size, the sizes match, or the model resizes (``resize``).
        """
        h, w = as_size(size)
        if self.input_size is None or (h, w) == self.input_size or self.resize:
            return
        ih, iw = self.input_size
        raise ValueError(
            f"Patch size {h} x {w} px does not match the input size {ih} x {iw} px of model "
            f"{self.name!r}: set the patch size to {ih} x {iw}, or turn on resizing (resize=True)."
        )

    def check_inside(self, shape: Sequence[int | None], inside: InsideMask | None) -> None:
        """Raise a ValueError unless ``inside`` is None or an :data:`InsideMask` of patches of
        ``shape`` (n, h, w, ...) for a model that takes one (``needs_inside_mask``)."""
        if inside is None:
            return
        if not self.needs_inside_mask:
            raise ValueError(
                f"Model {self.name!r} sees every sample of a patch, SAME's zero padding "
                "included: pass no inside mask."
            )
        rows, cols = (tuple(m.shape) for m in inside)
        n, h, w = tuple(shape)[:3]
        if rows != (n, h) or cols != (n, w):
            raise ValueError(
                f"An inside mask of shapes {rows} and {cols} does not fit {n} patches of "
                f"{h} x {w} samples: pass PatchGrid.inside_samples of the batch's patches."
            )

    def validate_output(self, out: np.ndarray, n: int | None = None,
                        inside: InsideMask | None = None) -> np.ndarray:
        """Check outputs of ``n`` patches are ``(n, classes)`` finite numbers; return float32.

        With ``inside``, patches with no sample inside the level may be NaN. :meth:`predict`
        calls it; call it on numpy results of :meth:`tf_predict`.
        """
        out = np.asarray(out)
        if out.ndim != 2 or (n is not None and out.shape[0] != n):
            raise ValueError(
                f"Model {self.name!r} returned outputs of shape {out.shape}"
                f"{'' if n is None else f' for {n} patches'}; a patch model must return one "
                "vector per patch, (patches, classes)."
            )
        if out.shape[1] != self.n_classes:
            raise ValueError(
                f"Model {self.name!r} returned {out.shape[1]} values per patch but has "
                f"{self.n_classes} class names ({', '.join(self.class_names)}): fix class_names "
                "in its model card."
            )
        bad = ~np.isfinite(out)
        if inside is not None:  # NaN is the value of a patch with no sample inside
            bad &= ~(np.isnan(out) & _no_sample_inside(inside)[:, None])
        if bad.any():
            rows = int(np.count_nonzero(bad.any(axis=1)))
            raise ValueError(
                f"Model {self.name!r} returned NaN or infinite values for {rows} of "
                f"{out.shape[0]} patches: check its weights and its preprocessing "
                f"({self.preprocessing!r})."
            )
        return out.astype(np.float32, copy=False)

    # --- running ------------------------------------------------------------------------------
    def predict(self, batch: np.ndarray, inside: InsideMask | None = None) -> np.ndarray:
        """Predict a batch of RGB patches: uint8 (n, h, w, 3) -> float32 (n, classes).

        Resizing (when on) and the card's preprocessing happen inside; the outputs are checked
        (shape, NaN, infinity) with a ValueError a user can act on. ``inside``: see
        :meth:`tf_predict`.
        """
        arr = np.asarray(batch)
        if arr.ndim != 4 or arr.shape[-1] != CHANNELS:
            raise ValueError(
                f"A batch of shape {arr.shape} is not RGB patches: pass (patches, height, width, "
                f"3), with {CHANNELS} channels."
            )
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"A batch of dtype {arr.dtype} is not numeric: pass uint8 RGB.")
        self.check_patch_size(arr.shape[1:3])
        if arr.shape[0] == 0:
            return np.zeros((0, self.n_classes), np.float32)
        out = self.tf_predict(self._shared_tensor(arr), inside).numpy()  # waits for the result
        return self.validate_output(out, arr.shape[0], inside)

    def _shared_tensor(self, arr: np.ndarray) -> Any:
        """``arr`` as a tensor on the CPU that shares memory instead of copying: ``arr``'s own
        where TensorFlow can read it in place (see :func:`aligned_empty`), else this thread's
        aligned staging buffer, reused from call to call. Valid until ``arr`` or the staging
        buffer changes: :meth:`predict` lets go of it before it returns."""
        import tensorflow as tf

        if not _in_place(arr):
            dtype = arr.dtype.newbyteorder("=")
            staging = getattr(self._staging, "array", None)
            if staging is None or staging.shape != arr.shape or staging.dtype != dtype:
                staging = self._staging.array = aligned_empty(arr.shape, dtype)
            np.copyto(staging, arr)
            arr = staging
        return tf.experimental.dlpack.from_dlpack(arr.__dlpack__())

    def tf_predict(self, batch: Any, inside: InsideMask | None = None) -> Any:
        """The compiled forward pass on a TF tensor: (n, h, w, 3) 0..255 -> (n, classes) float32.

        Any numeric dtype (uint8 is cheapest); call it eagerly or inside your own
        ``tf.function``, e.g. right after ``tf.image.extract_patches`` on the GPU. It resizes
        and preprocesses like :meth:`predict` and checks shapes when tracing, but does not look
        for NaN: pass its numpy result through :meth:`validate_output`. ``inside`` (models with
        ``needs_inside_mask`` only): count only those samples; a patch with none is NaN.
        """
        self.check_inside(batch.shape, inside)
        if self._jit_checked:
            return self._compiled(batch, inside)
        import tensorflow as tf

        try:
            out = self._compiled(batch, inside)
        except (ValueError, tf.errors.ResourceExhaustedError):  # the caller's to handle
            raise
        except Exception:  # XLA missing or failing on this platform: run without it
            self.jit_compile = False
            self._compiled = tf.function(self._forward, reduce_retracing=True,
                                         autograph=self.autograph)
            out = self._compiled(batch, inside)
        self._jit_checked = True
        return out

    def _forward(self, x: Any, inside: InsideMask | None = None) -> Any:
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        if x.shape.rank != 4 or x.shape[-1] != CHANNELS:
            raise ValueError(
                f"A batch of shape {tuple(x.shape)} is not RGB patches: pass (patches, height, "
                f"width, {CHANNELS})."
            )
        resized = False
        if self.input_size is not None and tuple(x.shape[1:3]) != self.input_size:
            if self.resize:
                x = tf.image.resize(tf.cast(x, tf.float32), self.input_size, "bilinear",
                                    antialias=True)
                resized = True
            elif None not in tuple(x.shape[1:3]):
                self.check_patch_size(tuple(x.shape[1:3]))
        if self._input_dtype.is_integer:
            if resized or not x.dtype.is_integer:
                x = tf.clip_by_value(tf.round(tf.cast(x, tf.float32)), 0.0, 255.0)
            x = tf.cast(x, self._input_dtype)  # integer-input models take raw pixels ("none")
        else:
            x = preprocess(tf.cast(x, tf.float32), self._mode)
            x = tf.cast(x, self._input_dtype)
        y = self._forward_fn(x, inside) if self.needs_inside_mask else self._forward_fn(x)
        if isinstance(y, dict):
            (y,) = y.values()
        y = tf.cast(y, tf.float32)
        if y.shape.rank is not None and y.shape.rank != 2:
            raise ValueError(
                f"Model {self.name!r} returns outputs of shape {tuple(y.shape)}; a patch model "
                "must return one vector per patch, (patches, classes)."
            )
        if y.shape.rank == 2 and y.shape[1] is not None and y.shape[1] != self.n_classes:
            raise ValueError(
                f"Model {self.name!r} returns {y.shape[1]} values per patch but has "
                f"{self.n_classes} class names: fix class_names in its model card."
            )
        return y
