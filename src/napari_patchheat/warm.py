"""A model made ready before Run: loaded, traced and run once on a batch of the run's shape.

The worker (runner.py) takes a :class:`WarmSpec` as a job between runs and answers a
:class:`Warmed`: the first batch of the next run of that model, patch size and batch size
then pays neither the model's loading nor TensorFlow's tracing and compiling of its forward
pass (~0.5 s for ``dab``, seconds for a CNN). A warm-up that a newer job overtakes stops at its
next step. No TensorFlow at import: :func:`warm_model` runs in the worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .messages import first_line
from .models.patch_model import as_size
from .options import DEFAULT_BATCH_SIZE, RunOptions

WARM_PIXEL = 200  # the grey of the warm-up batch: values do not matter, shapes and dtype do
SUPERSEDED = "a newer job came first"  # Warmed.message of a warm-up stopped for a newer job


@dataclass(frozen=True)
class WarmSpec:
    """A model to warm, picklable like a RunSpec: a built-in name or a file path, and the
    run's options (patch size, batch size, padding, resize, precision are what count)."""

    model: str
    options: RunOptions

    @classmethod
    def of(cls, model: str, options: RunOptions) -> WarmSpec:
        """The warm-up of a run of ``model`` with ``options``: only what shapes its batches is
        kept (a small message: no region, no cache folder)."""
        o = options
        return cls(model, RunOptions(size=o.size, batch_size=o.batch_size, padding=o.padding,
                                     resize=o.resize, mixed_precision=o.mixed_precision))

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes two warm-ups the same: the model and the shape of its batches."""
        o = self.options
        return self.model, o.size, o.batch_size, o.padding, o.resize, o.mixed_precision


@dataclass(frozen=True)
class Warmed:
    """A warm-up's report: its spec's ``key``, the ``seconds`` it took in the worker, ``traces``
    (how often the model's forward pass has been traced so far: a run after which it has not
    grown paid no trace) and ``message``, why the model is not warm ('' when it is)."""

    key: tuple[Any, ...]
    seconds: float
    traces: int
    message: str = ""

    @property
    def warm(self) -> bool:
        """True when the model is loaded and traced for the key's batches."""
        return not self.message


def traces(model: Any) -> int:
    """How many times ``model``'s compiled forward pass was traced (0 for a model without one)."""
    compiled = getattr(model, "_compiled", None)
    count = getattr(compiled, "experimental_get_tracing_count", None)
    return int(count()) if count is not None else 0


def warm_model(spec: WarmSpec, get_model: Callable[[WarmSpec], Any],
               superseded: Callable[[], bool]) -> Warmed:
    """Import the run's modules, take the model from ``get_model`` (a worker's model cache),
    then predict one batch of ``spec``'s shape (and, for a model that counts only in-level
    samples on SAME padding, one with an inside mask, as edge batches are). Stops early, with
    :data:`SUPERSEDED`, when ``superseded()``; any error is the report's one-line message."""
    t0, model = time.perf_counter(), None

    def report(message: str = "") -> Warmed:
        return Warmed(spec.key, time.perf_counter() - t0, traces(model), message)

    try:
        _first_time_costs()
        if superseded():
            return report(SUPERSEDED)
        model = get_model(spec)
        size = spec.options.size or model.input_size
        if size is None:  # a model of any size and no patch size: nothing to trace yet
            return report("no patch size to warm the model for")
        h, w = as_size(size)
        for n in _batch_sizes(spec.options):
            batch = np.full((n, h, w, model.channels), WARM_PIXEL, np.uint8)
            for inside in _inside_masks(model, spec.options, n, h, w):
                if superseded():
                    return report(SUPERSEDED)
                model.predict(batch, *inside)
    except Exception as exc:  # the run will say the same, as a sentence: keep the first line
        return report(first_line(exc))
    return report()


def serve_warm_up(spec: WarmSpec, job_id: int, latest: Any, reports: Any,
                  get_model: Callable[[WarmSpec], Any]) -> None:
    """In a worker: warm ``spec`` (job ``job_id``) unless a newer job came (``latest``: the
    newest job's id, a shared value), and put its report on the ``reports`` queue."""

    def overtaken() -> bool:
        return bool(latest.value != job_id)

    if not overtaken():
        reports.put(warm_model(spec, get_model, overtaken))


def _first_time_costs() -> None:
    """Pay what a worker's first run pays before its model (~0.15 s here): the run's modules
    (slide readers, tissue, cache) and dask's first compute (it imports distributed)."""
    import dask.array as da

    from . import cache, inference, tissue  # noqa: F401
    from .grid import as_numpy

    as_numpy(da.zeros(1))


def _batch_sizes(options: RunOptions) -> tuple[int, ...]:
    """The batch sizes a warm-up predicts: the run's; with none set, the default a run starts
    at, then twice it, so that the model's compiled pass is traced once more for any batch size
    (TensorFlow's ``reduce_retracing``) and the size the run chooses traces nothing."""
    if options.batch_size is not None:
        return (options.batch_size,)
    return DEFAULT_BATCH_SIZE, 2 * DEFAULT_BATCH_SIZE


def _inside_masks(model: Any, options: RunOptions, n: int, h: int,
                  w: int) -> list[tuple[Any, ...]]:
    """The inside-mask arguments a run passes the model: none; and on SAME padding, for a
    model with ``needs_inside_mask``, (rows, cols) masks (edge batches trace that form too)."""
    forms: list[tuple[Any, ...]] = [()]
    if options.padding == "SAME" and getattr(model, "needs_inside_mask", False):
        forms.append(((np.ones((n, h), bool), np.ones((n, w), bool)),))
    return forms
