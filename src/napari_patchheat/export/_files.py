"""Writing export files safely: folder errors as one :class:`ExportError`, atomic writes.

Every file is written to a temporary file in its folder, then renamed into place: a failure
leaves no half file, and a folder that cannot be written is one :class:`ExportError`.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import files
from ..heatmap import Heatmap

BIGTIFF_FROM_BYTES = 2**31  # uncompressed size from which TIFFs are written as BigTIFF


class ExportError(OSError):
    """A folder or file could not be written (no permission, no space, not a folder).

    ``errno`` is the cause's, ``filename`` the folder; ``str()`` is the sentence for the user.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


def ensure_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and parents) if needed; if impossible, an :class:`ExportError`."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _folder_error(folder, exc) from exc
    if not folder.is_dir():
        raise _folder_error(folder, NotADirectoryError(errno.ENOTDIR, "Not a directory"))
    return folder


def _folder_error(folder: Path, exc: OSError) -> ExportError:
    hints = {
        errno.ENOSPC: "The disk is full: free some space or choose another folder.",
        errno.EDQUOT: "The disk quota is exceeded: free some space or choose another folder.",
        errno.ENOENT: "The folder does not exist: create it or choose another one.",
        errno.ENOTDIR: "Part of the path is a file, not a folder: choose another folder.",
    }
    reason = exc.strerror or str(exc)
    hint = hints.get(exc.errno or 0, "Choose a folder you can write to.")
    err = ExportError(f"Cannot write the heatmap export to the folder '{folder}': {reason}. {hint}")
    err.errno, err.filename = exc.errno, str(folder)
    return err


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """:func:`napari_patchheat.files.atomic_write`, its folder's errors as an ExportError."""
    path = Path(path)
    try:
        with files.atomic_write(path) as tmp:
            yield tmp
    except OSError as exc:
        if isinstance(exc, ExportError):
            raise
        raise _folder_error(path.parent, exc) from exc


def _write_text(path: Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _metadata_json(heatmap: Heatmap, indent: int | None = None) -> str:
    return json.dumps(heatmap.metadata(), indent=indent, default=str)
