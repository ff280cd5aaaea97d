"""The resume cache: where it lives, how a run's results are keyed, the store that keeps them.

A run's results are a SQLite file ``<key>.sqlite`` in ``runs/`` of :func:`cache_root`; the key
names the slide, the level, the grid and the model. The file holds a header (format version,
run key, grid, value shape and dtype) and one record per batch of finished patches: their grid
indices, their values and a CRC-32 of both, committed in one transaction. A patch is done only
where a record says so: nothing is inferred from the values. A file that does not verify is
set aside (renamed ``*.bad-<time>``, one warning naming it) and the run starts afresh; a cache
that cannot be read or written (read-only, full disk, not a folder) costs a warning
(:class:`CacheWarning`, "results will not be cached: <reason>"), never the run. Numpy and the
standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .grid import PatchGrid

CACHE_ENV = "PATCHHEAT_CACHE_DIR"
CACHE_FOLDER = "napari-patchheat"  # in $XDG_CACHE_HOME (default ~/.cache)
RUNS_FOLDER = "runs"
COARSE_FOLDER = "coarse"  # the zoomed-out levels of huge images, built once (slide/coarse.py)
RUN_KEY_CHARS = 20
CACHE_SUFFIX = ".sqlite"
CACHE_FORMAT_VERSION = 1
CACHE_FLUSH_S = 0.5  # finished batches are committed at least this often (and at the end)
CACHE_FLUSH_BYTES = 64 * 1024  # ... and once this much is pending (a full disk keeps the rest)
CACHE_BUSY_S = 10.0  # how long a write waits for another run holding the file
SET_ASIDE_MARK = ".bad-"  # a file that did not verify becomes <name>.bad-<unix time>
_INDEX_DTYPE = np.dtype("<i4")
_VALUE_DTYPE = np.dtype("<f4")


class CacheWarning(UserWarning):
    """The cache could not be used as asked; the run goes on (the message says what happened)."""


class CacheInvalid(Exception):
    """A cache file that does not verify (header, shape, dtype, grid, or a record's checksum)."""


def cache_root() -> Path:
    """``$PATCHHEAT_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-patchheat`` (``~/.cache``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / CACHE_FOLDER


def runs_dir() -> Path:
    """Where run results are cached by default: ``runs/`` in :func:`cache_root`."""
    return cache_root() / RUNS_FOLDER


def coarse_dir() -> Path:
    """Where the zoomed-out levels of huge images are built: ``coarse/`` in :func:`cache_root`."""
    return cache_root() / COARSE_FOLDER


def run_key(slide_identity: str, level: int, grid: PatchGrid, model_fingerprint: str,
            color: str = "") -> str:
    """Cache key of a run: slide identity, level, grid parameters, model fingerprint and the
    conversion of the model's input colours ("" for the pixels as stored: keys made before it
    existed hold). Never the region of interest: a run inside one reads and adds to the
    whole slide's entry (the region only chooses which patches to compute)."""
    parts: list[Any] = [slide_identity, level, *grid.params().values(), model_fingerprint]
    if color:
        parts.append({"color": color})
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:RUN_KEY_CHARS]


def run_cache_path(key: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache file of run ``key`` in ``cache_dir`` (default :func:`runs_dir`)."""
    folder = Path(cache_dir) if cache_dir is not None else runs_dir()
    return folder / f"{key}{CACHE_SUFFIX}"


def _warn(message: str) -> None:
    warnings.warn(message, CacheWarning, stacklevel=3)


def _reason(exc: BaseException) -> str:
    """An OSError's or SQLite's error as a short phrase ('No space left on device')."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
        return f"{exc.filename} is a file, not a folder"
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    return str(exc) or type(exc).__name__


class RunCache:
    """The cached results of one run: :meth:`open` it, read :attr:`values`, :meth:`add` batches.

    ``values`` (rows, cols, classes) float32 holds the cached patches, NaN elsewhere. Trouble
    with the file never raises: it warns once and the run goes on uncached (:attr:`writable`
    False), keeping what was committed before.
    """

    def __init__(self, path: Path, values: np.ndarray, db: sqlite3.Connection | None):
        self.path, self.values, self._db = path, values, db
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()

    @property
    def writable(self) -> bool:
        """True while new results go into the file."""
        return self._db is not None

    @classmethod
    def open(cls, path: Path, key: str, grid: PatchGrid, n_classes: int, *,
             _retry: bool = True) -> RunCache:
        """The cache of run ``key`` at ``path``, created if missing; a file that does not verify
        is set aside and replaced; one that cannot be opened is read if it can be (warning)."""
        shape = (*grid.shape, n_classes)
        header = {"format_version": CACHE_FORMAT_VERSION, "key": key, "shape": list(shape),
                  "dtype": _VALUE_DTYPE.str, "grid": grid.params()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db, values = _open_and_load(path, header)
            return cls(path, values, db)
        except sqlite3.OperationalError as exc:  # locked or not writable: read what is there
            failure: BaseException = exc
        except (CacheInvalid, sqlite3.DatabaseError) as exc:  # damaged: set aside, start afresh
            if _retry and set_aside(path, exc) is not None:
                return cls.open(path, key, grid, n_classes, _retry=False)
            if not _retry:  # a fresh file that does not verify: something else writes it
                _warn(f"results will not be cached: the new cache {path} does not verify "
                      f"({exc}).")
            return cls(path, _not_computed(header), None)
        except (OSError, sqlite3.Error) as exc:  # not writable: read-only folder, a file, full
            failure = exc
        return cls(path, _read_only(path, header, failure), None)

    def add(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Record finished patches ``indices`` (n, 2) with ``values`` (n, classes); committed
        within CACHE_FLUSH_S or CACHE_FLUSH_BYTES (or at :meth:`flush`)."""
        if self._db is None:
            return
        record = (np.asarray(indices, _INDEX_DTYPE).reshape(-1, 2),
                  np.asarray(values, _VALUE_DTYPE))
        self._pending.append(record)
        self._pending_bytes += record[0].nbytes + record[1].nbytes
        if (self._pending_bytes >= CACHE_FLUSH_BYTES
                or time.monotonic() - self._last_flush >= CACHE_FLUSH_S):
            self.flush()

    def flush(self) -> None:
        """Commit the pending records in one transaction (a failure warns and stops caching)."""
        self._last_flush = time.monotonic()
        if self._db is None or not self._pending:
            return
        rows = [_record(i, v) for i, v in self._pending]
        self._pending.clear()
        self._pending_bytes = 0
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO batches (n, indices, vals, crc) "
                                 "VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._stop(exc)

    def close(self) -> None:
        """Commit what is pending and close the file."""
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _stop(self, exc: BaseException) -> None:
        _warn(f"results will not be cached: cannot write the cache {self.path} ({_reason(exc)}); "
              "what was cached before is kept.")
        assert self._db is not None
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        self._db = None


def open_run_cache(key: str, grid: PatchGrid, n_classes: int,
                   cache_dir: str | os.PathLike[str] | None = None) -> RunCache:
    """:meth:`RunCache.open` of run ``key`` in ``cache_dir`` (default :func:`runs_dir`)."""
    return RunCache.open(run_cache_path(key, cache_dir), key, grid, n_classes)


def _open_and_load(path: Path, header: dict[str, Any]) -> tuple[sqlite3.Connection, np.ndarray]:
    """Open (or create, with ``header``) the SQLite file at ``path`` and read its values."""
    db = sqlite3.connect(path, timeout=CACHE_BUSY_S, isolation_level=None,
                         check_same_thread=False)
    try:
        # no fsync per commit (it cost 0.23 ms a batch): a killed process loses nothing
        # committed; a power cut may lose the last commits or damage the file, which then does
        # not verify and is set aside (quick_check, CRCs): never a wrong value
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE IF NOT EXISTS header (name TEXT PRIMARY KEY, value TEXT)")
        db.execute("CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, n INTEGER, "
                   "indices BLOB, vals BLOB, crc INTEGER)")
        db.executemany("INSERT OR IGNORE INTO header VALUES (?, ?)",
                       [(k, json.dumps(v)) for k, v in header.items()])
        db.execute("COMMIT")
        return db, _load(db, header)
    except BaseException:
        db.close()
        raise


def _record(indices: np.ndarray, values: np.ndarray) -> tuple[int, bytes, bytes, int]:
    idx, vals = indices.tobytes(), values.tobytes()
    return len(indices), idx, vals, zlib.crc32(vals, zlib.crc32(idx))


def _not_computed(header: dict[str, Any]) -> np.ndarray:
    """All NaN values of the header's shape: nothing computed."""
    return np.full(header["shape"], np.nan, np.float32)


def _load(db: sqlite3.Connection, header: dict[str, Any]) -> np.ndarray:
    """The values of ``db``'s records (NaN elsewhere), after checking its structure, its header
    and every record (CacheInvalid where one does not verify)."""
    problems = [row[0] for row in db.execute("PRAGMA quick_check")]
    if problems != ["ok"]:  # rows of several lines each; "*** in database main ***" heads them
        lines = [line.strip() for p in problems for line in str(p).splitlines()
                 if line.strip() and not line.startswith("***")] or [str(problems[0])]
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise CacheInvalid(f"SQLite finds it damaged: {lines[0]}{more}")
    stored = {name: json.loads(value) for name, value in db.execute("SELECT name, value FROM "
                                                                   "header")}
    for name, want in header.items():
        if stored.get(name) != want:
            raise CacheInvalid(f"its {name} is {stored.get(name)!r}, not {want!r}")
    values = _not_computed(header)
    rows, cols, classes = values.shape
    for n, idx, vals, crc in db.execute("SELECT n, indices, vals, crc FROM batches"):
        if (len(idx) != n * 2 * _INDEX_DTYPE.itemsize
                or len(vals) != n * classes * _VALUE_DTYPE.itemsize
                or zlib.crc32(vals, zlib.crc32(idx)) != crc):
            raise CacheInvalid("a record's checksum does not match its contents")
        ij = np.frombuffer(idx, _INDEX_DTYPE).reshape(n, 2)
        v = np.frombuffer(vals, _VALUE_DTYPE).reshape(n, classes)
        if n and (ij.min() < 0 or ij[:, 0].max() >= rows or ij[:, 1].max() >= cols
                  or np.isnan(v).any()):
            raise CacheInvalid("a record lies outside the grid or holds no value")
        values[ij[:, 0], ij[:, 1]] = v
    return values


def _read_only(path: Path, header: dict[str, Any], exc: BaseException) -> np.ndarray:
    """The values of a cache that cannot be written (read without writing anything), NaN if it
    cannot be read either; warns once that results will not be cached."""
    _warn(f"results will not be cached: cannot write the cache {path} ({_reason(exc)}).")
    if not path.is_file():
        return _not_computed(header)
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return _load(db, header)
        finally:
            db.close()
    except (CacheInvalid, sqlite3.Error, OSError):
        return _not_computed(header)


def set_aside(path: Path, why: BaseException) -> Path | None:
    """Rename the cache file ``path`` (and its journal) to ``<name>.bad-<time>`` with a warning
    naming it; None (warning that results will not be cached) where it cannot be renamed."""
    stamp = int(time.time())
    aside = path.with_name(f"{path.name}{SET_ASIDE_MARK}{stamp}")
    for n in range(2, 100):
        if not aside.exists():
            break
        aside = path.with_name(f"{path.name}{SET_ASIDE_MARK}{stamp}-{n}")
    try:
        journal = path.with_name(path.name + "-journal")
        if journal.exists():
            os.replace(journal, aside.with_name(aside.name + "-journal"))
        os.replace(path, aside)
    except OSError as exc:
        _warn(f"results will not be cached: the cache {path} cannot be trusted ({why}) and "
              f"cannot be set aside ({_reason(exc)}): delete it.")
        return None
    _warn(f"the cache {path} cannot be trusted ({why}): set aside as {aside.name}; "
          "its patches are computed again.")
    return aside


@dataclass(frozen=True)
class CacheInfo:
    """What the cache folder holds: its runs, files set aside, their bytes."""

    folder: Path
    runs: int
    set_aside: int
    other: int
    total_bytes: int


def cache_info(folder: str | os.PathLike[str] | None = None) -> CacheInfo:
    """Count the run caches in ``folder`` (default :func:`runs_dir`) and their size."""
    folder = Path(folder) if folder is not None else runs_dir()
    runs = aside = other = size = 0
    if folder.is_dir():
        for p in folder.iterdir():
            if not p.is_file():
                continue
            size += p.stat().st_size
            if SET_ASIDE_MARK in p.name:
                aside += 1
            elif p.suffix == CACHE_SUFFIX:
                runs += 1
            else:
                other += 1  # journals, version 0.1's .npy caches
    return CacheInfo(folder, runs, aside, other, size)


def clear_cache(folder: str | os.PathLike[str] | None = None) -> int:
    """Delete the cache folder ``folder`` (default :func:`runs_dir`; it serves
    :func:`coarse_dir` as well); returns bytes freed."""
    folder = Path(folder) if folder is not None else runs_dir()
    freed = cache_info(folder).total_bytes
    if folder.is_dir():
        shutil.rmtree(folder)
    return freed
