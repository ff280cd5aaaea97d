"""Heatmap files read back: what ``patchheat run`` wrote (``.npz``, or the OME-TIFF export),
for the analyses of a finished run (``patchheat regions``, ``patchheat overlap``)."""

from __future__ import annotations

from pathlib import Path

from ..heatmap import Heatmap

HEATMAP_SUFFIXES = (".npz", ".ome.tif")  # the heatmap files ``run`` writes that read back


def read_heatmap_file(path: Path) -> Heatmap:
    """A heatmap file written by ``patchheat run``: ``.npz``, or the OME-TIFF export."""
    from ..export import read_ome_tiff

    if not path.is_file():
        raise ValueError(f"{path} does not exist: give a heatmap .npz or .ome.tif written by "
                         "run.")
    return Heatmap.load_npz(path) if path.suffix == ".npz" else read_ome_tiff(path)


def heatmap_file_stem(path: Path) -> str:
    """The name of a heatmap file without its suffix ('s.dab.npz' -> 's.dab')."""
    name = path.name
    for suffix in HEATMAP_SUFFIXES:
        name = name.removesuffix(suffix)
    return name
