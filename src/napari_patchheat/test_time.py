"""Test-time augmentation and Monte-Carlo dropout: the settings, and the names of sd channels.

A run averages a model's output over ``passes``: each patch's TTA transforms (``flips``: the
identity, the horizontal and the vertical flip and their product, a 180° turn; ``dihedral``: the
8 rotations by 90° and their mirror images) times ``mc_samples`` forward passes with the model's
dropout on. With ``uncertainty``, each class channel gets an ``"<class> sd"`` channel after all
the class channels: the population standard deviation over the passes. Pure Python: the
TensorFlow side is ``models/augment.py``; see docs/models.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TTA_MODES = ("none", "flips", "dihedral")
TTA_TRANSFORMS = {"none": 1, "flips": 4, "dihedral": 8}  # transforms per patch
SD_SUFFIX = " sd"  # the sd channel of class "tumour" is "tumour sd"
ONE_PASS_UNCERTAINTY = ("uncertainty needs more than one pass per patch: add test-time "
                        "augmentation (tta='flips' or 'dihedral') or Monte-Carlo dropout "
                        "(mc_samples > 1).")


def sd_name(class_name: str) -> str:
    """The name of the sd channel of ``class_name``."""
    return f"{class_name}{SD_SUFFIX}"


def n_predicted(names: Sequence[str]) -> int:
    """How many of the channels ``names`` are predictions: those before the sd channels, which
    are the last ones and are named ``"<class> sd"`` for each class before them."""
    names = list(names)
    half, rest = divmod(len(names), 2)
    if half and not rest and names[half:] == [sd_name(n) for n in names[:half]]:
        return half
    return len(names)


def check_tta(value: Any, where: str = "tta") -> str:
    """``value`` as a TTA mode (lower case); a ValueError names the choices."""
    mode = str(value).strip().lower() if isinstance(value, str) else None
    if mode not in TTA_MODES:
        raise ValueError(f"{where}={value!r} is unknown: use 'none', 'flips' (4 transforms) or "
                         "'dihedral' (8).")
    return mode


def check_mc_samples(value: Any, where: str = "mc_samples") -> int:
    """``value`` as a number of Monte-Carlo passes (a whole number >= 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}={value!r} must be a whole number of at least 1 (1: dropout "
                         "off).")
    return value


@dataclass(frozen=True)
class TestTime:
    """How a model runs at test time: ``tta`` mode, ``mc_samples`` passes with dropout on, and
    whether the sd channels are added (``uncertainty``, which needs more than one pass)."""

    __test__ = False  # not a pytest test class
    tta: str = "none"
    mc_samples: int = 1
    uncertainty: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tta", check_tta(self.tta))
        check_mc_samples(self.mc_samples)
        if self.uncertainty and self.passes == 1:
            raise ValueError(ONE_PASS_UNCERTAINTY)

    @property
    def transforms(self) -> int:
        """Transforms per patch (1, 4 or 8)."""
        return TTA_TRANSFORMS[self.tta]

    @property
    def passes(self) -> int:
        """Outputs averaged per patch: transforms x Monte-Carlo samples."""
        return self.transforms * self.mc_samples

    @property
    def active(self) -> bool:
        """False for a plain run (one pass, no sd channels)."""
        return self.passes > 1

    def as_dict(self) -> dict[str, Any]:
        return {"tta": self.tta, "mc_samples": self.mc_samples, "uncertainty": self.uncertainty}

    def resolve(self, tta: str | None, mc_samples: int | None, uncertainty: bool | None
                ) -> TestTime:
        """These settings (a model card's) with each of ``tta``, ``mc_samples`` and
        ``uncertainty`` that is not None (a run's options) in place of its own."""
        return TestTime(self.tta if tta is None else tta,
                        self.mc_samples if mc_samples is None else mc_samples,
                        self.uncertainty if uncertainty is None else uncertainty)


PLAIN = TestTime()  # one pass, no sd channels
