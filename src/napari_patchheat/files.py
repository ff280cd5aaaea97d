"""Writing our files safely: one atomic write, one file-name sanitiser, a folder check.

Every file the package writes (``Heatmap.save_npz``, the exports) goes through
:func:`atomic_write`: a temporary file of a unique name in the target folder, renamed into
place only when complete, removed on every error. Every name made from free text (a slide's
or a model card's name) goes through :func:`safe_name`. Standard library only.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new temporary path (unique, in ``path``'s folder) to write; when the block
    succeeds it replaces ``path`` (with a normal file's permissions), else it is removed."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def check_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Check that ``folder`` is, or can be made as, a folder this process can write in (an
    OSError saying why if not), so a run fails before it computes; creates nothing."""
    folder = Path(folder).expanduser().absolute()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{probe} is a file, not a folder", str(folder))
    if not os.access(probe, os.W_OK | os.X_OK):  # no permission, or a read-only file system
        raise PermissionError(errno.EACCES, f"{probe} cannot be written", str(folder))
    return folder
