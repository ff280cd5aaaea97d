"""RunOptions: the one list of a run's parameters, for the API, the CLI, the runner and the widget.

Each field carries its user-facing help and the kind of value it takes in
``dataclasses.field(metadata=...)``, so a user interface can build its inputs from the fields:
``help`` (one line, the CLI's), ``kind`` ("int", "float", "pair", "choice", "switch", "path"),
``choices`` for a choice, ``flag`` where the CLI's flag is not ``--<name>``, ``section`` where
the dock builds the field's control in a section of its own (:data:`MODEL_INPUT`). Values that need
neither the slide nor the model are checked here; the rest (the level, whether a patch fits) where
the run starts.
Numpy only: this module crosses to the spawned inference worker (pickled).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, get_args

from .extract import Backend
from .grid import PADDINGS, as_pair
from .test_time import ONE_PASS_UNCERTAINTY, TTA_MODES, check_mc_samples, check_tta

BACKENDS: tuple[str, ...] = get_args(Backend)
DEFAULT_BATCH_SIZE = 32
# The tools people click and type (the dock, `patchheat run`) skip patches with almost no tissue,
# so glass is not painted; the API computes every patch unless told otherwise (0 keeps all).
INTERACTIVE_TISSUE_THRESHOLD = 0.1
PAIR_FIELDS = ("size", "stride", "rate")
# the model's input: the pixels as the scanner wrote them, or converted to sRGB from the file's
# ICC profile (slide/color.py)
AS_STORED, SRGB = "as stored", "srgb"
COLORS = (AS_STORED, SRGB)
STAIN_METHODS = ("none", "reinhard", "macenko", "vahadane")  # models/stain_norm.py's FITS
MODEL_INPUT = "Model input"  # the dock's section of the fields that change what the model sees


def _option(default: Any, help_text: str, kind: str, **more: Any) -> Any:
    """A dataclass field with its UI description in the metadata (``interactive_default``: the
    dock's and the CLI's default where it differs from the API's)."""
    return field(default=default, metadata={"help": help_text, "kind": kind, **more})


@dataclass(frozen=True)
class RunOptions:
    """How to run a model over a slide level: grid (level pixels), batches, tissue, cache.

    ``size``, ``stride`` and ``rate`` take an int, a (y, x) pair or TensorFlow's
    ``[1, y, x, 1]`` and are kept as (y, x) pairs; ``size=None`` is the model's input size and
    ``stride=None`` the size. ``padding`` is kept upper-case. A bad value is a ValueError.
    """

    level: int = _option(0, "pyramid level (default 0)", "int")
    size: int | Sequence[int] | None = _option(
        None, "patch size in level pixels, 'n' or 'y,x' (default: the model's input)", "pair")
    stride: int | Sequence[int] | None = _option(None, "stride (default: the size)", "pair")
    rate: int | Sequence[int] = _option(1, "dilation rate (default 1)", "pair")
    padding: str = _option(
        "VALID", "VALID keeps patches inside the level, SAME pads it with zeros as TensorFlow "
        "does (default VALID)", "choice", choices=PADDINGS)
    # None: chosen by the run from the measured cost of the model; keys keep the old default
    batch_size: int | None = _option(
        None, f"patches per model call (default: from {DEFAULT_BATCH_SIZE} up, chosen from the "
        "model's measured cost)", "int", key_default=DEFAULT_BATCH_SIZE)
    decode_threads: int | None = _option(
        None, "threads decoding the slide ahead of the model (default: chosen from the measured "
        "costs of decoding and of the model)", "int", since="0.3")
    tissue_threshold: float = _option(
        0.0, f"skip patches with less tissue than this fraction (default "
        f"{INTERACTIVE_TISSUE_THRESHOLD}: glass is skipped; 0 keeps every patch)", "float",
        interactive_default=INTERACTIVE_TISSUE_THRESHOLD)
    resize: bool = _option(
        False, "resize patches to the model's input size when they differ", "switch")
    mixed_precision: bool = _option(
        False, "run a Keras model's layers in float16 (for GPUs with tensor cores)", "switch")
    backend: Backend = _option(
        "auto", "patch extraction: tf (on TensorFlow's device), numpy, or auto (tf when "
        "TensorFlow sees a GPU; the default)", "choice", choices=BACKENDS)
    cache_dir: str | os.PathLike[str] | None = _option(
        None, "folder of the result cache (default: runs/ in $PATCHHEAT_CACHE_DIR, else "
        "$XDG_CACHE_HOME/napari-patchheat)", "path")
    use_cache: bool = _option(
        True, "neither read nor write the result cache", "switch", flag="--no-cache")
    color: str = _option(
        AS_STORED, "the model's input colours: 'as stored' (the default: the pixels as the "
        "scanner wrote them, which is what models learn from) or 'srgb' (converted from the "
        "slide's ICC profile to sRGB; a slide without a profile is an error)", "choice",
        choices=COLORS, since="0.3")
    # compare=False: a region (geometries, a mask array) has no meaningful equality
    roi: Any = field(default=None, compare=False, metadata={
        "help": "run only inside these regions: a GeoJSON file of polygons in level-0 pixels "
                "(QuPath's 'Export objects as GeoJSON') or a mask image (scaled over the slide, "
                "non-zero inside); the API also takes shapely geometries and mask arrays",
        "kind": "path"})
    roi_min_fraction: float = _option(
        0.5, "a patch is inside the region when at least this fraction of its effective area "
        "is (default 0.5)", "float")
    roi_centre: bool = _option(
        False, "a patch is inside the region when its centre is (instead of the fraction)",
        "switch")
    # --- what the model sees (``section``: the dock shows these under MODEL_INPUT)
    stain_norm: str = _option(
        "none", "stain normalisation of each patch to the target's stain, fitted once per slide "
        "from its tissue: none, reinhard, macenko or vahadane (default none)", "choice",
        choices=STAIN_METHODS, section=MODEL_INPUT, since="0.3")
    stain_target: str | os.PathLike[str] | None = _option(
        None, "image of the target stain (PNG, JPEG, TIFF or a slide; its tissue is fitted); "
        "default: the model card's stain_target", "path", section=MODEL_INPUT, since="0.3")
    # None: as the model card says (else none, 1, off); see test_time.py and docs/models.md
    tta: str | None = _option(
        None, "test-time augmentation: average each patch's flips (4 transforms) or dihedral "
        "turns and flips (8) (default: the model card's, else none)", "choice", choices=TTA_MODES,
        section=MODEL_INPUT, since="0.3")
    mc_samples: int | None = _option(
        None, "Monte-Carlo dropout: run a Keras model this many times with its dropout on and "
        "average (default: the model card's, else 1)", "int", section=MODEL_INPUT, since="0.3")
    uncertainty: bool | None = _option(
        None, "add a '<class> sd' channel per class: the standard deviation over the TTA and "
        "dropout passes (default: the model card's, else off)", "switch", section=MODEL_INPUT,
        since="0.3")

    def __post_init__(self) -> None:
        for name in PAIR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_pair(name, value))
        self._check_batch_size()
        self._check_tissue_threshold()
        self._check_choices()
        self._check_test_time()
        if not 0.0 < self.roi_min_fraction <= 1.0:
            raise ValueError(f"roi_min_fraction={self.roi_min_fraction} must be a fraction "
                             "above 0, up to 1.")

    def key_fields(self) -> dict[str, Any]:
        """The options as a dict for keys (a batch's manifest): a field added since 0.2
        (``since`` in its metadata) only where it differs from its default, a field whose
        default changed (``key_default``) at its old default, so the keys made before stay
        valid."""
        values = asdict(self)
        for f in fields(self):
            if getattr(self, f.name) == f.default:
                if f.metadata.get("since"):
                    del values[f.name]
                elif "key_default" in f.metadata:
                    values[f.name] = f.metadata["key_default"]
        return values

    def _check_batch_size(self) -> None:
        for name in ("batch_size", "decode_threads"):
            n = getattr(self, name)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise ValueError(f"{name}={n!r} must be a whole number of at least 1, or None "
                                 "to choose it from the measured costs.")

    def _check_tissue_threshold(self) -> None:
        if not 0.0 <= self.tissue_threshold <= 1.0:
            raise ValueError(f"tissue_threshold={self.tissue_threshold} must be a fraction "
                             "from 0 (keep all) to 1.")

    def _check_choices(self) -> None:
        padding = str(self.padding).upper()
        if padding not in PADDINGS:
            raise ValueError(f"padding={self.padding!r} is unknown: use 'VALID' or 'SAME'.")
        object.__setattr__(self, "padding", padding)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is unknown: use 'auto', 'tf' or 'numpy'.")
        color = str(self.color).lower()
        if color not in COLORS:
            raise ValueError(f"color={self.color!r} is unknown: use 'as stored' or 'srgb'.")
        object.__setattr__(self, "color", color)
        if self.stain_norm not in STAIN_METHODS:
            raise ValueError(f"stain_norm={self.stain_norm!r} is unknown: use one of "
                             f"{', '.join(STAIN_METHODS)}.")

    def _check_test_time(self) -> None:
        if self.tta is not None:
            object.__setattr__(self, "tta", check_tta(self.tta))
        if self.mc_samples is not None:
            check_mc_samples(self.mc_samples)
        if self.uncertainty is not None and not isinstance(self.uncertainty, bool):
            raise ValueError(f"uncertainty={self.uncertainty!r} must be True, False or None "
                             "(the model card's).")
        if self.uncertainty and self.tta == "none" and self.mc_samples == 1:
            raise ValueError(ONE_PASS_UNCERTAINTY)
