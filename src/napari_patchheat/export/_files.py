"""What the export writers share: the BigTIFF threshold, text files and the metadata JSON.

Files are written through :func:`napari_patchheat.files.atomic_write` (a failure leaves no half
file; a folder that cannot be written is one ``ExportError``, files.WriteError).
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import files
from ..files import atomic_write
from ..heatmap import Heatmap

BIGTIFF_FROM_BYTES = 2**31  # uncompressed size from which TIFFs are written as BigTIFF


ExportError = files.WriteError  # the export's name for it (export.ExportError)


def _write_text(path: Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _metadata_json(heatmap: Heatmap, indent: int | None = None) -> str:
    return json.dumps(heatmap.metadata(), indent=indent, default=str)
