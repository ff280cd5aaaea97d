"""The manifest of a batch: one row per slide (status, patches, time, error, output files).

Written as ``batch.csv`` and ``batch.json`` in the batch's output folder each time a slide
finishes, atomically (a temporary file in the same folder, then ``os.replace``), so a reader
never sees half a file and an interrupted batch leaves a manifest that says where it stopped.
The JSON also holds the batch's key (model, options, formats): a second run of the same batch
skips the slides it lists as done. Standard library only.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .files import atomic_write, loads_json

MANIFEST_CSV = "batch.csv"
MANIFEST_JSON = "batch.json"
MANIFEST_VERSION = 1
STATUSES = ("pending", "ok", "failed", "skipped")
DONE_STATUSES = ("ok", "skipped")


@dataclass
class SlideRow:
    """One slide of a batch. ``patches``: computed patches in its heatmap; ``computed``: those
    this run computed, in ``seconds`` on the worker; ``regions``: its region tasks (0 when it
    ran as one task); ``outputs``: format -> file; ``error``: one sentence when it failed."""

    slide: str
    status: str = "pending"
    patches: int = 0
    computed: int = 0
    seconds: float = 0.0
    regions: int = 0
    error: str = ""
    outputs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status={self.status!r} is not one of {', '.join(STATUSES)}.")

    @property
    def patches_per_s(self) -> float:
        """Patches this run computed per second of the slide's task."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    @property
    def done(self) -> bool:
        """True when the slide's outputs are all there (ok or skipped, every file present, an
        OME-Zarr's folder)."""
        return self.status in DONE_STATUSES and bool(self.outputs) and all(
            Path(p).is_file() or Path(p).suffix == ".zarr" and Path(p).is_dir()
            for p in self.outputs.values())


CSV_COLUMNS = ("slide", "status", "patches", "computed", "seconds", "patches_per_s", "regions",
               "error", "outputs")


@dataclass
class Manifest:
    """The rows of a batch, in the order of its slides, and the key of what it computes."""

    key: str
    rows: list[SlideRow]
    model: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        """Number of rows of ``status``."""
        return sum(r.status == status for r in self.rows)

    @property
    def summary(self) -> str:
        """'8 slides: 6 ok, 1 failed, 1 skipped' (pending ones when there are any)."""
        parts = [f"{self.count(s)} {s}" for s in ("ok", "failed", "skipped", "pending")
                 if s in ("ok", "failed") or self.count(s)]
        return f"{len(self.rows)} slides: {', '.join(parts)}"

    def to_json(self) -> dict[str, Any]:
        """The JSON document: version, key, model, options and the rows."""
        return {"version": MANIFEST_VERSION, "key": self.key, "model": self.model,
                "options": self.options,
                "slides": [{**asdict(r), "patches_per_s": r.patches_per_s} for r in self.rows]}

    def to_csv(self) -> str:
        """The CSV text: one row per slide, outputs as 'format=path' joined by ';'."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in self.rows:
            w.writerow([r.slide, r.status, r.patches, r.computed, f"{r.seconds:.3f}",
                        f"{r.patches_per_s:.1f}", r.regions, r.error,
                        ";".join(f"{k}={v}" for k, v in r.outputs.items())])
        return buf.getvalue()

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``batch.json`` and ``batch.csv`` into ``folder`` atomically; returns the CSV."""
        folder = Path(folder)
        for name, text in ((MANIFEST_JSON, json.dumps(self.to_json(), indent=1, default=str)),
                           (MANIFEST_CSV, self.to_csv())):
            with atomic_write(folder / name) as tmp:
                tmp.write_text(text)
        return folder / MANIFEST_CSV

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> Manifest | None:
        """The manifest in ``folder``, or None where there is none (or it is unreadable)."""
        try:
            doc = loads_json((Path(folder) / MANIFEST_JSON).read_text())
            names = {f.name for f in fields(SlideRow)}
            rows = [SlideRow(**{k: v for k, v in r.items() if k in names})
                    for r in doc["slides"]]
            return cls(doc["key"], rows, doc.get("model", ""), doc.get("options", {}))
        except (OSError, ValueError, KeyError, TypeError):  # JSONError, UnicodeDecodeError too
            return None

    def done_rows(self, key: str) -> dict[str, SlideRow]:
        """Slide -> row of the slides this manifest has done for a batch of ``key``."""
        if key != self.key:
            return {}
        return {r.slide: r for r in self.rows if r.done}


def read_slide_list(path: str | os.PathLike[str]) -> list[Path | str]:
    """Slides listed in ``path``: a text file (one path a line; blank lines and '#' comments
    skipped) or a CSV file (the column headed ``slide``, else the first column of every row).
    Relative paths are taken from the list's folder; URLs ('s3://...') are kept as they are.
    A list that cannot be read or is not text is an OSError or ValueError of one sentence
    naming it."""
    path = Path(path)
    hint = "give a .txt file of slide paths (one a line) or a .csv with a 'slide' column"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = "\0"
    except OSError as exc:
        raise OSError(f"cannot read the slide list {path} ({exc.strerror or exc}): "
                      f"{hint}.") from None
    if "\0" in text:
        raise ValueError(f"the slide list {path} is not a text file: {hint}.")
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(io.StringIO(text)))
        header = [h.strip().lower() for h in rows[0]] if rows else []
        col, body = (header.index("slide"), rows[1:]) if "slide" in header else (0, rows)
        names: Iterable[str] = [r[col] for r in body if len(r) > col]
    else:
        names = (line.split("#", 1)[0] for line in text.splitlines())
    return [n.strip() if "://" in n else path.parent / n.strip() for n in names if n.strip()]
