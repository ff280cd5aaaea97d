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
from dataclasses import dataclass, field
from typing import Any, get_args

from .extract import Backend
from .grid import PADDINGS, as_pair

BACKENDS: tuple[str, ...] = get_args(Backend)
DEFAULT_BATCH_SIZE = 32
# The tools people click and type (the dock, `patchheat run`) skip patches with almost no tissue,
# so glass is not painted; the API computes every patch unless told otherwise (0 keeps all).
INTERACTIVE_TISSUE_THRESHOLD = 0.1
PAIR_FIELDS = ("size", "stride", "rate")
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
    batch_size: int = _option(DEFAULT_BATCH_SIZE, "patches per model call (default 32)", "int")
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
        choices=STAIN_METHODS, section=MODEL_INPUT)
    stain_target: str | os.PathLike[str] | None = _option(
        None, "image of the target stain (PNG, JPEG, TIFF or a slide; its tissue is fitted); "
        "default: the model card's stain_target", "path", section=MODEL_INPUT)

    def __post_init__(self) -> None:
        for name in PAIR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_pair(name, value))
        self._check_batch_size()
        self._check_tissue_threshold()
        self._check_choices()
        if not 0.0 < self.roi_min_fraction <= 1.0:
            raise ValueError(f"roi_min_fraction={self.roi_min_fraction} must be a fraction "
                             "above 0, up to 1.")

    def _check_batch_size(self) -> None:
        n = self.batch_size
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"batch_size={n!r} must be a whole number of at least 1.")

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
        if self.stain_norm not in STAIN_METHODS:
            raise ValueError(f"stain_norm={self.stain_norm!r} is unknown: use one of "
                             f"{', '.join(STAIN_METHODS)}.")
