"""Heatmap files read back: what ``patchheat run`` wrote (``.npz``, or the OME-TIFF or OME-Zarr
export), for the analyses of a finished run (``patchheat regions``, ``patchheat overlap``) and
``patchheat open --heatmap``."""

from __future__ import annotations

from pathlib import Path

from ..heatmap import Heatmap

# the heatmap files ``run`` writes that read back (an OME-Zarr is a folder)
HEATMAP_SUFFIXES = (".npz", ".ome.tif", ".ome.zarr")


def read_heatmap_file(path: Path) -> Heatmap:
    """A heatmap file written by ``patchheat run``: ``.npz``, or the OME-TIFF or OME-Zarr
    export."""
    from ..export import read_ome_tiff, read_ome_zarr

    if path.is_dir() and path.suffix.lower() == ".zarr":
        return read_ome_zarr(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist: give a heatmap .npz, .ome.tif or .ome.zarr "
                         "written by run.")
    return Heatmap.load_npz(path) if path.suffix == ".npz" else read_ome_tiff(path)


def heatmap_file_stem(path: Path) -> str:
    """The name of a heatmap file without its suffix ('s.dab.npz' -> 's.dab')."""
    name = path.name
    for suffix in HEATMAP_SUFFIXES:
        name = name.removesuffix(suffix)
    return name
