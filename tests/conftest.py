"""Shared fixtures: the real slides in ``../shared/data/real``, slides generated from real pixels.

Tests that need the shared data take the ``real_data`` fixture (or one built on it) and are
skipped, with the reason, where that folder is absent. Generated slides use the CMU SVS's pixels
when it is there, else a mosaic of scikit-image's IHC image (real tissue either way).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("PATCHHEAT_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
SVS_NAME, NDPI_NAME, IHC_NAME = "CMU-1-Small-Region.svs", "test3-DAPI-2-387.ndpi", "ihc.png"
DICOM_NAME = "CMU-1-Small-Region-dicom"  # the SVS converted to DICOM WSI (a folder of .dcm)


# --- real data ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The shared real slides folder; the test is skipped where it is absent."""
    if not (REAL_DATA / SVS_NAME).is_file():
        pytest.skip(f"real test data absent: {REAL_DATA} "
                    "(see its SOURCES.md; set PATCHHEAT_REAL_DATA)")
    return REAL_DATA


@pytest.fixture(scope="session")
def svs_path(real_data: Path) -> Path:
    return real_data / SVS_NAME


@pytest.fixture(scope="session")
def ndpi_path(real_data: Path) -> Path:
    return real_data / NDPI_NAME


@pytest.fixture(scope="session")
def dicom_path(real_data: Path) -> Path:
    """The DICOM WSI folder of the CMU SVS; the test is skipped where it is absent."""
    path = real_data / DICOM_NAME
    if not path.is_dir():
        pytest.skip(f"real test data absent: {path} (see {real_data / 'SOURCES.md'})")
    return path


@pytest.fixture(scope="session")
def ihc_png_path(real_data: Path) -> Path:
    return real_data / IHC_NAME


@pytest.fixture(scope="session")
def real_pixels() -> np.ndarray:
    """Real H&E / IHC pixels, (2967, 2220, 3) uint8: the CMU SVS, else tiled IHC image."""
    import tifffile

    if (REAL_DATA / SVS_NAME).is_file():
        return tifffile.imread(REAL_DATA / SVS_NAME)
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()
    quad = np.concatenate([np.concatenate([ihc, ihc[:, ::-1]], 1)] * 2, 0)
    return np.tile(quad, (3, 3, 1))[:2967, :2220]


# --- generated slides -----------------------------------------------------------------------


def downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``factor`` x ``factor`` pixels (rows/columns that do not fill one dropped)."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[: h * factor, : w * factor].reshape(h, factor, w, factor, *image.shape[2:])
    return blocks.mean(axis=(1, 3)).round().astype(image.dtype)


def write_slide(
    path: Path,
    image: np.ndarray,
    *,
    layout: str = "subifds",
    levels: int = 3,
    factor: int = 2,
    tile: tuple[int, int] | None = (256, 256),
    compression: str | None = "jpeg",
    mpp: float | None = None,
    **options: Any,
) -> list[np.ndarray]:
    """Write ``image`` as a pyramid (each level ``factor`` x smaller) and return the levels.

    ``layout``: "subifds" (OME-TIFF, reduced levels in SubIFDs), "pages" (plain TIFF, reduced
    levels as following pages), "svs" (Aperio layout: baseline, thumbnail, levels, label,
    macro) or "single" (one level; ``tile=None`` writes strips).
    """
    import tifffile

    pyramid = [image]
    for _ in range(1, 1 if layout == "single" else levels):
        pyramid.append(downscale(pyramid[-1], factor))
    channels = image.shape[2] if image.ndim == 3 else 1
    photometric = "rgb" if channels >= 3 else "minisblack"
    common: dict[str, Any] = dict(
        photometric=photometric, compression=compression, metadata=None, **options
    )
    if channels in (2, 4):
        common["extrasamples"] = ["unassalpha"]
    if layout != "svs" and mpp is not None:
        common.update(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
    ome = layout == "subifds"
    with tifffile.TiffWriter(path, bigtiff=ome, ome=ome) as tif:
        if layout == "svs":
            h, w = image.shape[:2]
            head = f"Aperio Image Library v12.0.0 \r\n{w}x{h} ({tile[1]}x{tile[0]}) JPEG/RGB Q=70"
            tail = f"|AppMag = 40|MPP = {mpp}" if mpp else "|AppMag = 40"
            tif.write(image, tile=tile, description=head + tail, **common)
            tif.write(downscale(image, 8), description=head + " thumbnail",
                      **{**common, "tile": None})
            for level in pyramid[1:]:
                tif.write(level, tile=tile, description=head, **common)
            extra = {**common, "compression": "lzw"}
            tif.write(image[:300, :400], subfiletype=1, description=head + " label", **extra)
            tif.write(image[:400, :1000], subfiletype=9, description=head + " macro", **extra)
            return pyramid
        for k, level in enumerate(pyramid):
            kwargs = dict(common, tile=tile)
            if ome and k == 0:
                meta = {"axes": "YXS" if image.ndim == 3 else "YX"}
                if mpp is not None:
                    meta.update(PhysicalSizeX=mpp, PhysicalSizeY=mpp)
                kwargs.update(subifds=len(pyramid) - 1, metadata=meta)
            if k > 0:
                kwargs["subfiletype"] = 1
            if tile is None:
                kwargs["rowsperstrip"] = 64
            tif.write(level, **kwargs)
    return pyramid


@pytest.fixture
def slide_writer(tmp_path: Path) -> Callable[..., tuple[Path, list[np.ndarray]]]:
    """``slide_writer(name, image, **write_slide_options) -> (path, levels)`` in tmp_path."""

    def write(name: str, image: np.ndarray, **options: Any) -> tuple[Path, list[np.ndarray]]:
        path = tmp_path / name
        return path, write_slide(path, image, **options)

    return write


ODD_SLIDE_MPP_UM = 0.2283  # with AppMag 40: 43.8x by 10 µm / mpp, 40x by the file


@pytest.fixture
def odd_slide(
    slide_writer: Callable[..., tuple[Path, list[np.ndarray]]], real_pixels: np.ndarray
) -> tuple[Path, list[tuple[int, int, int, int]]]:
    """(path, squares): a single-level 2601 x 4099 SVS-like slide (AppMag 40, 0.2283 µm/px,
    uncompressed) of darkened real pixels (never 255) with white squares at the level-0
    ``squares`` (y0, x0, y1, x1), multiples of 64: one at the far edge, one near the origin."""
    squares = [(64, 128, 128, 192), (2496, 4032, 2560, 4096)]
    image = np.tile(real_pixels // 2, (1, 2, 1))[:2601, :4099]
    for y0, x0, y1, x1 in squares:
        image[y0:y1, x0:x1] = 255
    path, _ = slide_writer("odd.svs", image, layout="svs", levels=1, compression=None,
                           mpp=ODD_SLIDE_MPP_UM)
    return path, squares


# An RGB display profile built here (ICC v2, matrix and curves): Adobe RGB (1998)'s primaries
# adapted to D50 (ICC's colorants) and a 2.2 gamma, wider than sRGB, so converting to sRGB
# changes the pixels. No profile file ships with the tests; littlecms reads this one.
WIDE_RGB_PRIMARIES = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087),
                      (0.14919, 0.06322, 0.74457))
D50_XYZ = (0.9642, 1.0, 0.8249)


def icc_rgb_profile(description: str, primaries: Any = WIDE_RGB_PRIMARIES,
                    gamma: float = 563 / 256) -> bytes:
    """The bytes of an ICC v2 RGB display profile: ``primaries`` (the red, green and blue
    colorants, XYZ under D50), one ``gamma`` curve for the three channels."""
    import struct

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(v: Any) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(s15(c) for c in v)

    text = description.encode("ascii") + b"\0"
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(78)),
            (b"cprt", b"text" + bytes(4) + b"No copyright, use freely\0"),
            (b"wtpt", xyz(D50_XYZ)),
            *[(c + b"XYZ", xyz(p)) for c, p in zip((b"r", b"g", b"b"), primaries)],
            *[(c + b"TRC", curve) for c in (b"r", b"g", b"b")]]
    start = 128 + 4 + 12 * len(tags)  # header, tag count, tag table
    table, body = b"", b""
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table += sig + struct.pack(">II", start + len(body), len(data))
        body += data
    header = (struct.pack(">I", start + len(body)) + bytes(4) + bytes([2, 0x10, 0, 0])
              + b"mntrRGB XYZ " + bytes(12) + b"acsp" + bytes(28)
              + b"".join(s15(c) for c in D50_XYZ) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + body


@pytest.fixture(scope="session")
def wide_rgb_profile() -> bytes:
    """An ICC profile wider than sRGB (:func:`icc_rgb_profile`)."""
    return icc_rgb_profile("patchheat test RGB (Adobe RGB primaries, gamma 2.2)")


@pytest.fixture
def icc_slide(slide_writer: Callable[..., tuple[Path, list[np.ndarray]]], real_pixels: np.ndarray,
              wide_rgb_profile: bytes) -> Path:
    """A 1500 x 1200 px OME-TIFF (2 levels, 256 px JPEG tiles) of real pixels, its pages
    carrying ``wide_rgb_profile`` (tag InterColorProfile)."""
    path, _ = slide_writer("icc.ome.tif", real_pixels[1000:2500, 500:1700], levels=2,
                           iccprofile=wide_rgb_profile)
    return path


def sparse_tiles(rows: int, cols: int, tile: bytes, block: tuple[slice, slice]) -> Iterator[bytes]:
    """``tile`` in the tiles of ``block`` (tile rows, tile columns), empty tiles elsewhere."""
    for ty in range(rows):
        inside = block[0].start <= ty < block[0].stop
        for tx in range(cols):
            yield tile if inside and block[1].start <= tx < block[1].stop else b""


@pytest.fixture(scope="session")
def huge_slide(tmp_path_factory: pytest.TempPathFactory, real_pixels: np.ndarray) -> Path:
    """A 100,000 x 100,000 px OME-TIFF pyramid (256 px JPEG tiles; 30 GB of pixels).

    Real tiles fill the 16 x 16 tiles around the centre of level 0 (and its share of each
    level); the rest are empty tiles (sparse TIFF), so it is written in well under a second.
    """
    import tifffile

    from napari_patchheat.samples import _encode

    size, tile_px = 100_000, 256
    path = tmp_path_factory.mktemp("huge") / "huge.ome.tif"
    encoded = _encode(
        np.ascontiguousarray(real_pixels[1000 : 1000 + tile_px, 1000 : 1000 + tile_px]))
    shapes = [(size >> k, size >> k) for k in range(7)]
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        for k, (h, w) in enumerate(shapes):
            rows, cols = -(-h // tile_px), -(-w // tile_px)
            half = max(1, 8 >> k)
            block = (slice(rows // 2 - half, rows // 2 + half),
                     slice(cols // 2 - half, cols // 2 + half))
            extra = {"subifds": len(shapes) - 1} if k == 0 else {"subfiletype": 1}
            tif.write(
                sparse_tiles(rows, cols, encoded, block),
                shape=(h, w, 3),
                dtype="uint8",
                photometric="rgb",
                tile=(tile_px, tile_px),
                compression="jpeg",
                **extra,
            )
    return path


# --- real full disks ------------------------------------------------------------------------


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}): a real full or read-only disk needs it")


@pytest.fixture
def mounts(tmp_path):
    """Mount tmpfs file systems in the test's folder (unmounted at the end)."""
    made: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        _mount_tmpfs(where, size)
        made.append(where)
        return where

    yield mount
    for where in made:
        subprocess.run(["umount", str(where)], check=False)


# --- remote slides: moto's S3 server (tests/remote_servers.py) ---------------------------------

from remote_servers import s3, s3_env  # noqa: E402, F401  (fixtures)
