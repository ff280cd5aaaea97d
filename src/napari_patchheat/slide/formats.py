"""What a slide file is, by its suffix and first bytes: shared by the local opener
(:mod:`.opening`) and the remote one (:mod:`.remote`). Standard library only."""

from __future__ import annotations

# the file names a slide reader takes (napari's reader claims these)
OPENSLIDE_SUFFIXES = (".mrxs", ".vms", ".vmu", ".svslide")
DICOM_SUFFIXES = (".dcm",)  # DICOM WSI instances (wsidicom; OpenSlide with backend="openslide")
LOCAL_ONLY_SUFFIXES = OPENSLIDE_SUFFIXES + DICOM_SUFFIXES  # not read from URLs
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".png", ".jpg", ".jpeg",
                  *LOCAL_ONLY_SUFFIXES, ".zarr")
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
PNG_MAGIC, JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
DICOM_MAGIC_AT = 128  # "DICM" follows a 128-byte preamble
READS = ("SVS, NDPI, OME-TIFF, pyramidal TIFF, SCN, BIF, Philips TIFF (tifffile); MRXS, VMS, "
         "SVSLIDE (OpenSlide); DICOM WSI (wsidicom); OME-Zarr; PNG, JPEG")


def sniff(head: bytes) -> str | None:
    """"tiff", "png" or "jpeg" by a file's first bytes (at least 8), else None."""
    if head[:4] in TIFF_MAGIC:
        return "tiff"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    return None
