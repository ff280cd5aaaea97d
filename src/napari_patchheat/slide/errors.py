"""``SlideError``, the one exception of slide reading (public as ``napari_patchheat.slide``'s),
and ``READS``, what the plugin reads, which error sentences name."""

from __future__ import annotations

from pathlib import Path

READS = ("SVS, NDPI, OME-TIFF, pyramidal TIFF, SCN, BIF, Philips TIFF (tifffile); MRXS, VMS, "
         "SVSLIDE and DICOM WSI (OpenSlide); OME-Zarr; PNG, JPEG")


class SlideError(OSError):
    """A slide that cannot be opened or read. The message names the file and the problem."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
