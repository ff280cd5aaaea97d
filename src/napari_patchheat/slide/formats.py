"""What a slide file is, by its suffix and first bytes: shared by the local opener
(:mod:`.opening`) and the remote one (:mod:`.remote`), and the error for a file none reads.
Standard library only (and ``SlideError``)."""

from __future__ import annotations

from .errors import SlideError

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


def unreadable(where: object, head: bytes, backend: str, remote: bool = False) -> SlideError:
    """The error for a file no backend took: ``head`` its first bytes, ``where`` its path or
    URL, ``backend`` the one asked for ("auto": none was)."""
    what = "it is empty" if not head else f"it starts with bytes {head[:8].hex(' ')}"
    if backend != "auto":
        return SlideError(f"Cannot open {where} with backend {backend!r} ({what}); try "
                          "backend 'auto'.", where)
    if remote:
        return SlideError(f"Cannot open {where}: no backend reads it remotely ({what}); the "
                          f"plugin reads {READS} (OpenSlide formats and DICOM from local files "
                          "only).", where)
    return SlideError(f"Cannot open {where}: no backend reads it ({what}); the plugin reads "
                      f"{READS}.", where)
