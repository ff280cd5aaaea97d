"""The ``patchheat`` command: ``run`` a model over a slide, ``batch`` many, the ``demo``,
``open`` napari, ``cache info|clear``.

``run`` and ``demo`` compute in this process with TensorFlow, ``batch`` on dask.distributed's
workers (batch.py); anything that shows napari runs in a fresh process (``patchheat open``),
since TensorFlow and napari's OpenGL cannot share one. Only the standard library is imported
with this module, so that Ctrl-C at any moment is the one-line interruption, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .console import ProgressLine, import_tensorflow_quietly, printed_warnings, say

if TYPE_CHECKING:
    from .export import ClassRule
    from .grid import Pair
    from .heatmap import Heatmap
    from .options import RunOptions

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
EXIT_TERMINATED = 143  # the shell's code for SIGTERM


class UserError(Exception):
    """Bad arguments or input: printed as one line, exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled as Ctrl-C is (computed patches kept), exit code 143."""


def _pair(name: str) -> Callable[[str], Pair]:
    """The argparse type of pair option ``name``: '224' -> (224, 224), '224,299' -> (224, 299)."""

    def parse(text: str) -> Pair:
        from .grid import as_pair

        try:
            parts = [int(p) for p in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number or a 'y,x' pair") from None
        try:
            return as_pair(name, parts[0] if len(parts) == 1 else parts)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    """The argparse type of a choice: the choice whatever the case ('same' -> 'SAME')."""
    by_lower = {c.lower(): c for c in choices}
    return lambda text: by_lower.get(text.lower(), text)


def _formats(text: str) -> list[str]:
    from .export import FORMATS

    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in (*FORMATS, "npz")]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format {', '.join(bad) or repr(text)}: choose from npz, "
            f"{', '.join(FORMATS)}")
    return names


def _positive(text: str) -> float:
    """The argparse type of a finite number above 0 (a pixel size)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a number above 0, e.g. 0.5")
    return value


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit code 2), not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``patchheat`` and its sub-commands."""
    ap = OneLineParser(prog="patchheat", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = sub.add_parser("run", help="compute a heatmap of a slide with a model")
    run.add_argument("slide", type=Path, help="slide file (SVS, OME-TIFF, NDPI, TIFF, PNG, JPEG)")
    _add_run_options(run)
    _add_output_options(run)

    batch = sub.add_parser("batch", help="many slides (or huge ones in regions) on "
                                         "dask.distributed: a local cluster or a scheduler")
    batch.add_argument("slides", type=Path, nargs="*", help="slide files")
    batch.add_argument("--list", type=Path, dest="slide_list",
                       help="file listing the slides: .txt (one a line) or .csv (a 'slide' "
                            "column); relative paths are taken from its folder")
    _add_run_options(batch)
    _add_output_options(batch)
    batch.add_argument("--scheduler",
                       help="dask scheduler address (tcp://host:8786) or scheduler file "
                            "(default: start a local cluster)")
    batch.add_argument("--workers", type=int, default=None,
                       help="local cluster: worker processes (default: dask's choice)")
    batch.add_argument("--threads-per-worker", type=int, default=None,
                       help="local cluster: threads of each worker (and its TensorFlow)")
    batch.add_argument("--split-px", type=int, default=None,
                       help="split each slide into region tasks of about N x N level pixels, "
                            "merged into one heatmap")
    batch.add_argument("--retries", type=int, default=0,
                       help="run a task that raised again up to N times (default 0; a task "
                            "whose worker died is rescheduled anyway)")
    batch.add_argument("--resources", default=None,
                       help="resources each model task takes, e.g. GPU=1 (start the workers "
                            "with --resources GPU=1)")

    reg = sub.add_parser("regions", help="threshold a heatmap written by 'run' into regions "
                                         "(QuPath GeoJSON annotations) and numbers per region")
    reg.add_argument("heatmap", type=Path, help="heatmap .npz or .ome.tif written by 'run'")
    reg.add_argument("--class", dest="class_name", default=None,
                     help="class to threshold (default: the heatmap's only class)")
    reg.add_argument("--threshold", type=float, required=True,
                     help="regions are where the class is at or above this")
    reg.add_argument("--smooth", type=float, default=0.0,
                     help="Gaussian smoothing before the threshold, in cells (default 0: none)")
    reg.add_argument("--roi", type=Path, default=None,
                     help="numbers per region of interest too: GeoJSON of polygons in level-0 "
                          "px (a row per feature) or a mask image (see run --roi)")
    reg.add_argument("--out", type=Path, default=None,
                     help="output folder (default: the heatmap's folder)")

    ov = sub.add_parser("overlap", help="the overlap-averaged map of a heatmap written by 'run' "
                                        "(each cell the mean of the patches over it) as a TIFF")
    ov.add_argument("heatmap", type=Path, help="heatmap .npz or .ome.tif written by 'run'")
    ov.add_argument("--out", type=Path, default=None,
                    help="output folder (default: the heatmap's folder)")

    demo = sub.add_parser("demo", help="the IHC sample through 'dab', then the generated slide "
                                       "through 'tissue'; opens napari when there is a display")
    demo.add_argument("--out", type=Path, default=Path("patchheat-demo"),
                      help="output folder (default ./patchheat-demo)")
    demo.add_argument("--no-viewer", action="store_true", help="do not open napari")

    op = sub.add_parser("open", help="open napari with a slide, the PatchHeat widget and heatmaps")
    op.add_argument("slide", type=Path, nargs="?", help="slide to open")
    op.add_argument("--heatmap", type=Path, action="append", default=[],
                    help="heatmap .npz written by 'patchheat run' (repeatable)")

    cache = sub.add_parser("cache", help="see or empty the result cache (resumed runs) and the "
                                         "zoomed-out levels built for huge images")
    cache.add_argument("action", choices=("info", "clear"),
                       help="info: where they are, what they hold and their size; clear: delete "
                            "them")
    cache.add_argument("--cache-dir", type=Path, default=None,
                       help="the cache folder (default: runs/ in $PATCHHEAT_CACHE_DIR, else "
                            "$XDG_CACHE_HOME/napari-patchheat)")
    return ap


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--mpp`` and a flag per :class:`RunOptions` field, with its help."""
    from .options import RunOptions

    p.add_argument("--model", default="dab",
                   help="built-in model (tissue, hematoxylin, eosin, dab) or a Keras/SavedModel "
                        "path (default dab)")
    for f in dataclasses.fields(RunOptions):
        if f.name == "level":  # a level, or the one closest to a pixel size: not both
            group = p.add_mutually_exclusive_group()
            _add_option(group, f)
            group.add_argument("--mpp", type=_positive, default=None,
                               help="pick the level closest to this µm/px")
        else:
            _add_option(p, f)


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """``--out``, ``--format`` and the GeoJSON thresholds (``run`` and ``batch``)."""
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--format", type=_formats, default=["npz"],
                   help="comma-separated: npz, ometiff, slide_raster, png, csv, csv_wsinfer "
                        "(WSInfer's columns), geojson (default npz)")
    p.add_argument("--positive-threshold", type=float, default=None,
                   help="GeoJSON: classify a one-output model's tiles whose value is at or "
                        "above this (default: the model card's; none: no tile is classified)")
    p.add_argument("--min-probability", type=float, default=None,
                   help="GeoJSON: leave a multi-class model's tiles unclassified where their "
                        "top class's value is below this (default: each gets its top class)")


def _add_option(p: Any, f: dataclasses.Field[Any]) -> None:
    """The flag of RunOptions field ``f``, from its metadata (see options.py)."""
    kind, help_text = f.metadata["kind"], f.metadata["help"]
    flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    if kind == "switch":
        action = "store_false" if f.default else "store_true"
        p.add_argument(flag, dest=f.name, action=action, help=help_text)
        return
    if kind == "choice":
        choices = f.metadata["choices"]
        typed: dict[str, Any] = dict(type=_choice(choices), choices=choices)
    else:
        parsers = {"int": int, "float": float, "path": Path, "pair": _pair(f.name)}
        typed = dict(type=parsers[kind])
    default = f.metadata.get("interactive_default", f.default)
    p.add_argument(flag, dest=f.name, default=default, help=help_text, **typed)


def run_options(args: argparse.Namespace) -> RunOptions:
    """The RunOptions of parsed ``patchheat run`` arguments (a ValueError for bad values)."""
    from .options import RunOptions

    return RunOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunOptions)})


def run_job(slide: Path, model: str, out: Path, formats: Sequence[str] = ("npz",),
            options: RunOptions | None = None, *, mpp: float | None = None,
            quiet: bool = False, positive_threshold: float | None = None,
            min_probability: float | None = None,
            compute: Callable[[Any], Iterable[Any]] | None = None) -> dict[str, Path]:
    """Compute a heatmap of ``slide`` with ``model`` and write it to ``out``; returns the files.

    ``mpp`` (µm/px), when given, picks the level closest to it instead of ``options.level``.
    ``positive_threshold`` (else the model card's) and ``min_probability`` classify GeoJSON
    tiles (export.ClassRule); they are checked before the run and kept in the heatmap's extra.
    ``compute(run)``, when given, yields the HeatmapRun's Progress in place of ``run.run()``
    (``patchheat batch`` reports progress to its client, or computes regions on a cluster).
    """
    from .files import check_writable_folder, safe_name
    from .heatmap import slide_stem
    from .inference import HeatmapRun, RunError
    from .options import RunOptions

    options = options if options is not None else RunOptions()
    if not slide.exists():
        raise UserError(f"{slide} does not exist: give the path of a slide file.")
    try:  # before the run, so a bad --out costs nothing
        check_writable_folder(out)
    except OSError as exc:
        raise UserError(f"cannot write the output folder {out}: {exc.strerror}; choose "
                        "another --out.") from exc
    from .models import load_model
    from .slide import open_slide
    from .slide.coarse import needs_build

    with open_slide(slide) as s:
        if mpp is not None:
            options = dataclasses.replace(options, level=s.level_for_mpp(mpp))
        import_tensorflow_quietly()
        run_model: Any = model
        if _reads_computed_levels(s, model, options, formats, quiet) and needs_build(s):
            if isinstance(model, (str, Path)):  # loaded first: a bad model stops the run at
                run_model = load_model(model, resize=options.resize,  # once, not after a build
                                       mixed_precision=options.mixed_precision)
            build_zoomed_out_views(s, quiet)
        run = HeatmapRun(s, run_model, options)
        classify = class_rule(run.model, positive_threshold, min_probability)
        if not quiet:
            _describe_run(slide, run)
            _warn_if_fluorescence(run.model, s)
        stem = safe_name(f"{slide_stem(slide.name)}.{run.model.name}")  # a card's name: any text
        bar = ProgressLine(run.model.name)
        try:
            for p in run.run() if compute is None else compute(run):
                if not quiet:
                    bar(p)
        except (RunError, KeyboardInterrupt) as exc:  # keep what was computed
            partial = with_class_rule(run.result(), classify)
            if partial.n_computed:
                try:
                    write_outputs(partial, out, f"{stem}.partial", ("npz",), s)
                    say(f"kept {partial.n_computed:,} computed patches in "
                        f"{out / (stem + '.partial.npz')}")
                except OSError as write_error:
                    say(f"patchheat: could not keep the computed patches in {out}: "
                        f"{write_error}")
            raise exc
        written = write_outputs(with_class_rule(run.result(), classify), out, stem, formats, s)
        (out / f"{stem}.partial.npz").unlink(missing_ok=True)  # an earlier run's, now stale
        return written


def _reads_computed_levels(s: Any, model: Any, options: RunOptions, formats: Sequence[str],
                           quiet: bool) -> bool:
    """Whether a run reads ``s``'s computed (zoomed-out) levels: its tissue mask, a built-in
    model's fluorescence check (not ``quiet``), the PNG's thumbnail, or a computed level."""
    from .models import is_builtin

    if not 0 <= options.level < len(s.levels):  # HeatmapRun says so at once
        return False
    return (options.tissue_threshold > 0 or (is_builtin(model) and not quiet)
            or "png" in formats or options.level >= s.stored_level_count)


def build_zoomed_out_views(s: Any, quiet: bool) -> None:
    """Build the zoomed-out levels of a huge dense single-level TIFF (``needs_build(s)``) once
    into the cache, as napari does when it opens one (slide/coarse.py): one pass over the
    image, which reading them lazily would cost anyway, reused by every later run and open. A
    cache that cannot be written is a warning: the run then computes them lazily."""
    from .slide.coarse import build_coarse_levels, unbuilt_warning, use_built_levels

    label = f"building the zoomed-out views of {s.path.name} once"

    def progress(done: int, total: int) -> None:
        if not quiet:
            sys.stderr.write(f"\r{label}: {done / max(total, 1):4.0%} ")
            ProgressLine.mid_line = done < total
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    try:
        build_coarse_levels(s, progress=progress)
    except OSError as exc:
        say(f"patchheat: warning: {unbuilt_warning(s.path, exc)}")
        return
    use_built_levels(s)


def class_rule(model: Any, positive_threshold: float | None,
               min_probability: float | None) -> ClassRule:
    """The export.ClassRule of a run of ``model`` (a PatchModel): ``positive_threshold``, else
    its card's; a ValueError where a threshold does not fit the model's classes."""
    from .export import ClassRule

    if positive_threshold is None:  # the card's (models other than PatchModels have none)
        positive_threshold = getattr(model, "positive_threshold", None)
    return ClassRule(tuple(model.class_names), positive_threshold, min_probability)


def with_class_rule(heatmap: Heatmap, rule: ClassRule) -> Heatmap:
    """``heatmap`` with the rule's thresholds in its ``extra`` (its files record them)."""
    for key in ("positive_threshold", "min_probability"):
        if getattr(rule, key) is not None:
            heatmap.extra[key] = getattr(rule, key)
    return heatmap


def _warn_if_fluorescence(model: Any, slide: Any) -> None:
    """A warning line on stderr when a built-in (brightfield) model runs on a fluorescence
    slide."""
    from .tissue import FLUORESCENCE_MODEL_WARNING, is_fluorescence

    if getattr(model, "kind", "") == "builtin" and is_fluorescence(slide):
        print(f"patchheat: warning: {FLUORESCENCE_MODEL_WARNING.format(model=model.name)}",
              file=sys.stderr)


def _describe_run(slide: Path, run: Any) -> None:
    """One line on stderr: the level, its grid and how many patches the run computes."""
    g = run.grid
    print(f"{slide.name}: level {run.level} {g.height} x {g.width} px (h x w), grid "
          f"{g.rows} x {g.cols} = {g.n_patches:,} patches, {int(run.todo.sum()):,} to compute "
          f"with '{run.model.name}'", file=sys.stderr)


def write_outputs(heatmap: Any, out: Path, stem: str, formats: Sequence[str],
                  slide: Any) -> dict[str, Path]:
    """Write ``heatmap`` in each of ``formats`` under ``out``; returns format -> path.

    ``slide`` (an open Slide) gives the PNG's background thumbnail; GeoJSON tiles are classified
    by the thresholds in ``heatmap.extra`` (:func:`with_class_rule`).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out}: {exc.strerror}.") from exc
    written: dict[str, Path] = {}
    if "npz" in formats:
        try:
            written["npz"] = heatmap.save_npz(out / f"{stem}.npz")
        except OSError as exc:
            raise UserError(f"cannot write {out / (stem + '.npz')}: {exc.strerror or exc}."
                            ) from exc
    others = [f for f in formats if f != "npz"]
    if others:
        from .export import export_heatmap

        thumbnail = slide.thumbnail(2000) if "png" in others else None
        written.update(export_heatmap(
            heatmap, out, stem, others, thumbnail=thumbnail,
            positive_threshold=heatmap.extra.get("positive_threshold"),
            min_probability=heatmap.extra.get("min_probability")))
    return written


def overlap_job(path: Path, out: Path | None = None) -> Path:
    """Write the overlap-averaged map of a heatmap file as ``<stem>.overlap.tif``."""
    from .overlap import overlap_map, write_overlap_tiff
    from .region_report import heatmap_file_stem, read_heatmap_file

    overlap = overlap_map(read_heatmap_file(path))
    folder = out if out is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    return write_overlap_tiff(overlap, folder / f"{heatmap_file_stem(path)}.overlap.tif")


def regions_job(path: Path, class_name: str | None, threshold: float, *, smooth: float = 0.0,
                roi: Path | None = None, out: Path | None = None) -> dict[str, Path]:
    """Threshold a heatmap file into regions, write their report (region_report.py) next to
    it or in ``out`` and print its numbers. Returns the files."""
    from .region_report import (
        heatmap_file_stem,
        read_heatmap_file,
        region_report,
        write_region_report,
    )
    from .region_stats import format_stats

    heatmap = read_heatmap_file(path)
    if class_name is None and len(heatmap.class_names) > 1:
        raise UserError(f"this heatmap has classes {', '.join(heatmap.class_names)}: choose "
                        "one with --class.")
    report = region_report(heatmap, class_name if class_name is not None else 0, threshold,
                           smooth=smooth, roi=roi)
    files = write_region_report(report, out if out is not None else path.parent,
                                heatmap_file_stem(path))
    print(format_stats(report.rows, report.class_name))
    return files


def demo(out: Path, viewer: bool) -> int:
    """The README's main job: IHC sample through 'dab', generated slide through 'tissue'."""
    from .options import RunOptions
    from .samples import SAMPLE_MPP_UM, ihc_sample_path, sample_slide_path

    ihc = ihc_sample_path()
    files = run_job(ihc, "dab", out, ("npz", "png", "csv", "geojson", "ometiff"),
                    RunOptions(size=64, stride=32))
    print(f"IHC sample through 'dab': {', '.join(str(p) for p in files.values())}")
    files2 = run_job(sample_slide_path(), "tissue", out, ("npz", "png", "geojson"),
                     RunOptions(size=128, stride=128, tissue_threshold=0.05),
                     mpp=8 * SAMPLE_MPP_UM)
    print(f"generated slide through 'tissue': {', '.join(str(p) for p in files2.values())}")
    if viewer and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return subprocess.call([sys.executable, "-m", "napari_patchheat.cli", "open", str(ihc),
                                "--heatmap", str(files["npz"])])
    return 0


def open_viewer(slide: Path | None, heatmaps: Sequence[Path]) -> int:
    """napari with ``slide``, the PatchHeat dock widget and the given heatmaps; files that
    cannot be shown are a UserError or ValueError before napari starts."""
    from .heatmap import Heatmap

    for path in (slide, *heatmaps):
        if path is not None and not path.is_file():
            raise UserError(f"{path} does not exist or is not a file: give a file's path.")
    loaded = [Heatmap.load_npz(path) for path in heatmaps]
    import napari

    from ._reader import heatmap_layer_data

    viewer = napari.Viewer(title="napari-patchheat")
    if slide is not None:
        layers = viewer.open(str(slide), plugin="napari-patchheat")
        viewer.scale_bar.visible = bool(layers and layers[0].metadata.get("mpp"))  # µm known
    viewer.window.add_plugin_dock_widget("napari-patchheat", "PatchHeat")
    for heatmap in loaded:
        data, kwargs, _ = heatmap_layer_data(heatmap)[0]  # the first class
        viewer.add_image(data, **kwargs)
    napari.run()
    return 0


def cache_command(action: str, folder: Path | None) -> int:
    """``patchheat cache info`` (where, how many runs, how big) or ``clear`` (delete them);
    without ``folder``, also the zoomed-out levels built for huge images (``coarse/``)."""
    from .cache import cache_info, clear_cache, coarse_dir

    info = cache_info(folder)
    coarse = cache_info(coarse_dir()) if folder is None else None
    if action == "info":
        print(f"{info.folder}: {info.runs} cached run(s), {info.set_aside} set aside, "
              f"{info.other} other file(s), {info.total_bytes / 1e6:.1f} MB")
        if coarse is not None:
            print(f"{coarse.folder}: {coarse.other} file(s) of zoomed-out levels built for huge "
                  f"images, {coarse.total_bytes / 1e6:.1f} MB")
        return 0
    for each in (info, coarse):
        if each is None:
            continue
        try:
            freed = clear_cache(each.folder)
        except OSError as exc:
            raise UserError(f"cannot clear the cache {each.folder} ({exc.strerror or exc}): "
                            "delete it by hand.") from exc
        print(f"cleared {each.folder}: {freed / 1e6:.1f} MB freed")
    return 0


def _command(args: argparse.Namespace) -> int:
    """Run the parsed command."""
    if args.command == "run":
        files = run_job(args.slide, args.model, args.out, args.format, run_options(args),
                        mpp=args.mpp, positive_threshold=args.positive_threshold,
                        min_probability=args.min_probability)
        for fmt, path in files.items():
            print(f"{fmt}: {path}")
        return 0
    if args.command == "batch":
        from .batch import batch_command

        return batch_command(args, run_options(args))
    if args.command == "regions":
        files = regions_job(args.heatmap, args.class_name, args.threshold,
                            smooth=args.smooth, roi=args.roi, out=args.out)
        for fmt, path in files.items():
            print(f"{fmt}: {path}")
        return 0
    if args.command == "overlap":
        print(f"overlap: {overlap_job(args.heatmap, args.out)}")
        return 0
    if args.command == "demo":
        return demo(args.out, not args.no_viewer)
    if args.command == "cache":
        return cache_command(args.action, args.cache_dir)
    return open_viewer(args.slide, args.heatmap)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``patchheat`` console script: exit 0, 1 (the run failed), 2 (bad
    input), 130 (Ctrl-C) or 143 (SIGTERM); one line on stderr for each error."""
    if threading.current_thread() is threading.main_thread():  # like Ctrl-C: keep what is done
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        args = build_parser().parse_args(argv)
        with printed_warnings():
            return _command(args)
    except KeyboardInterrupt as exc:
        say("patchheat: interrupted; run the same command again to resume")
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except Exception as exc:
        from .inference import RunError

        if isinstance(exc, RunError):  # a failed run: one line, not a traceback
            say(f"patchheat: error: {exc}")
            return EXIT_FAILED
        if isinstance(exc, (UserError, ValueError, OSError)):  # bad arguments, unreadable files
            say(f"patchheat: error: {exc}")
            return EXIT_BAD_INPUT
        raise
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
