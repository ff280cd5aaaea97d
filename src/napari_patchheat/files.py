"""Our files, safely: one atomic write, one file-name sanitiser, folder checks, JSON read.

Every file the package writes (``Heatmap.save_npz``, the exports, the analysis files, the
manifest, the built levels) goes through :func:`atomic_write`: a temporary file of a unique
name in the target folder, renamed into place only when complete, removed on every error; a
folder that cannot be written is one :class:`WriteError` with a sentence for the user. Every
name made from free text (a slide's or a model card's name) goes through :func:`safe_name`.
Standard library only.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_NAME = "heatmap"  # what safe_name gives for text with nothing usable in it
_UNSAFE = re.compile(r"[^\w.+-]+")


def safe_name(text: str, default: str = DEFAULT_NAME) -> str:
    """A file name from free text: runs of characters other than letters, digits, ``_ . + -``
    become ``_``, no leading or trailing ``.`` or ``_`` (so never a folder, ``..`` or a hidden
    file); ``default`` when nothing is left."""
    return _UNSAFE.sub("_", str(text)).strip("._") or default


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file
_FOLDER_MODE = 0o777 & ~_umask()  # what mkdir() would give a new folder


_FOLDER_HINTS = {
    errno.ENOSPC: "The disk is full: free some space or choose another folder.",
    errno.EDQUOT: "The disk quota is exceeded: free some space or choose another folder.",
    errno.ENOENT: "The folder does not exist: create it or choose another one.",
    errno.ENOTDIR: "Part of the path is a file, not a folder: choose another folder.",
    errno.EEXIST: "It is a file, not a folder: choose another folder.",
    errno.ENAMETOOLONG: "A name in the path is too long: choose a shorter one.",
}
_FOLDER_WHY = {errno.EEXIST: "it is a file, not a folder",  # clearer than the system's words
               errno.ENOTDIR: "part of its path is a file, not a folder"}


class WriteError(OSError):
    """A folder or file could not be written (no permission, no space, not a folder).

    ``errno`` and ``strerror`` are the cause's, ``filename`` the folder; ``str()`` is the
    sentence for the user (what failed, why, what to do).
    """

    def __init__(self, folder: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror, str(folder))
        reason = (cause.strerror or str(cause)).rstrip(".")
        hint = _FOLDER_HINTS.get(cause.errno or 0, "Choose a folder you can write to.")
        self.sentence = f"Cannot write to the folder '{folder}': {reason}. {hint}"

    def __str__(self) -> str:
        return self.sentence

    @property
    def why(self) -> str:
        """The cause in a few words, for a sentence of the caller's ("it is a file, not a
        folder", "No space left on device")."""
        return _FOLDER_WHY.get(self.errno or 0, self.strerror or "cannot be written")

    def __reduce__(self) -> tuple[Any, ...]:  # pickled as it is (multiprocessing, dask)
        return _rebuilt_write_error, (self.errno, self.strerror, self.filename, self.sentence)


def _rebuilt_write_error(errno_: int | None, strerror: str | None, filename: str,
                         sentence: str) -> WriteError:
    error = WriteError(Path(filename), OSError(errno_, strerror))
    error.sentence = sentence
    return error


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and parents) if needed; if impossible, a :class:`WriteError`."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(folder, exc) from exc
    if not folder.is_dir():
        raise WriteError(folder, NotADirectoryError(errno.ENOTDIR, "Not a directory"))
    return folder


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new temporary path (unique, in ``path``'s folder) to write; when the block
    succeeds it replaces ``path`` (with a normal file's permissions), else it is removed. A
    system error of the folder or the file (an OSError with an errno) becomes a
    :class:`WriteError`; other errors pass as they are."""
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise WriteError(path.parent, exc) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        _raise_as_write_error(path, exc)
        raise


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """:func:`atomic_write` for a folder (an OME-Zarr): yield a new temporary folder beside
    ``path`` to fill; when the block succeeds it takes ``path``'s place (what was there is
    moved aside first and removed after), else it is removed and ``path`` is left as it was."""
    path = Path(path)
    try:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part"))
    except OSError as exc:
        raise WriteError(path.parent, exc) from exc
    aside = tmp.with_suffix(".old")  # unique as tmp is
    try:
        yield tmp
        os.chmod(tmp, _FOLDER_MODE)
        if os.path.lexists(path):
            os.replace(path, aside)
        try:
            os.replace(tmp, path)
        except BaseException:
            if os.path.lexists(aside):
                os.replace(aside, path)
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_as_write_error(path, exc)
        raise
    if os.path.isdir(aside) and not os.path.islink(aside):
        shutil.rmtree(aside, ignore_errors=True)
    elif os.path.lexists(aside):
        aside.unlink(missing_ok=True)


def _raise_as_write_error(path: Path, exc: BaseException) -> None:
    """Raise ``exc`` as a :class:`WriteError` of ``path``'s folder where it is the system's
    (an errno: no space, no permission, ...); our own OSErrors (a SlideError of a tile read
    inside the block) and other errors are left to the caller to raise as they are."""
    if isinstance(exc, OSError) and exc.errno is not None and not isinstance(exc, WriteError):
        raise WriteError(path.parent, exc) from exc


class JSONError(ValueError):
    """Text that is not JSON this package can read; ``str()`` says why (and where)."""


def loads_json(text: str) -> Any:
    """``json.loads(text)``, every failure a :class:`JSONError`: bad syntax (with its line), or
    nesting deeper than Python can follow (a damaged or hostile file), never a RecursionError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JSONError(f"{exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise JSONError("nested too deeply to read") from None


def prepare_output_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and parents) and write and remove a probe file in it, so that a job
    fails before it computes anything where its files could not be written: a name too long,
    a read-only or full file system, a folder another user owns, a path through a file. A
    :class:`WriteError` says why; the folder stays (empty) when it could be made."""
    folder = ensure_folder(folder)
    try:  # a unique name: jobs writing into one folder at once (a batch) probe side by side
        fd, name = tempfile.mkstemp(dir=folder, prefix=".patchheat-probe.")
        with os.fdopen(fd, "wb") as probe:
            probe.write(b"probe")
        os.unlink(name)
    except OSError as exc:
        raise WriteError(folder, exc) from exc
    return folder
