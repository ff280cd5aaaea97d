"""The headless job: one slide, a model, run options and outputs -> files; several slides in
one process (``patchheat run A B ...``: :func:`run_jobs`); the demo; and the analyses of a
finished heatmap file (its regions, its overlap map).

What ``patchheat run`` and ``demo`` run in their process and what every ``patchheat batch``
task runs on a dask worker (batch/tasks.py): the same :class:`HeatmapRun`, the same files. Errors a
user can mend are a :class:`UserError` (one sentence). Only the standard library is imported
with this module (the CLI imports it), TensorFlow and the rest inside the functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .console import ProgressLine, import_tensorflow_quietly, say

if TYPE_CHECKING:
    from .export import ClassRule
    from .heatmap import Heatmap
    from .options import RunOptions


EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class UserError(Exception):
    """Bad arguments or input: printed as one line, exit code 2."""


def exit_code(exc: BaseException) -> int | None:
    """The command's exit code for ``exc``: EXIT_FAILED for a failed run (RunError),
    EXIT_BAD_INPUT for bad arguments or unreadable files, None for anything else (a bug)."""
    from .inference import RunError

    if isinstance(exc, RunError):
        return EXIT_FAILED
    if isinstance(exc, (UserError, ValueError, OSError)):
        return EXIT_BAD_INPUT
    return None


def error_text(exc: BaseException) -> str:
    """One line for a slide that failed: the error's text, with its type's name where it is
    not one a user can mend (a bug's ``TypeError: ...``)."""
    from .messages import first_line

    text = first_line(exc)  # the type's name where it has no text
    if not isinstance(exc, (UserError, ValueError, OSError, RuntimeError)) and str(exc).strip():
        text = f"{type(exc).__name__}: {text}"
    return text


@dataclass(frozen=True)
class JobOutputs:
    """What a job writes and how it picks its level: ``formats`` ("npz" and export.FORMATS),
    ``mpp`` (µm/px: the level closest to it, instead of the options' level) and the GeoJSON
    tiles' class rule (``positive_threshold``, else the model card's; ``min_probability``)."""

    formats: tuple[str, ...] = ("npz",)
    mpp: float | None = None
    positive_threshold: float | None = None
    min_probability: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))

    def class_rule(self, model: Any) -> ClassRule:
        """The export.ClassRule of a run of ``model`` (a PatchModel): ``positive_threshold``,
        else its card's; a ValueError where a threshold does not fit the model's classes."""
        from .export import ClassRule

        threshold = self.positive_threshold
        if threshold is None:  # the card's (models other than PatchModels have none)
            threshold = getattr(model, "positive_threshold", None)
        return ClassRule(tuple(model.class_names), threshold, self.min_probability)


def run_job(slide: Path | str, model: Any, out: Path, outputs: JobOutputs = JobOutputs(),
            options: RunOptions | None = None, *, quiet: bool = False,
            compute: Callable[[Any], Iterable[Any]] | None = None,
            storage_options: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Compute a heatmap of ``slide`` (a path, or a URL read with fsspec's
    ``storage_options``) with ``model`` (a name, a path or a loaded model) and write it to
    ``out`` as ``outputs`` say; returns format -> file.

    The class rule is checked before the run and kept in the heatmap's extra. ``compute(run)``,
    when given, yields the HeatmapRun's Progress in place of ``run.run()`` (``patchheat batch``
    reports progress to its client, or computes regions on a cluster). ``quiet``: no lines on
    stderr (a batch task).
    """
    from .options import RunOptions
    from .slide.location import scheme_of

    options = options if options is not None else RunOptions()
    if not scheme_of(slide) and not Path(slide).exists():  # a URL is open_slide's to check
        raise UserError(f"{slide} does not exist: give the path of a slide file.")
    made = _prepare_out(out)
    try:
        return _run_and_write(slide, model, out, outputs, options, quiet, compute,
                              storage_options)
    except BaseException:
        if made:  # a folder this job made and left empty (bad input, nothing kept) goes
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _prepare_out(out: Path) -> bool:
    """Make and probe the output folder before anything runs (a bad --out costs nothing);
    whether it was made now. A UserError where it cannot be written."""
    from .files import WriteError, prepare_output_folder

    made = not os.path.isdir(out)  # (never raises: a name too long is prepare's to say)
    try:
        prepare_output_folder(out)
    except WriteError as exc:
        raise UserError(f"cannot write the output folder {out}: {exc.why}; choose another "
                        "--out.") from exc
    return made


def run_jobs(slides: Sequence[Path | str], model: Any, out: Path,
             outputs: JobOutputs = JobOutputs(), options: RunOptions | None = None, *,
             storage_options: Mapping[str, Any] | None = None) -> int:
    """``patchheat run``: :func:`run_job` on each of ``slides`` in this process (TensorFlow
    imported and the model loaded once), printing each one's files; returns the exit code.

    Each slide writes the files a run of it alone writes (``<slide stem>.<model>.<format>``):
    slides whose stems are one (``a/x.svs``, ``b/x.ndpi``) are refused before anything runs,
    the same file given twice runs once. A slide that fails is a line on stderr and the others
    go on; the code is then the highest of the failed slides' (1: its run failed, 2: bad
    input), with a summary line. A bad model, ``--out`` or Ctrl-C stops the whole command.
    """
    from .files import safe_name
    from .heatmap import slide_stem
    from .options import RunOptions
    from .runner import ModelCache, RunSpec
    from .slide.location import same_file_key, source_name

    options = options if options is not None else RunOptions()
    unique = list({same_file_key(s): s for s in reversed(slides)}.values())[::-1]
    stems: dict[str, Path | str] = {}
    for s in unique:
        stem = safe_name(slide_stem(source_name(s)))
        if stem in stems:
            raise UserError(f"{stems[stem]} and {s} would write the same files ({stem}.*): "
                            "run them with different --out folders.")
        stems[stem] = s
    made = False
    if len(unique) > 1:
        import_tensorflow_quietly()
        if isinstance(model, (str, Path)):  # a bad model would stop every slide: at once
            model = ModelCache().get(RunSpec("", str(model), options))
        made = _prepare_out(out)
    failed: list[tuple[str, int]] = []
    for s in unique:
        try:
            files = run_job(s, model, out, outputs, options, storage_options=storage_options)
        except Exception as exc:
            if len(unique) == 1:
                raise
            text, name = error_text(exc), source_name(s)
            say(f"patchheat: error: {text if name in text else f'{name}: {text}'}")
            failed.append((name, exit_code(exc) or EXIT_FAILED))
            continue
        for fmt, path in files.items():
            print(f"{fmt}: {path}", flush=True)
    if failed:
        say(f"patchheat: {len(unique) - len(failed)} of {len(unique)} slides done; failed: "
            f"{', '.join(name for name, _ in failed)}")
    if made and len(failed) == len(unique):  # a folder made for nothing goes
        with contextlib.suppress(OSError):
            out.rmdir()
    return max((code for _, code in failed), default=0)


def _run_and_write(slide: Path | str, model: Any, out: Path, outputs: JobOutputs,
                   options: RunOptions, quiet: bool,
                   compute: Callable[[Any], Iterable[Any]] | None,
                   storage_options: Mapping[str, Any] | None) -> dict[str, Path]:
    """:func:`run_job` once its output folder is there."""
    from .files import safe_name
    from .heatmap import slide_stem
    from .inference import HeatmapRun, RunError
    from .models import load_model
    from .slide import open_slide
    from .slide.coarse import needs_build
    from .slide.location import source_name

    with open_slide(slide, storage_options=storage_options) as s:
        if outputs.mpp is not None:
            options = dataclasses.replace(options, level=s.level_for_mpp(outputs.mpp))
        import_tensorflow_quietly()
        run_model: Any = model
        if _reads_computed_levels(s, model, options, outputs.formats, quiet) and needs_build(s):
            if isinstance(model, (str, Path)):  # loaded first: a bad model stops the run at
                run_model = load_model(model, resize=options.resize,  # once, not after a build
                                       mixed_precision=options.mixed_precision)
            build_zoomed_out_views(s, quiet)
        run = HeatmapRun(s, run_model, options)
        rule = outputs.class_rule(run.model)
        if not quiet:
            _describe_run(slide, run)
            _warn_if_fluorescence(run.model, s)
        # a card's name: any text
        stem = safe_name(f"{slide_stem(source_name(slide))}.{run.model.name}")
        bar = ProgressLine(run.model.name)
        try:
            for p in run.run() if compute is None else compute(run):
                if not quiet:
                    bar(p)
        except (RunError, KeyboardInterrupt) as exc:  # keep what was computed
            partial = with_class_rule(run.result(), rule)
            if partial.n_computed:
                try:
                    write_outputs(partial, out, f"{stem}.partial", ("npz",), s)
                    say(f"kept {partial.n_computed:,} computed patches in "
                        f"{out / (stem + '.partial.npz')}")
                except (OSError, UserError) as write_error:  # a full disk: still exit as asked
                    say(f"patchheat: could not keep the computed patches in {out}: "
                        f"{write_error}")
            raise exc
        written = write_outputs(with_class_rule(run.result(), rule), out, stem,
                                outputs.formats, s)
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
    from .slide.coarse import build_and_use_levels, unbuilt_warning

    label = f"building the zoomed-out views of {s.path.name} once"

    def progress(done: int, total: int) -> None:
        if not quiet:
            sys.stderr.write(f"\r{label}: {done / max(total, 1):4.0%} ")
            ProgressLine.mid_line = done < total
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()

    try:
        build_and_use_levels(s, progress=progress)
    except OSError as exc:
        say(f"patchheat: warning: {unbuilt_warning(s.path, exc)}")


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


def _describe_run(slide: Path | str, run: Any) -> None:
    """One line on stderr: the level, its grid and how many patches the run computes."""
    from .slide.location import source_name

    g = run.grid
    print(f"{source_name(slide)}: level {run.level} {g.height} x {g.width} px (h x w), grid "
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


def demo_job(out: Path, viewer: bool) -> int:
    """``patchheat demo``, the README's main job: the IHC sample through 'dab', the generated
    slide through 'tissue', then napari (a fresh process) where there is a display."""
    import subprocess

    from .options import RunOptions
    from .samples import SAMPLE_MPP_UM, ihc_sample_path, sample_slide_path

    ihc = ihc_sample_path()
    files = run_job(ihc, "dab", out, JobOutputs(("npz", "png", "csv", "geojson", "ometiff")),
                    RunOptions(size=64, stride=32))
    print(f"IHC sample through 'dab': {', '.join(str(p) for p in files.values())}")
    files2 = run_job(sample_slide_path(), "tissue", out,
                     JobOutputs(("npz", "png", "geojson"), mpp=8 * SAMPLE_MPP_UM),
                     RunOptions(size=128, stride=128, tissue_threshold=0.05))
    print(f"generated slide through 'tissue': {', '.join(str(p) for p in files2.values())}")
    if viewer and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return subprocess.call([sys.executable, "-m", "napari_patchheat.cli", "open", str(ihc),
                                "--heatmap", str(files["npz"])])
    return 0


def overlap_job(path: Path, out: Path | None = None) -> Path:
    """Write the overlap-averaged map of a heatmap file as ``<stem>.overlap.tif``."""
    from .analysis import heatmap_file_stem, overlap_map, read_heatmap_file, write_overlap_tiff
    from .files import ensure_folder

    overlap = overlap_map(read_heatmap_file(path))
    folder = ensure_folder(out if out is not None else path.parent)
    return write_overlap_tiff(overlap, folder / f"{heatmap_file_stem(path)}.overlap.tif")


def regions_job(path: Path, class_name: str | None, threshold: float, *, smooth: float = 0.0,
                roi: Path | None = None, out: Path | None = None,
                min_cells: int = 1) -> dict[str, Path]:
    """Threshold a heatmap file into regions of at least ``min_cells`` cells, write their
    report (analysis/report.py) next to it or in ``out`` and print its numbers. Returns the
    files."""
    from .analysis import (
        format_stats,
        heatmap_file_stem,
        read_heatmap_file,
        region_report,
        write_region_report,
    )

    heatmap = read_heatmap_file(path)
    if class_name is None and len(heatmap.class_names) > 1:
        raise UserError(f"this heatmap has classes {', '.join(heatmap.class_names)}: choose "
                        "one with --class.")
    report = region_report(heatmap, class_name if class_name is not None else 0, threshold,
                           smooth=smooth, roi=roi, min_cells=min_cells)
    files = write_region_report(report, out if out is not None else path.parent,
                                heatmap_file_stem(path))
    print(format_stats(report.rows, report.class_name))
    print(report.summary())
    return files
