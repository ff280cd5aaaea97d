"""Stain normalisation: fit a slide's and a target's stain statistics, map one onto the other.

Three methods, each a fit (numpy, deterministic) and a per-pixel transform (TensorFlow, built
lazily by :func:`tf_normalise`; its NumPy twin :func:`normalise_numpy` shows it in the GUI):

- ``reinhard``: means and standard deviations of CIE L*a*b* (D65, sRGB gamma: the conversion of
  ``skimage.color.rgb2lab`` and of torchstain's numpy backend); each channel is standardised
  with the source's and scaled to the target's (Reinhard et al. 2001).
- ``macenko``: the 3 x 2 stain matrix (columns hematoxylin, eosin; rows R, G, B optical density)
  from the extreme angles of the OD pixels in the plane of their two main directions, and the
  99th-percentile concentrations (Macenko et al. 2009, with torchstain's constants ``Io=240``,
  ``alpha=1``, ``beta=0.15``: OD = -log((I + 1) / Io)).
- ``vahadane``: the stain matrix of a sparse non-negative factorisation of the OD pixels
  (Vahadane et al. 2016: ``min |OD - C W|^2 / 2 + lambda |C|_1``, ``C, W >= 0``, unit stains,
  ``lambda = 0.01``), solved here by alternating non-negative coordinate descent started from the
  Macenko matrix; concentrations as Macenko's.

Macenko and Vahadane keep each pixel's residual, the part of its OD no stain explains: only the
stain part is re-coloured, so an image normalised to itself is unchanged (torchstain drops it).
No TensorFlow at import: the fit crosses to the inference worker inside the options' results.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

IO = 240.0  # Macenko's transmitted light intensity (torchstain's default)
ALPHA_PERCENT = 1.0  # Macenko's angle percentile
BETA_OD = 0.15  # pixels with any channel's OD below this are background to the stain fit
MAX_PERCENTILE = 99.0  # a stain's "max concentration"
# sparsity of the concentrations: Vahadane's (spams') 0.1 collapses hematoxylin onto red OD on
# the CMU H&E slide with this OD convention; 0.01 keeps both stains
VAHADANE_LAMBDA = 0.01
VAHADANE_MAX_PX = 2**18  # stained pixels the factorisation uses at most (every k-th)
VAHADANE_ROUNDS = 30  # alternations of the factorisation
VAHADANE_SWEEPS = 5  # coordinate-descent sweeps of the concentrations per round
STAT_DIGITS = 10  # significant digits a fitted value keeps: its JSON text is its value
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])


@dataclass(frozen=True)
class StainFit:
    """A method and its source and target statistics, plain floats and lists (JSON-able).

    ``reinhard``: ``{"means": [L, a, b], "stds": [L, a, b]}``; ``macenko``/``vahadane``:
    ``{"stain_matrix": 3 x 2 (rows R, G, B; columns H, E), "max_concentrations": [H, E]}``.
    """

    method: str
    source: dict[str, Any]
    target: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The fit as the heatmap's ``extra["stain_norm"]`` records it."""
        return {"method": self.method, "source": self.source, "target": self.target}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StainFit:
        """The fit :meth:`to_json` wrote (equal, bit for bit)."""
        return cls(str(data["method"]), dict(data["source"]), dict(data["target"]))

    def key(self) -> str:
        """Canonical JSON of the fit, for fingerprints."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


def _round(values: Any) -> Any:
    """Floats rounded to :data:`STAT_DIGITS` significant digits, as nested lists."""
    arr = np.asarray(values, np.float64)
    if arr.ndim == 0:
        return float(f"{float(arr):.{STAT_DIGITS}g}")
    return [_round(v) for v in arr]


# --- CIE L*a*b* ----------------------------------------------------------------------------------
def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of RGB 0..255 (..., 3), float64: ``skimage.color.rgb2lab``'s formulas."""
    x = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = linear @ _XYZ_FROM_RGB.T / _WHITE_D65
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                     200.0 * (f[..., 1] - f[..., 2])], axis=-1)


# --- fits ----------------------------------------------------------------------------------------
def _pixels(rgb: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The (n, 3) pixels of ``rgb`` where ``mask`` (all where None); a ValueError when none."""
    rgb = np.asarray(rgb)[..., :3]
    pixels = rgb.reshape(-1, 3) if mask is None else rgb[np.asarray(mask, bool)]
    if len(pixels) == 0:
        raise ValueError("no tissue to fit the stain to: the image or region is blank glass.")
    return pixels


def fit_reinhard(rgb: np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
    """L*a*b* means and (population) standard deviations of the pixels of ``rgb`` (uint8, 0..255)
    where ``mask`` is True (all pixels where None)."""
    lab = rgb_to_lab(_pixels(rgb, mask))
    return {"means": _round(lab.mean(axis=0)), "stds": _round(lab.std(axis=0))}


def optical_density(pixels: np.ndarray, io: float = IO) -> np.ndarray:
    """Macenko's OD of RGB pixels 0..255: ``-log((I + 1) / io)``, float64."""
    return -np.log((np.asarray(pixels, np.float64) + 1.0) / io)


def _stain_od(od: np.ndarray, beta: float) -> np.ndarray:
    """The OD pixels every channel of which reaches ``beta`` (stained); a ValueError if too few."""
    stained = od[(od >= beta).all(axis=1)]
    if len(stained) < 2:
        raise ValueError("too few stained pixels to fit a stain matrix: the tissue is too pale "
                         "or there is too little of it.")
    return stained


def _he_order(v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
    """(3, 2): the two stain vectors, hematoxylin (the larger red OD) first."""
    return np.stack([v1, v2] if v1[0] > v2[0] else [v2, v1], axis=1)


def _macenko_matrix(stained: np.ndarray, alpha: float) -> np.ndarray:
    centred = stained - stained.mean(axis=0)
    cov = np.einsum("ni,nj->ij", centred, centred) / (len(stained) - 1)
    _, vectors = np.linalg.eigh(cov)
    plane = vectors[:, 1:3]
    projected = stained @ plane
    phi = np.arctan2(projected[:, 1], projected[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100.0 - alpha])
    return _he_order(plane @ [math.cos(lo), math.sin(lo)], plane @ [math.cos(hi), math.sin(hi)])


def _stain_stats(od: np.ndarray, matrix: np.ndarray) -> dict[str, Any]:
    """The fit's record: ``matrix`` and the 99th percentiles of the least-squares
    concentrations of every pixel's ``od``."""
    concentrations = od @ np.linalg.pinv(matrix).T
    top = np.percentile(concentrations, MAX_PERCENTILE, axis=0)
    return {"stain_matrix": _round(matrix), "max_concentrations": _round(top)}


def fit_macenko(rgb: np.ndarray, mask: np.ndarray | None = None, io: float = IO,
                alpha: float = ALPHA_PERCENT, beta: float = BETA_OD) -> dict[str, Any]:
    """Macenko's stain matrix (3 x 2, H then E) and max concentrations of the pixels of ``rgb``
    (uint8) where ``mask`` is True, as torchstain computes them."""
    od = optical_density(_pixels(rgb, mask), io)
    return _stain_stats(od, _macenko_matrix(_stain_od(od, beta), alpha))


def _nonnegative_cd(gram: np.ndarray, corr: np.ndarray, x: np.ndarray, lam: float) -> None:
    """Coordinate descent, in place, of ``x`` (n, 2) >= 0 on x G x^T / 2 - x . corr +
    lam |x|_1, G = ``gram`` (2, 2), ``corr`` (n, 2): non-negative (sparse) least squares."""
    for _ in range(VAHADANE_SWEEPS):
        for k in (0, 1):
            other = x[:, 1 - k] * gram[k, 1 - k]
            x[:, k] = np.maximum(0.0, (corr[:, k] - other - lam) / max(gram[k, k], 1e-12))


def fit_vahadane(rgb: np.ndarray, mask: np.ndarray | None = None, io: float = IO,
                 beta: float = BETA_OD, lam: float = VAHADANE_LAMBDA) -> dict[str, Any]:
    """Vahadane's stain matrix (3 x 2, H then E: a sparse non-negative factorisation of the
    stained OD pixels) and max concentrations of the pixels of ``rgb`` where ``mask``."""
    od = optical_density(_pixels(rgb, mask), io)
    stained = _stain_od(od, beta)
    stained = stained[::max(1, math.ceil(len(stained) / VAHADANE_MAX_PX))]
    w = np.abs(_macenko_matrix(stained, ALPHA_PERCENT).T)
    codes = np.zeros((len(stained), 2))
    for _ in range(VAHADANE_ROUNDS):
        _nonnegative_cd(w @ w.T, stained @ w.T, codes, lam)
        columns = w.T.copy()  # (3, 2): each channel's OD in the two stains, >= 0
        _nonnegative_cd(codes.T @ codes, (codes.T @ stained).T, columns, 0.0)
        w = columns.T / np.maximum(np.linalg.norm(columns.T, axis=1, keepdims=True), 1e-12)
    return _stain_stats(od, _he_order(w[0], w[1]))


FITS = {"reinhard": fit_reinhard, "macenko": fit_macenko, "vahadane": fit_vahadane}


def fit_stain(method: str, rgb: np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
    """The statistics of ``method`` (one of :data:`FITS`) of ``rgb``'s pixels where ``mask``."""
    if method not in FITS:
        raise ValueError(f"stain_norm={method!r} is unknown: use one of "
                         f"{', '.join(FITS)}.")
    return FITS[method](rgb, mask)


def check_stats(method: str, stats: Any) -> dict[str, Any]:
    """``stats`` of ``method`` checked (keys, shapes, finite; positive spreads): a ValueError
    saying what is wrong."""
    shapes = ({"means": (3,), "stds": (3,)} if method == "reinhard"
              else {"stain_matrix": (3, 2), "max_concentrations": (2,)})
    if not isinstance(stats, dict) or set(stats) != set(shapes):
        raise ValueError(f"{method} statistics must hold exactly {', '.join(shapes)}.")
    for key, shape in shapes.items():
        arr = np.asarray(stats[key], dtype=object)
        ok = arr.shape == shape and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                        for v in arr.ravel())
        if not ok or not np.isfinite(arr.astype(float)).all():
            raise ValueError(f"{method} {key} must be {' x '.join(map(str, shape))} numbers.")
    spread = "stds" if method == "reinhard" else "max_concentrations"
    if min(stats[spread]) <= 0:
        raise ValueError(f"{method} {spread} must be positive.")
    return {key: _round(stats[key]) for key in shapes}


def card_stain_target(value: Any) -> dict[str, Any]:
    """A card's ``stain_target`` checked: ``{"method": ..., <the method's statistics>}``."""
    if not isinstance(value, dict) or value.get("method") not in FITS:
        raise ValueError("stain_target must be an object with a method (reinhard, macenko or "
                         "vahadane) and its statistics.")
    stats = check_stats(value["method"], {k: v for k, v in value.items() if k != "method"})
    return {"method": value["method"], **stats}


# --- the transform: its constants, NumPy (display) and TensorFlow (the model's input) ----------
def _od_map(source: dict[str, Any], target: dict[str, Any]) -> np.ndarray:
    """(3, 3): OD -> (stains, residual) with the source matrix, stains scaled by target / source
    max, back with the target matrix, residual kept, as one map: ``od_out = od @ map``."""
    src = np.asarray(source["stain_matrix"], np.float64)
    tgt = np.asarray(target["stain_matrix"], np.float64)
    scale = np.asarray(target["max_concentrations"]) / np.asarray(source["max_concentrations"])
    unmix = np.linalg.pinv(src).T  # od @ unmix: the concentrations (n, 2)
    # od_out = od + c @ (scale * tgt - src)^T: the stain part replaced, the residual kept
    return np.eye(3) + unmix @ (scale[:, None] * tgt.T - src.T)


def _lab_affine(source: dict[str, Any], target: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(gain, shift) of Reinhard's L*a*b* map: ``lab * gain + shift``."""
    gain = np.asarray(target["stds"]) / np.asarray(source["stds"])
    return gain, np.asarray(target["means"]) - gain * np.asarray(source["means"])


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """RGB 0..255 (float64, clipped) of CIE L*a*b* (..., 3): :func:`rgb_to_lab` inverted (and
    the inverse the TF transform computes)."""
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > 0.2068966, f * f * f, (f - 16.0 / 116.0) / 7.787) * _WHITE_D65
    linear = np.maximum(xyz @ np.linalg.inv(_XYZ_FROM_RGB).T, 0.0)
    rgb = np.where(linear > 0.0031308,
                   1.055 * np.maximum(linear, 0.0031308) ** (1.0 / 2.4) - 0.055, linear * 12.92)
    return np.clip(rgb * 255.0, 0.0, 255.0)


def normalise_float(fit: StainFit, rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (..., 3), 0..255, normalised by ``fit``: float64 0..255, the values
    :func:`tf_normalise` gives the model (in float64 here, float32 there)."""
    rgb = np.asarray(rgb, np.float64)[..., :3]
    if fit.method == "reinhard":
        gain, shift = _lab_affine(fit.source, fit.target)
        return lab_to_rgb(rgb_to_lab(rgb) * gain + shift)
    out = IO * np.exp(-(optical_density(rgb) @ _od_map(fit.source, fit.target))) - 1.0
    return np.clip(out, 0.0, 255.0)


def normalise_numpy(fit: StainFit, rgb_uint8: np.ndarray) -> np.ndarray:
    """``rgb_uint8`` (..., 3) normalised by ``fit`` as uint8 (rounded): what the model is fed,
    for display (pure NumPy: the napari process never imports TensorFlow)."""
    return np.round(normalise_float(fit, rgb_uint8)).astype(np.uint8)


def tf_normalise(fit: StainFit) -> Any:
    """A TF function: patches (n, h, w, 3), uint8 or float 0..255 -> float32 0..255 normalised
    from ``fit.source`` to ``fit.target``. Imports TensorFlow."""
    if fit.method == "reinhard":
        return _tf_reinhard(fit.source, fit.target)
    return _tf_stains(fit.source, fit.target)


def _tf_stains(source: dict[str, Any], target: dict[str, Any]) -> Any:
    """Macenko's and Vahadane's transform: OD mapped by :func:`_od_map`, back to RGB."""
    import tensorflow as tf

    matrix = tf.constant(_od_map(source, target), tf.float32)

    def normalise(x: Any) -> Any:
        od = -tf.math.log((tf.cast(x, tf.float32) + 1.0) / IO)
        out = IO * tf.exp(-tf.tensordot(od, matrix, axes=1)) - 1.0
        return tf.clip_by_value(out, 0.0, 255.0)

    return normalise


def _pow(x: Any, p: float) -> Any:
    """``x ** p`` for positive ``x`` as exp(p log x): XLA's CPU ``pow`` (which handles every
    sign and special case) costs ~5x as much (1.3 vs 0.25 ms per 224 px patch, measured)."""
    import tensorflow as tf

    return tf.exp(tf.math.log(x) * p)


def _tf_reinhard(source: dict[str, Any], target: dict[str, Any]) -> Any:
    """RGB -> L*a*b*, standardised with the source, scaled to the target, -> RGB."""
    import tensorflow as tf

    gain, shift = _lab_affine(source, target)
    rgb_from_xyz = tf.constant(np.linalg.inv(_XYZ_FROM_RGB).T, tf.float32)
    xyz_from_rgb = tf.constant(_XYZ_FROM_RGB.T, tf.float32)
    white = tf.constant(_WHITE_D65, tf.float32)
    gain_t, shift_t = tf.constant(gain, tf.float32), tf.constant(shift, tf.float32)

    def normalise(x: Any) -> Any:
        x = tf.cast(x, tf.float32) / 255.0
        linear = tf.where(x > 0.04045, _pow((x + 0.055) / 1.055, 2.4), x / 12.92)
        xyz = tf.tensordot(linear, xyz_from_rgb, axes=1) / white
        f = tf.where(xyz > 0.008856, _pow(tf.maximum(xyz, 0.008856), 1.0 / 3.0),
                     7.787 * xyz + 16.0 / 116.0)
        lab = tf.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                        200.0 * (f[..., 1] - f[..., 2])], axis=-1) * gain_t + shift_t
        fy = (lab[..., 0] + 16.0) / 116.0
        f = tf.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
        xyz = tf.where(f > 0.2068966, f * f * f, (f - 16.0 / 116.0) / 7.787) * white
        linear = tf.maximum(tf.tensordot(xyz, rgb_from_xyz, axes=1), 0.0)
        rgb = tf.where(linear > 0.0031308,
                       1.055 * _pow(tf.maximum(linear, 0.0031308), 1.0 / 2.4) - 0.055,
                       linear * 12.92)
        return tf.clip_by_value(rgb * 255.0, 0.0, 255.0)

    return normalise
