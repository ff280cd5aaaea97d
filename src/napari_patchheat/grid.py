"""Patch-grid geometry of ``tf.image.extract_patches``, in pure numpy.

A :class:`PatchGrid` describes the patches TensorFlow extracts from one image (one pyramid
level) of ``height x width`` pixels: how many, where each starts, the zero padding SAME adds,
and where each lands in level-0 (world) coordinates. See DESIGN.md, "The coordinate contract".
Nothing here imports TensorFlow or Qt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

Pair = tuple[int, int]
FloatPair = tuple[float, float]
# whether level pixels [y0, y1) x [x0, x1) are needed: (y0, y1, x0, x1) -> bool
Needed = Callable[[int, int, int, int], bool]
PADDINGS = ("VALID", "SAME")
READ_BLOCK_PX = 2048  # height and width of the level region one block reads (before its halo)


def as_pair(name: str, value: int | Sequence[int]) -> Pair:
    """Normalise ``value`` (an int, a (y, x) pair or TF's [1, y, x, 1]) to a pair of ints >= 1."""
    if isinstance(value, (int, np.integer)):
        items = [value, value]
    elif isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        if len(items) == 4:
            if items[0] != 1 or items[3] != 1:
                raise ValueError(
                    f"{name}={list(value)} must be [1, rows, cols, 1] (TensorFlow's form): "
                    "the batch and depth entries must be 1."
                )
            items = items[1:3]
    else:
        items = []
    if len(items) != 2:
        raise ValueError(f"{name}={value!r} must be an int, a (y, x) pair or [1, y, x, 1].")
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}={value!r} must hold whole numbers of at least 1.")
        out.append(int(v))
    return out[0], out[1]


def as_float_pair(name: str, value: float | Sequence[float]) -> FloatPair:
    """Normalise a downsample (a float or a (y, x) pair) to a pair of positive floats."""
    # numpy's isscalar is a TypeGuard, not a TypeIs: mypy does not narrow the else branch
    items: list[Any] = [value, value] if np.isscalar(value) else list(value)  # type: ignore[arg-type]
    if len(items) != 2 or not all(float(v) > 0 for v in items):
        raise ValueError(f"{name}={value!r} must be a positive number or a (y, x) pair of them.")
    return float(items[0]), float(items[1])


def _axis(n: int, k: int, s: int, r: int, padding: str) -> tuple[int, int, int, int]:
    """Count, effective size, padding before and after on one axis, as TensorFlow computes them."""
    e = (k - 1) * r + 1
    if padding == "VALID":
        count = (n - e) // s + 1 if n >= e else 0
        return count, e, 0, 0
    count = -(-n // s)
    total = max((count - 1) * s + e - n, 0)
    return count, e, total // 2, total - total // 2


@dataclass(frozen=True)
class PatchGrid:
    """The patches ``tf.image.extract_patches`` takes from a ``height x width`` image.

    ``size``, ``stride`` and ``rate`` are ints or (y, x) pairs (TF's ``[1, y, x, 1]`` works too);
    ``padding`` is "VALID" or "SAME". All coordinates are level pixels unless a method takes a
    ``downsample``, which maps them to level-0 pixels.
    """

    height: int
    width: int
    size: Pair
    stride: Pair
    rate: Pair = (1, 1)
    padding: str = "VALID"
    _axes: tuple[tuple[int, int, int, int], ...] = field(init=False, repr=False, compare=False)

    if TYPE_CHECKING:  # what __init__ takes; __post_init__ turns size, stride and rate into pairs

        def __init__(
            self,
            height: int,
            width: int,
            size: int | Sequence[int],
            stride: int | Sequence[int],
            rate: int | Sequence[int] = (1, 1),
            padding: str = "VALID",
        ) -> None: ...

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name}={v!r}: the image must be at least 1 x 1 pixel.")
            object.__setattr__(self, name, int(v))
        for name in ("size", "stride", "rate"):
            object.__setattr__(self, name, as_pair(name, getattr(self, name)))
        padding = str(self.padding).upper()
        if padding not in PADDINGS:
            raise ValueError(f"padding={self.padding!r} is unknown: use 'VALID' or 'SAME'.")
        object.__setattr__(self, "padding", padding)
        axes = tuple(
            _axis(n, self.size[a], self.stride[a], self.rate[a], padding)
            for a, n in enumerate((self.height, self.width))
        )
        object.__setattr__(self, "_axes", axes)
        if axes[0][0] == 0 or axes[1][0] == 0:
            e = self.effective_size
            raise ValueError(
                f"No patch fits: the effective patch size {e[0]} x {e[1]} px (size {self.size}, "
                f"rate {self.rate}) exceeds the {self.height} x {self.width} px image with VALID "
                "padding; use SAME padding, a smaller size or rate, or a larger level."
            )

    # --- its parameters, as data -----------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The grid's parameters (its fields: height, width, size, stride, rate, padding) as
        JSON-ready values, pairs as [y, x] lists: what files and cache keys record of it."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self) if f.init}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PatchGrid:
        """The grid :meth:`params` describes (other keys of ``params`` are ignored)."""
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.init})

    # --- counts and sizes -------------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Number of patch rows (TF's output height)."""
        return self._axes[0][0]

    @property
    def cols(self) -> int:
        """Number of patch columns (TF's output width)."""
        return self._axes[1][0]

    @property
    def shape(self) -> Pair:
        """(rows, cols)."""
        return self.rows, self.cols

    @property
    def n_patches(self) -> int:
        """rows * cols."""
        return self.rows * self.cols

    @property
    def effective_size(self) -> Pair:
        """(size - 1) * rate + 1 per axis: the level pixels one patch spans."""
        return self._axes[0][1], self._axes[1][1]

    @property
    def pad_before(self) -> Pair:
        """Zero rows / columns SAME adds above / left of the image (the smaller half)."""
        return self._axes[0][2], self._axes[1][2]

    @property
    def pad_after(self) -> Pair:
        """Zero rows / columns SAME adds below / right of the image (the larger half)."""
        return self._axes[0][3], self._axes[1][3]

    @property
    def depth_per_channel(self) -> int:
        """Samples per patch and channel: TF's output depth is this times the channels."""
        return self.size[0] * self.size[1]

    # --- positions ----------------------------------------------------------------------------
    def row_starts(self) -> np.ndarray:
        """First level-pixel row of every patch row: ``i * stride - pad_before`` (int64)."""
        return np.arange(self.rows, dtype=np.int64) * self.stride[0] - self.pad_before[0]

    def col_starts(self) -> np.ndarray:
        """First level-pixel column of every patch column (int64)."""
        return np.arange(self.cols, dtype=np.int64) * self.stride[1] - self.pad_before[1]

    def boxes(
        self,
        rows: np.ndarray | Sequence[int] | int,
        cols: np.ndarray | Sequence[int] | int,
        downsample: float | Sequence[float] = 1.0,
    ) -> np.ndarray:
        """Boxes ``(y0, x0, y1, x1)`` (end-exclusive) of patches (rows[n], cols[n]).

        Level pixels with the default ``downsample`` of 1; level-0 pixels with the level's
        downsample. The box is the patch's effective (dilated) extent, SAME padding included.
        """
        r = np.asarray(rows, dtype=np.int64)
        c = np.asarray(cols, dtype=np.int64)
        r, c = np.broadcast_arrays(r, c)
        dy, dx = as_float_pair("downsample", downsample)
        ey, ex = self.effective_size
        y0 = (r * self.stride[0] - self.pad_before[0]).astype(np.float64)
        x0 = (c * self.stride[1] - self.pad_before[1]).astype(np.float64)
        return np.stack([y0 * dy, x0 * dx, (y0 + ey) * dy, (x0 + ex) * dx], axis=-1)

    def inside_samples(
        self,
        rows: np.ndarray | Sequence[int] | int,
        cols: np.ndarray | Sequence[int] | int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which samples of patches (rows[n], cols[n]) are level pixels, not SAME's padding.

        Returns bool ``(..., size_y)`` and ``(..., size_x)``: sample (ky, kx) lies inside the
        level when both are True, i.e. when level-pixel row ``a_i + ky * rate_y`` is in
        [0, height) and column ``b_j + kx * rate_x`` in [0, width). VALID: all True.
        """
        r, c = np.broadcast_arrays(np.asarray(rows, np.int64), np.asarray(cols, np.int64))
        return self._inside_axis(r, 0), self._inside_axis(c, 1)

    def _inside_axis(self, index: np.ndarray, axis: int) -> np.ndarray:
        step = np.arange(self.size[axis], dtype=np.int64) * self.rate[axis]
        pixel = (index * self.stride[axis] - self.pad_before[axis])[..., None] + step
        return (pixel >= 0) & (pixel < (self.height, self.width)[axis])

    def box(
        self, row: int, col: int, downsample: float | Sequence[float] = 1.0
    ) -> tuple[float, ...]:
        """Box ``(y0, x0, y1, x1)`` of patch (row, col); see :meth:`boxes`."""
        self._check_index(row, col)
        return tuple(float(v) for v in self.boxes(row, col, downsample))

    def centers(
        self,
        rows: np.ndarray | Sequence[int] | int,
        cols: np.ndarray | Sequence[int] | int,
        downsample: float | Sequence[float] = 1.0,
    ) -> np.ndarray:
        """World (level-0 pixel-centre) coordinates ``(y, x)`` of patch centres.

        napari centres pixel p on p, so a patch covering level-0 pixels [a*d, (a+e)*d) has its
        centre at ``a*d + (e*d - 1) / 2``.
        """
        b = self.boxes(rows, cols, downsample)
        return np.stack([(b[..., 0] + b[..., 2] - 1) / 2, (b[..., 1] + b[..., 3] - 1) / 2], -1)

    def placement(self, downsample: float | Sequence[float] = 1.0) -> tuple[FloatPair, FloatPair]:
        """``(scale, translate)`` of a napari layer whose pixel (i, j) is patch (i, j).

        In level-0 pixels: ``scale = stride * d``, ``translate`` = centre of patch (0, 0).
        """
        dy, dx = as_float_pair("downsample", downsample)
        ey, ex = self.effective_size
        scale = (self.stride[0] * dy, self.stride[1] * dx)
        translate = (
            -self.pad_before[0] * dy + (ey * dy - 1) / 2,
            -self.pad_before[1] * dx + (ex * dx - 1) / 2,
        )
        return scale, translate

    def patches_in(
        self, y0: float, x0: float, y1: float, x1: float, downsample: float | Sequence[float] = 1.0
    ) -> tuple[range, range]:
        """Patch rows and columns whose extent meets the rectangle [y0, y1) x [x0, x1).

        The rectangle is in level pixels, or level-0 pixels with the level's ``downsample``.
        Computed in closed form: no loop over patches.
        """
        dy, dx = as_float_pair("downsample", downsample)
        return (
            self._hits(float(y0) / dy, float(y1) / dy, 0),
            self._hits(float(x0) / dx, float(x1) / dx, 1),
        )

    def _hits(self, lo: float, hi: float, axis: int) -> range:
        s, e, p = self.stride[axis], self.effective_size[axis], self.pad_before[axis]
        n = self.shape[axis]
        # patch i spans [i*s - p, i*s - p + e): it meets [lo, hi) iff i*s - p < hi and
        # i*s - p + e > lo. The closed forms can be off by one where float rounding meets an
        # edge: step to the exact answer.
        first = math.floor((lo + p - e) / s) + 1
        first += (first * s - p + e <= lo) - ((first - 1) * s - p + e > lo)
        last = math.ceil((hi + p) / s) - 1
        last += ((last + 1) * s - p < hi) - (last * s - p >= hi)
        first, last = max(first, 0), min(last, n - 1)
        return range(first, max(last + 1, first))

    def _check_index(self, row: int, col: int) -> None:
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise IndexError(
                f"Patch ({row}, {col}) is outside the {self.rows} x {self.cols} grid."
            )

    # --- reading ------------------------------------------------------------------------------
    def read_patch(self, image: Any, row: int, col: int) -> np.ndarray:
        """Patch (row, col) of ``image`` (Y X [C], numpy or dask) exactly as TF samples it.

        Returns ``(size_y, size_x, C)``: every ``rate``-th pixel of the effective extent, zeros
        where SAME padding reaches outside the image. ``.reshape(-1)`` is TF's output vector.
        """
        self._check_index(row, col)
        y0, x0, y1, x1 = (int(v) for v in self.boxes(row, col)[:4])
        return read_region(image, y0, x0, y1, x1, step=self.rate)

    def block_region(self, rows: range, cols: range) -> tuple[int, int, int, int]:
        """Level-pixel region ``(y0, x0, y1, x1)`` that holds every patch of the block.

        Extracting VALID with this grid's size, stride and rate from the region (zero-filled
        outside the image) gives exactly the block's patches.
        """
        ey, ex = self.effective_size
        y0 = rows.start * self.stride[0] - self.pad_before[0]
        x0 = cols.start * self.stride[1] - self.pad_before[1]
        y1 = (rows.stop - 1) * self.stride[0] - self.pad_before[0] + ey
        x1 = (cols.stop - 1) * self.stride[1] - self.pad_before[1] + ex
        return y0, x0, y1, x1

    def blocks(
        self, max_region_px: int, max_patches: int | None = None
    ) -> list[tuple[range, range]]:
        """Cut the grid into blocks of patch rows and columns.

        Each block's region (see :meth:`block_region`) is at most ``max_region_px`` level pixels
        high and wide, or one patch where a patch is larger; with ``max_patches``, a block also
        holds at most that many patches (fewer columns first). Row-major order.
        """
        per = [
            max(1, (max_region_px - self.effective_size[a]) // self.stride[a] + 1) for a in (0, 1)
        ]
        if max_patches is not None and per[0] * per[1] > max_patches:
            per[1] = max(1, max_patches // per[0])
            per[0] = max(1, min(per[0], max_patches // per[1]))
        return [
            (range(r, min(r + per[0], self.rows)), range(c, min(c + per[1], self.cols)))
            for r in range(0, self.rows, per[0])
            for c in range(0, self.cols, per[1])
        ]


def as_numpy(image: Any, scheduler: str | None = None) -> np.ndarray:
    """``np.asarray(image)``, where a dask array is computed without dask's global callbacks
    (on ``scheduler``, else dask's default).

    dask's default compute swaps its global ``Callback.active`` for the compute's duration, from
    whichever thread calls it; napari's slicing adds and removes its dask cache there from
    another thread. A background read racing it broke napari's cache (KeyError in
    ``dask/cache.py``). Passing ``callbacks=()`` leaves them alone and runs none of them.
    """
    if hasattr(image, "compute") and hasattr(image, "dask"):
        return np.asarray(image.compute(callbacks=(), scheduler=scheduler))
    return np.asarray(image)


def read_region(
    image: Any, y0: int, x0: int, y1: int, x1: int, step: tuple[int, int] = (1, 1),
    needed: Needed | None = None,
) -> np.ndarray:
    """Pixels [y0, y1) x [x0, x1) of ``image`` (level pixels), every ``step``-th on each axis
    counted from (y0, x0), zeros outside the image.

    ``image`` is Y X [C] (numpy, dask or anything sliceable); only the samples inside the image
    are read. The result is a numpy array of the image's dtype,
    (ceil((y1 - y0) / step_y), ceil((x1 - x0) / step_x)[, C]). ``needed``: an image that reads
    tiles (``read_tiles(key, needed=...)``) leaves the tiles it says False to unread, their
    pixels undefined.
    """
    if needed is not None and hasattr(image, "read_tiles"):
        image = _TilesNeeded(image, needed)
    h, w = image.shape[:2]
    (sy, iy0, iy1), (sx, ix0, ix1) = _samples(y0, y1, step[0], h), _samples(x0, x1, step[1], w)
    ny, nx = -(-(y1 - y0) // step[0]), -(-(x1 - x0) // step[1])
    if (iy0, ix0, iy1, ix1) == (0, 0, ny, nx):  # inside the image: no zero fill, no copy
        return as_numpy(image[y0:y1 : step[0], x0:x1 : step[1]])
    out = np.zeros((ny, nx) + tuple(image.shape[2:]), dtype=image.dtype)
    if iy0 < iy1 and ix0 < ix1:
        out[iy0:iy1, ix0:ix1] = as_numpy(
            image[sy : sy + (iy1 - iy0 - 1) * step[0] + 1 : step[0],
                  sx : sx + (ix1 - ix0 - 1) * step[1] + 1 : step[1]]
        )
    return out


class _TilesNeeded:
    """A tile reader sliced with ``needed`` (see :func:`read_region`)."""

    def __init__(self, image: Any, needed: Needed):
        self.image, self.needed, self.shape, self.dtype = image, needed, image.shape, image.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.image.read_tiles(key, needed=self.needed))


def _samples(a0: int, a1: int, step: int, n: int) -> tuple[int, int, int]:
    """Samples a0, a0 + step, ... below a1 that fall in [0, n): (first image index, first and
    end-exclusive sample number)."""
    count = -(-(a1 - a0) // step)
    first = max(0, -(-(0 - a0) // step))  # first k with a0 + k * step >= 0
    end = min(count, -(-(n - a0) // step))  # first k with a0 + k * step >= n
    end = max(end, first)
    return a0 + first * step, first, end
