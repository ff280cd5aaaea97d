"""The ``patchheat`` command: ``run`` a model over a slide, ``batch`` many, the ``demo``,
``open`` napari, ``cache info|clear``.

The parser and one handler per sub-command; the work is the job layer's (jobs.py: ``run``,
``demo``, ``regions``, ``overlap``, computed in this process with TensorFlow) and batch/'s
(``batch``, on dask.distributed's workers). Anything that shows napari runs in a fresh process
(``patchheat open``), since TensorFlow and napari's OpenGL cannot share one. Only the standard
library is imported with this module, so that Ctrl-C at any moment is the one-line
interruption, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .console import PROGRESS_EVERY_S, bar, printed_warnings, say
from .jobs import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    JobOutputs,
    UserError,
    demo_job,
    exit_code,
    overlap_job,
    regions_job,
    run_jobs,
)

if TYPE_CHECKING:
    from .batch import BatchProgress
    from .grid import Pair
    from .options import RunOptions

EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
EXIT_TERMINATED = 143  # the shell's code for SIGTERM


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


def _whole(least: int, example: int) -> Callable[[str], int]:
    """The argparse type of a whole number of at least ``least`` (a count, a size in pixels):
    a one-line error naming the value and an ``example``, before anything starts."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number: give one of at least {least}, "
                f"e.g. {example}") from None
        if value < least:
            raise argparse.ArgumentTypeError(
                f"{text} is below {least}: give a whole number of at least {least}, "
                f"e.g. {example}")
        return value

    return parse


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit code 2), not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``patchheat`` and its sub-commands."""
    ap = OneLineParser(prog="patchheat", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    run = sub.add_parser("run", help="compute the heatmap of a slide (or of several, one after "
                                     "the other in this process) with a model")
    run.add_argument("slides", type=_slide_arg, nargs="+", metavar="slide",
                     help="slide files or folders (SVS, NDPI, OME-TIFF, TIFF, MRXS, DICOM WSI "
                          "folder or .dcm, OME-Zarr, PNG, JPEG, ...) or URLs (s3://, gs://, "
                          "az://, http(s)://); a slide that fails is reported and the others go "
                          "on (exit code 1 or 2)")
    _add_run_options(run)
    _add_output_options(run)
    _add_storage_option(run)

    batch = sub.add_parser("batch", help="many slides (or huge ones in regions) on "
                                         "dask.distributed: a local cluster or a scheduler")
    batch.add_argument("slides", type=_slide_arg, nargs="*", help="slide files or URLs")
    batch.add_argument("--list", type=Path, dest="slide_list",
                       help="file listing the slides: .txt (one a line) or .csv (a 'slide' "
                            "column); relative paths are taken from its folder")
    _add_run_options(batch)
    _add_output_options(batch)
    _add_storage_option(batch)
    batch.add_argument("--scheduler",
                       help="dask scheduler address (tcp://host:8786) or scheduler file "
                            "(default: start a local cluster)")
    batch.add_argument("--workers", type=_whole(1, 4), default=None,
                       help="local cluster: worker processes (default: from the cores: on up "
                            "to 2, one worker in this process; else one per 2 cores)")
    batch.add_argument("--threads-per-worker", type=_whole(1, 2), default=None,
                       help="local cluster: threads of each worker (and its TensorFlow; "
                            "default: the cores on up to 2, else 2)")
    batch.add_argument("--split-px", type=_whole(1, 8192), default=None,
                       help="split each slide into region tasks of about N x N level pixels, "
                            "merged into one heatmap")
    batch.add_argument("--retries", type=_whole(0, 2), default=0,
                       help="run a task that raised again up to N times (default 0; a task "
                            "whose worker died is rescheduled anyway)")
    batch.add_argument("--resources", default=None,
                       help="resources each model task takes, e.g. GPU=1 (start the workers "
                            "with --resources GPU=1)")

    reg = sub.add_parser("regions", help="threshold a heatmap written by 'run' into regions "
                                         "(QuPath GeoJSON annotations) and numbers per region")
    reg.add_argument("heatmap", type=Path, help="heatmap .npz, .ome.tif or .ome.zarr from 'run'")
    reg.add_argument("--class", dest="class_name", default=None,
                     help="class to threshold (default: the heatmap's only class)")
    reg.add_argument("--threshold", type=float, required=True,
                     help="regions are where the class is at or above this")
    reg.add_argument("--smooth", type=float, default=0.0,
                     help="Gaussian smoothing before the threshold, in cells (default 0: none)")
    reg.add_argument("--min-cells", type=int, default=1, help="leave out (and count) regions "
                     "of fewer heatmap cells (default 1: keep all)")
    reg.add_argument("--roi", type=Path, default=None,
                     help="numbers per region of interest too: GeoJSON of polygons in level-0 "
                          "px (a row per feature) or a mask image (see run --roi)")
    reg.add_argument("--out", type=Path, default=None,
                     help="output folder (default: the heatmap's folder)")

    ov = sub.add_parser("overlap", help="the overlap-averaged map of a heatmap written by 'run' "
                                        "(each cell the mean of the patches over it) as a TIFF")
    ov.add_argument("heatmap", type=Path, help="heatmap .npz, .ome.tif or .ome.zarr written by "
                     "'run'")
    ov.add_argument("--out", type=Path, default=None,
                    help="output folder (default: the heatmap's folder)")

    demo = sub.add_parser("demo", help="the IHC sample through 'dab', then the generated slide "
                                       "through 'tissue'; opens napari when there is a display")
    demo.add_argument("--out", type=Path, default=Path("patchheat-demo"),
                      help="output folder (default ./patchheat-demo)")
    demo.add_argument("--no-viewer", action="store_true", help="do not open napari")

    op = sub.add_parser("open", help="open napari with a slide, the PatchHeat widget and heatmaps")
    op.add_argument("slide", type=_slide_arg, nargs="?", help="slide, URL or session to open")
    op.add_argument("--heatmap", type=Path, action="append", default=[],
                    help="heatmap .npz, .ome.tif or .ome.zarr written by 'patchheat run' "
                         "(repeatable)")

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
                   help="comma-separated: npz, ometiff, omezarr (OME-Zarr folder), "
                        "slide_raster, png, csv, csv_wsinfer (WSInfer's columns), geojson "
                        "(default npz)")
    p.add_argument("--positive-threshold", type=float, default=None,
                   help="GeoJSON: classify a one-output model's tiles whose value is at or "
                        "above this (default: the model card's; none: no tile is classified)")
    p.add_argument("--min-probability", type=float, default=None,
                   help="GeoJSON: leave a multi-class model's tiles unclassified where their "
                        "top class's value is below this (default: each gets its top class)")


def _add_storage_option(p: argparse.ArgumentParser) -> None:
    """``--storage-options JSON`` (``run`` and ``batch``): fsspec's options for URLs."""
    p.add_argument("--storage-options", default=None, metavar="JSON",
                   help="fsspec options for slide URLs, a JSON object, e.g. "
                        "'{\"client_kwargs\": {\"endpoint_url\": \"http://minio:9000\"}}' "
                        "(credentials are better left in the environment: AWS_ACCESS_KEY_ID, "
                        "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...)")


def _slide_arg(text: str) -> Path | str:
    """A slide argument: a URL ('s3://...') as it is, a local path as a Path."""
    return text if "://" in text else Path(text)


def storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The parsed ``--storage-options`` (a JSON object), or None; a UserError otherwise."""
    from .files import JSONError, loads_json

    text = getattr(args, "storage_options", None)
    if text is None:
        return None
    try:
        value = loads_json(text)
    except JSONError as exc:
        raise UserError(f"--storage-options is not valid JSON ({exc}): give a JSON object, "
                        "e.g. '{\"anon\": true}'.") from None
    if not isinstance(value, dict):
        raise UserError(f"--storage-options is a JSON {type(value).__name__}, not an object: "
                        "give a JSON object, e.g. '{\"anon\": true}'.")
    return value


def _add_option(p: Any, f: dataclasses.Field[Any]) -> None:
    """The flag of RunOptions field ``f``, from its metadata (see options.py)."""
    kind, help_text = f.metadata["kind"], f.metadata["help"]
    flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    if kind == "switch":
        if f.default is None:  # on, off, or unsaid (the model card's)
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
            return
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


def job_outputs(args: argparse.Namespace) -> JobOutputs:
    """The JobOutputs of parsed ``patchheat run`` or ``batch`` arguments."""
    return JobOutputs(tuple(args.format), args.mpp, args.positive_threshold,
                      args.min_probability)


def open_viewer(slide: Path | str | None, heatmaps: Sequence[Path]) -> int:
    """napari with ``slide`` (path, URL or session), the dock and heatmaps; bad files first."""
    from .analysis.heatmap_files import read_heatmap_file

    # a file, or a folder (DICOM, OME-Zarr); a URL is checked when it opens
    if isinstance(slide, Path) and not slide.exists():
        raise UserError(f"{slide} does not exist: give a slide's path.")
    for path in heatmaps:
        if not (path.is_file() or path.suffix.lower() == ".zarr" and path.is_dir()):
            raise UserError(f"{path} does not exist or is not a file: give a file's path (or "
                            "an OME-Zarr folder's).")
    loaded = [read_heatmap_file(path) for path in heatmaps]
    import napari

    from ._qt.session_io import open_in_viewer
    from ._reader import heatmap_layer_data

    viewer = napari.Viewer(title="napari-patchheat")
    if slide is not None:
        layers = open_in_viewer(viewer, slide)
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


class BatchLine:
    """A one-line progress bar on stderr: slides finished (failed), patches, patches/s."""

    def __init__(self, stream: Any, every_s: float):
        self.stream, self.every_s, self.last = stream, every_s, 0.0

    def __call__(self, p: BatchProgress) -> None:
        now = time.monotonic()
        slides = len(p.manifest.rows)
        if now - self.last < self.every_s and p.finished < slides:
            return
        self.last = now
        done, total = p.patches
        failed = p.manifest.count("failed")
        self.stream.write(
            f"\rslides {bar(p.finished, slides)} {p.finished}/{slides}"
            f"{f' ({failed} failed)' if failed else ''}, patches {done:,}/{total:,} "
            f"{p.patches_per_s:6.1f} p/s ")
        self.stream.flush()


def parse_resources(text: str | None) -> dict[str, float] | None:
    """'GPU=1,MEMORY=8e9' -> {'GPU': 1.0, 'MEMORY': 8e9}; None or '' -> None."""
    if not text:
        return None
    try:
        pairs = (part.split("=") for part in text.split(",") if part.strip())
        return {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise ValueError(f"resources {text!r} must be NAME=AMOUNT pairs, e.g. GPU=1.") from None


def batch_command(args: argparse.Namespace) -> int:
    """``patchheat batch``: run the slides of ``args`` and print the manifest's summary; exit
    code 1 when a slide failed."""
    from .batch import cluster_client, in_process_pays, run_batch
    from .manifest import read_slide_list

    options, storage = run_options(args), storage_options(args)
    slides = list(args.slides)
    if args.slide_list is not None:
        slides += read_slide_list(args.slide_list)
    if not slides:
        raise UserError("no slides: give slide files, or --list FILE.")
    resources = parse_resources(args.resources)
    with cluster_client(args.scheduler, args.workers, args.threads_per_worker, resources,
                        in_process=lambda: in_process_pays(slides, options.level, storage)
                        ) as client:
        if client.dashboard_link:
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
        manifest = run_batch(slides, args.model, options, args.out, client,
                             outputs=job_outputs(args), split_px=args.split_px,
                             retries=args.retries, resources=resources,
                             on_progress=BatchLine(sys.stderr, PROGRESS_EVERY_S),
                             storage_options=storage)
    print(file=sys.stderr)
    for row in manifest.rows:
        if row.status == "failed":
            print(f"failed: {row.slide}: {row.error}", file=sys.stderr)
    print(f"{manifest.summary}; manifest: {Path(args.out) / 'batch.csv'}")
    return EXIT_FAILED if manifest.count("failed") else 0


def _command(args: argparse.Namespace) -> int:
    """Run the parsed command."""
    if args.command == "run":
        return run_jobs(args.slides, args.model, args.out, job_outputs(args), run_options(args),
                        storage_options=storage_options(args))
    if args.command == "batch":
        return batch_command(args)
    if args.command == "regions":
        files = regions_job(args.heatmap, args.class_name, args.threshold, smooth=args.smooth,
                            roi=args.roi, out=args.out, min_cells=args.min_cells)
        for fmt, path in files.items():
            print(f"{fmt}: {path}")
        return 0
    if args.command == "overlap":
        print(f"overlap: {overlap_job(args.heatmap, args.out)}")
        return 0
    if args.command == "demo":
        return demo_job(args.out, not args.no_viewer)
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
        code = exit_code(exc)  # a failed run (1), bad arguments or unreadable files (2)
        if code is None:
            raise
        say(f"patchheat: error: {exc}")
        return code
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
