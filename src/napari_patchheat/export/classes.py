"""Which class an exported tile gets: a threshold for one-output models, the top class otherwise.

QuPath colours and counts tiles by their GeoJSON ``classification``, so a tile gets one only where
it means something. A one-output model (e.g. ``dab``: "dab_positive") classifies a tile when its
value is at or above a positive threshold, and no tile without one (as WSInfer writes); a model
with several classes gives each tile its top class, optionally only from a minimum probability.
Uncertainty channels (``"<class> sd"``, test_time.py) are no classes: they are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..test_time import n_predicted

UNCLASSIFIED = -1  # the class index of a tile that gets no classification


@dataclass(frozen=True)
class ClassRule:
    """How tiles of a heatmap with ``class_names`` are classified (see the module docstring);
    ``class_names`` keeps the classes only, without sd channels.

    ``positive_threshold`` only for one class, ``min_probability`` only for several; both are
    compared with the stored float32 values (``value >= threshold``). A ValueError otherwise.
    """

    class_names: tuple[str, ...]
    positive_threshold: float | None = None
    min_probability: float | None = None

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.class_names)
        names = names[:n_predicted(names)]  # without the sd channels
        object.__setattr__(self, "class_names", names)
        for label, value in (("positive threshold", self.positive_threshold),
                             ("minimum probability", self.min_probability)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ValueError(f"The {label} {value!r} must be a finite number, e.g. 0.5.")
        if self.positive_threshold is not None and len(names) != 1:
            raise ValueError(
                f"A positive threshold applies only to a model with one output; this one has "
                f"{len(names)} classes ({', '.join(names)}): give a minimum probability instead.")
        if self.min_probability is not None and len(names) == 1:
            raise ValueError(
                f"A minimum probability applies only to a model with several classes; "
                f"{names[0]!r} is this model's only output: give a positive threshold instead.")

    def classes(self, values: np.ndarray) -> np.ndarray:
        """The class index of each tile from its values (n, classes); UNCLASSIFIED for none."""
        values = np.asarray(values)[:, :len(self.class_names)]
        if len(self.class_names) == 1:
            if self.positive_threshold is None:
                return np.full(len(values), UNCLASSIFIED)
            return np.where(values[:, 0] >= self.positive_threshold, 0, UNCLASSIFIED)
        top = np.argmax(np.nan_to_num(values, nan=-np.inf), axis=1)
        if self.min_probability is None:
            return top
        best = np.take_along_axis(values, top[:, None], axis=1)[:, 0]
        return np.where(best >= self.min_probability, top, UNCLASSIFIED)

    def describe(self) -> dict[str, Any]:
        """The rule as JSON: both numbers (None where not used) and one sentence."""
        names: Sequence[str] = self.class_names
        if len(names) == 1:
            t = self.positive_threshold
            rule = ("no tile is classified (no positive threshold)" if t is None
                    else f"{names[0]} where its value >= {t}, else unclassified")
        else:
            rule = "the class with the highest value" + (
                "" if self.min_probability is None
                else f" where that value >= {self.min_probability}, else unclassified")
        return {"rule": rule, "positive_threshold": self.positive_threshold,
                "min_probability": self.min_probability}
