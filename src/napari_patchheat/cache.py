"""The resume cache: where it lives, how a run's results are keyed, its memory-mapped files.

A run's values are a float32 ``.npy`` (rows, cols, classes), NaN where not computed, memory-
mapped and written as batches finish, so a cancelled or failed run resumes where it stopped.
The file is ``<key>.npy`` in ``runs/`` of :func:`cache_root`; the key names the slide, the
level, the grid and the model. Numpy only.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .grid import PatchGrid

CACHE_ENV = "PATCHHEAT_CACHE_DIR"
CACHE_FOLDER = "napari-patchheat"  # in $XDG_CACHE_HOME (default ~/.cache)
RUNS_FOLDER = "runs"
RUN_KEY_CHARS = 20


def cache_root() -> Path:
    """``$PATCHHEAT_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-patchheat`` (``~/.cache``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / CACHE_FOLDER


def runs_dir() -> Path:
    """Where run results are cached by default: ``runs/`` in :func:`cache_root`."""
    return cache_root() / RUNS_FOLDER


def run_key(slide_identity: str, level: int, grid: PatchGrid, model_fingerprint: str,
            roi: str = "") -> str:
    """Cache key of a run: slide identity, level, grid parameters, model fingerprint, and the
    region's patch selection (``roi.roi_key``; "" for the whole slide)."""
    g = grid
    parts = [slide_identity, level, g.height, g.width, g.size, g.stride, g.rate, g.padding,
             model_fingerprint]
    if roi:
        parts.append(roi)
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:RUN_KEY_CHARS]


def run_cache_path(key: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache file of run ``key`` in ``cache_dir`` (default :func:`runs_dir`)."""
    folder = Path(cache_dir) if cache_dir is not None else runs_dir()
    return folder / f"{key}.npy"


def open_values(path: Path, shape: tuple[int, ...]) -> Any:
    """The float32 values cached at ``path``, memory-mapped read-write.

    A cache of another shape or dtype, or an unreadable one, is replaced by a fresh one of
    ``shape`` filled with NaN (not computed).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            values = np.lib.format.open_memmap(path, mode="r+")
            if values.shape == shape and values.dtype == np.float32:
                return values
        except (ValueError, OSError):
            pass  # unreadable cache: start afresh below
    _publish_fresh(path, shape)
    return np.lib.format.open_memmap(path, mode="r+")


def _publish_fresh(path: Path, shape: tuple[int, ...]) -> None:
    """Write a NaN cache under a name of its own and publish it as ``path``, without replacing
    one that another run (another viewer, the CLI) published meanwhile: both then share that."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    values = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    values[:] = np.nan
    values.flush()
    del values
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
