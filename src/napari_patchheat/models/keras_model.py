"""User models: Keras ``.keras``, legacy ``.h5`` and TensorFlow SavedModel directories.

What the model card says (docs/models.md) wins where the model itself is silent; where both
speak they must agree. Every failure is a ValueError (FileNotFoundError for a missing path) with
one sentence naming the file and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .card import ModelCard, find_card, preprocessing_mode
from .patch_model import CHANNELS, Fingerprint, PatchModel

KERAS_SUFFIXES = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}
MIXED_POLICY = "mixed_float16"  # Keras dtype policy of mixed precision
_ERROR_DETAIL_CHARS = 200


def load_user_model(path: str | Path, *, resize: bool = False, mixed_precision: bool = False,
                    builtins: tuple[str, ...] = ()) -> PatchModel:
    """Load a Keras file or SavedModel directory and its card as a :class:`PatchModel`.

    ``mixed_precision`` rebuilds a Keras model under the ``mixed_float16`` policy (float16
    compute, float32 variables): for GPUs with tensor cores. A SavedModel runs as it was saved.
    """
    path = Path(path).expanduser()
    if not path.exists():
        hint = f", or a built-in model ({', '.join(builtins)})" if builtins else ""
        raise FileNotFoundError(
            f"Model {str(path)!r} does not exist: pass the path of a .keras or .h5 file or of a "
            f"SavedModel directory{hint}."
        )
    card = find_card(path)
    if path.is_dir():
        if mixed_precision:
            raise ValueError(
                f"{path} is a SavedModel, which runs in the precision it was saved in: turn "
                "mixed precision off, or pass the model as a .keras or .h5 file."
            )
        return _load_savedmodel(path, card, resize)
    kind = KERAS_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(
            f"{path} is not a model napari-patchheat can load: use a Keras .keras or .h5 file, a "
            "TensorFlow SavedModel directory, or a built-in model name."
        )
    return _load_keras(path, kind, card, resize, mixed_precision)


def _detail(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:_ERROR_DETAIL_CHARS]


def _check_container(path: Path, kind: str) -> None:
    """Refuse a file that is not even the right container (zip for .keras, HDF5 for .h5)."""
    if kind == "keras":
        import zipfile

        ok, what = zipfile.is_zipfile(path), "a .keras model is a zip archive"
    else:
        import h5py

        ok, what = h5py.is_hdf5(path), "a .h5 model is an HDF5 file"
    if not ok:
        raise ValueError(f"{path} is corrupt or not a Keras model: {what} and this file is not.")


def _load_keras(path: Path, kind: str, card: ModelCard, resize: bool, mixed_precision: bool
                ) -> PatchModel:
    import keras

    _check_container(path, kind)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises many types for broken files
        raise ValueError(
            f"Cannot load {path} as a Keras {'.keras' if kind == 'keras' else '.h5'} model: the "
            f"file is corrupt, is not a Keras model, or needs custom code ({_detail(exc)})."
        ) from exc
    if not isinstance(model, keras.Model):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a Keras model.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Model {path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; a "
            "patch model takes one batch of images and returns one (patches, classes) output."
        )
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    fp = Fingerprint(kind)
    fp.add_json(model.get_config())
    for weight in model.weights:
        fp.add_array(getattr(weight, "path", weight.name), weight.numpy())
    if mixed_precision:
        model = _mixed_precision(model, path)
        fp.add_json({"dtype_policy": MIXED_POLICY})

    def forward(x: Any) -> Any:
        return model(x, training=False)

    return _build(path, kind, card, resize, forward, in_shape, out_shape,
                  str(model.inputs[0].dtype), fp, keepalive=model,
                  precision=MIXED_POLICY if mixed_precision else "float32")


def _mixed_precision(model: Any, path: Path) -> Any:
    """A copy of Keras ``model`` whose layers, nested models' included, compute under
    :data:`MIXED_POLICY` with the same weights; the output layer stays float32 (Keras' advice:
    a float16 softmax or logit overflows past 65504)."""
    import keras

    last = model.layers[-1]

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer) and layer is not last:
            config["dtype"] = MIXED_POLICY
        return layer.__class__.from_config(config)

    try:
        mixed = keras.models.clone_model(model, clone_function=clone, recursive=True)
        mixed.set_weights(model.get_weights())
    except Exception as exc:
        raise ValueError(
            f"Cannot rebuild {path} for mixed precision ({_detail(exc)}): turn mixed precision "
            "off to run it as saved."
        ) from exc
    return mixed


def _load_savedmodel(path: Path, card: ModelCard, resize: bool) -> PatchModel:
    import tensorflow as tf

    if not any((path / f).is_file() for f in ("saved_model.pb", "saved_model.pbtxt")):
        raise ValueError(
            f"{path} is a directory but not a TensorFlow SavedModel (it has no saved_model.pb): "
            "pass a SavedModel directory, or a .keras or .h5 file."
        )
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ValueError(
            f"Cannot load the SavedModel {path}: it is corrupt or incomplete ({_detail(exc)})."
        ) from exc
    sigs = dict(loaded.signatures)
    sig = sigs.get("serving_default") or (next(iter(sigs.values())) if len(sigs) == 1 else None)
    if sig is None:
        raise ValueError(
            f"SavedModel {path} has no 'serving_default' signature (it has "
            f"{', '.join(sigs) or 'none'}): export it with model.export() or tf.saved_model.save "
            "with a serving signature."
        )
    args, kwargs = sig.structured_input_signature
    outputs = sig.structured_outputs
    n_out = len(outputs) if isinstance(outputs, dict) else 1
    if args or len(kwargs) != 1 or n_out != 1:
        raise ValueError(
            f"SavedModel {path} has {len(args) + len(kwargs)} inputs and {n_out} outputs; a "
            "patch model takes one batch of images and returns one (patches, classes) output."
        )
    (in_name, in_spec), = kwargs.items()
    out_spec = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs

    def forward(x: Any) -> Any:
        return sig(**{in_name: x})

    fp = Fingerprint("savedmodel")
    pb = path / "saved_model.pb"
    fp.add_bytes(pb.read_bytes() if pb.is_file() else (path / "saved_model.pbtxt").read_bytes())
    fp.add_json([in_name, str(in_spec), str(out_spec)])
    entries = []
    for var in sig.variables:
        value = var.numpy()
        digest = Fingerprint("var")
        digest.add_array(var.name, value)
        entries.append((var.name, digest.hexdigest()))
    fp.add_json(sorted(entries))
    in_shape = tuple(in_spec.shape.as_list()) if in_spec.shape.rank is not None else ()
    out_shape = tuple(out_spec.shape.as_list()) if out_spec.shape.rank is not None else None
    return _build(path, "savedmodel", card, resize, forward, in_shape, out_shape,
                  in_spec.dtype.name, fp, keepalive=(loaded, sig))


def _input_size(path: Path, in_shape: tuple, card: ModelCard) -> tuple[int, int] | None:
    """The (height, width) the model takes: its own where fixed (checked against the card's),
    else the card's; a ValueError where the input is no RGB image batch."""
    if len(in_shape) != 4:
        raise ValueError(
            f"Model {path} takes inputs of shape {in_shape}; a patch model takes image batches "
            f"(patches, height, width, {CHANNELS})."
        )
    if in_shape[3] is not None and in_shape[3] != CHANNELS:
        raise ValueError(
            f"Model {path} takes {in_shape[3]}-channel images; napari-patchheat feeds RGB "
            f"patches ({CHANNELS} channels)."
        )
    model_size = tuple(in_shape[1:3])
    input_size = card.input_size
    if None not in model_size:
        if input_size is not None and input_size != model_size:
            raise ValueError(
                f"The model card of {path} says input_size {list(input_size)} but the model "
                f"takes {model_size[0]} x {model_size[1]} px: fix input_size in the card."
            )
        input_size = model_size
    return input_size


def _class_names(path: Path, out_shape: tuple | None, card: ModelCard) -> tuple[str, ...]:
    """The class names: the card's (checked against the model's output width), else
    ``class_<i>``; a ValueError where the output is not one vector per patch."""
    if out_shape is not None and len(out_shape) != 2:
        raise ValueError(
            f"Model {path} returns outputs of shape {out_shape}; a patch model must return one "
            "vector per patch, (patches, classes): end it with a pooling or Flatten and a Dense "
            "layer."
        )
    width = None if out_shape is None else out_shape[1]
    names = card.class_names
    if names is None:
        if width is None:
            raise ValueError(
                f"Model {path} does not say how many values it returns per patch: give "
                "class_names in its model card."
            )
        names = tuple(f"class_{i}" for i in range(width))
    elif width is not None and width != len(names):
        raise ValueError(
            f"The model card of {path} names {len(names)} classes but the model returns {width} "
            "values per patch: fix class_names in the card."
        )
    return tuple(names)


def _build(path: Path, kind: str, card: ModelCard, resize: bool, forward: Any,
           in_shape: tuple, out_shape: tuple | None, in_dtype: str, fp: Fingerprint,
           keepalive: Any, precision: str = "float32") -> PatchModel:
    """Check the model's own shapes against the card and wrap it."""
    input_size = _input_size(path, in_shape, card)
    names = _class_names(path, out_shape, card)
    prep = card.preprocessing or "none"
    mode = preprocessing_mode(prep)
    in_dtype = str(in_dtype).removeprefix("tf.")
    if in_dtype.startswith(("uint", "int")) and mode != "none":
        raise ValueError(
            f"Model {path} takes {in_dtype} pixels, so its card's preprocessing must be 'none', "
            f"not {prep!r}."
        )
    fp.add_json({"preprocessing": mode, "input_size": input_size})
    return PatchModel(
        forward,
        name=card.name or path.stem,
        class_names=names,
        input_size=input_size,
        fingerprint=fp.hexdigest(),
        preprocessing=prep,
        input_dtype=in_dtype,
        mpp=card.effective_mpp,
        magnification=card.magnification,
        resize=resize,
        spec=str(path.resolve()),
        kind=kind,
        description=card.description,
        keepalive=keepalive,
        precision=precision,
        positive_threshold=card.positive_threshold,
        test_time=card.test_time,
    )
