"""The checks of scripts/smoke_wheel.sh, one sub-command each; the last line '=> ...' says what
was checked, a failed check is an AssertionError (exit 1).

    dist DIST REPO     the sdist and the wheel in DIST hold what they should (run with .venv)
    installed VENV     napari_patchheat is imported from VENV, not from a source tree
    reader DATA        the plugin's npe2 reader on the real slides in DATA (shared/data/real)
    demo OUT           patchheat demo wrote its files into OUT, and they read back

Every check but ``dist`` runs with the new environment's Python from a folder outside the
repository (this file's folder, scripts/, is on sys.path, and holds no package).
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGE = "napari_patchheat"
# the real slides (shared/data/real/SOURCES.md): level shapes (h, w, samples) as measured there
SVS = "CMU-1-Small-Region.svs"
SVS_LEVEL0 = (2967, 2220, 3)
SVS_MEAN = 205.58  # the level's mean sample value (SOURCES.md)
SVS_MEAN_TOLERANCE = 0.5  # JPEG decoders may round a few samples differently
NDPI = "test3-DAPI-2-387.ndpi"
NDPI_LEVELS = [(4864, 3968, 3), (2432, 1984, 3), (1216, 992, 3), (608, 496, 3)]
# the demo's files (cli.demo): the IHC sample through 'dab', the generated slide through 'tissue'
DEMO_IHC = ("ihc.dab.npz", "ihc.dab.png", "ihc.dab.csv", "ihc.dab.geojson", "ihc.dab.ome.tif")
DEMO_SLIDE_SUFFIXES = (".tissue.npz", ".tissue.png", ".tissue.geojson")


def check_dist(dist: Path, repo: Path) -> str:
    """The wheel holds the package's every source file and napari.yaml, the licence and the
    entry points, and no tests or benchmarks; the sdist holds LICENSE, README, CHANGELOG."""
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    names = set(zipfile.ZipFile(wheel).namelist())
    src = repo / "src"
    expected = {p.relative_to(src).as_posix() for p in (src / PACKAGE).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    packaged = {n for n in names if n.startswith(f"{PACKAGE}/")}
    assert packaged == expected, (f"wheel lacks {sorted(expected - packaged)}, "
                                  f"has extra {sorted(packaged - expected)}")
    assert f"{PACKAGE}/napari.yaml" in names, "wheel lacks napari.yaml"
    stray = [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "docs", "scripts")]
    assert not stray, f"wheel holds files it should not: {stray[:5]}"
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{info}/licenses/LICENSE" in names, "wheel lacks the licence file"
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "[napari.manifest]" in entry_points and "patchheat =" in entry_points, entry_points
    top = {"/".join(n.split("/")[1:]) for n in tarfile.open(sdist).getnames()}
    for name in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml",
                 f"src/{PACKAGE}/napari.yaml"):
        assert name in top, f"sdist lacks {name}"
    return f"{wheel.name} ({len(packaged)} package files), {sdist.name}"


def check_installed(venv: Path) -> str:
    """napari_patchheat comes from ``venv``'s site-packages, at the version its metadata says."""
    from importlib.metadata import version

    import napari_patchheat

    where = Path(napari_patchheat.__file__).resolve()
    assert where.is_relative_to(venv.resolve()), f"napari_patchheat imported from {where}"
    assert napari_patchheat.__version__ == version("napari-patchheat"), (
        napari_patchheat.__version__, version("napari-patchheat"))
    assert (where.parent / "napari.yaml").is_file(), "napari.yaml is not installed"
    return f"{napari_patchheat.__version__} from {where.parent}"


def check_reader(data: Path) -> str:
    """npe2's reader of this plugin: the SVS's level 0 shape and mean, the NDPI's four levels;
    None for a file it does not take; TensorFlow not imported (napari's process never does)."""
    from npe2 import PluginManager, read

    from napari_patchheat._reader import napari_get_reader

    PluginManager.instance().discover()
    [(levels, kwargs, kind)] = read([str(data / SVS)], stack=False,
                                    plugin_name="napari-patchheat")
    assert kind == "image" and kwargs.get("multiscale"), (kind, kwargs)
    assert tuple(levels[0].shape) == SVS_LEVEL0, levels[0].shape
    mean = float(levels[0].mean().compute())
    assert abs(mean - SVS_MEAN) < SVS_MEAN_TOLERANCE, f"{SVS} level 0 mean {mean}"
    [(ndpi, _, _)] = read([str(data / NDPI)], stack=False, plugin_name="napari-patchheat")
    assert [tuple(lv.shape) for lv in ndpi] == NDPI_LEVELS, [lv.shape for lv in ndpi]
    assert napari_get_reader(str(data / "SOURCES.md")) is None, "took a Markdown file"
    assert "tensorflow" not in sys.modules, "reading a slide imported TensorFlow"
    return (f"{SVS} level 0 {SVS_LEVEL0} mean {mean:.2f}, {NDPI} {len(ndpi)} levels "
            f"{NDPI_LEVELS[0]}")


def check_demo(out: Path) -> str:
    """The demo's files exist and are not empty; its heatmaps read back with computed cells."""
    from napari_patchheat.export import read_ome_tiff
    from napari_patchheat.heatmap import Heatmap

    slide = sorted(out.glob(f"*{DEMO_SLIDE_SUFFIXES[0]}"))
    assert slide, f"no generated slide's heatmap in {out}: {sorted(p.name for p in out.iterdir())}"
    stem = slide[0].name[: -len(DEMO_SLIDE_SUFFIXES[0])]
    files = [out / n for n in DEMO_IHC] + [out / (stem + s) for s in DEMO_SLIDE_SUFFIXES]
    missing = [p.name for p in files if not p.is_file() or p.stat().st_size == 0]
    assert not missing, f"missing or empty: {missing}"
    ihc = Heatmap.load_npz(out / "ihc.dab.npz")
    assert ihc.n_computed == ihc.grid.shape[0] * ihc.grid.shape[1], "IHC heatmap incomplete"
    assert read_ome_tiff(out / "ihc.dab.ome.tif").values.shape == ihc.values.shape
    tissue = Heatmap.load_npz(slide[0])
    assert tissue.n_computed > 0, "the generated slide's heatmap has no computed cell"
    return (f"{len(files)} files; IHC {ihc.grid.shape[0]} x {ihc.grid.shape[1]} cells, "
            f"generated slide {tissue.n_computed} cells computed")


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "dist":
        summary = check_dist(Path(args[0]), Path(args[1]))
    elif command == "installed":
        summary = check_installed(Path(args[0]))
    elif command == "reader":
        summary = check_reader(Path(args[0]))
    elif command == "demo":
        summary = check_demo(Path(args[0]))
    else:
        raise SystemExit(f"unknown check {command!r}: dist, installed, reader or demo")
    print(f"=> {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
