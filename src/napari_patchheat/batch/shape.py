"""The local cluster's shape: how many workers, of how many threads, in the command's own
process or in worker processes, from the cores and, on few cores, from how much the batch reads.

On few cores the choice is between the command's own process, whose worker runs one slide at a
time on all the cores and pays no second TensorFlow import, and one worker process of one thread
per core, which runs the slides side by side: threads of one process share the cores worse than
processes do, so past a few seconds of work the processes win back their start
(docs/benchmarks.md: *Start-up*, *The dock's local cluster*). No Qt, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

# up to this many cores, a batch of little work runs in the command's own process (one worker,
# one slide at a time on all the cores, as `patchheat run` does; two at once in one process
# only contend for the cores and the GIL), a larger one in worker processes of one thread
FEW_CORES = 2
# a few-core batch of at least this many level pixels runs in worker processes: with `dab` on
# 2 cores, 4 slides of 16384 x 16384 px (1.1 Gpx) took 0.93-1.07 of `patchheat run` over them
# in the command's process and 1.02-1.23 in 2 worker processes; 12 (3.2 Gpx), 1.01-1.03 and
# 0.83-0.90
PROCESSES_MIN_PX = 2e9
SIZED_SLIDES = 8  # slides opened to size a batch; the others count as their mean
# a worker in this process has no dashboard, so nobody reads dask's statistical profiles of it
# (sampling every thread's stack each 10 ms took 0.4-0.6 s of a 7 s batch on 2 cores), and its
# event loop's housekeeping may tick slower
IN_PROCESS_CONFIG = {"distributed.worker.profile.enabled": False,
                     "distributed.admin.tick.interval": "1s",
                     "distributed.admin.system-monitor.interval": "1s",
                     "distributed.worker.memory.monitor-interval": "1s"}
WORKER_THREADS = 2  # past FEW_CORES: threads of each worker process (a run reads ahead on one)


class ClusterShape(NamedTuple):
    """A local cluster's size: worker count, threads of each (tasks at a time), processes or
    this process, and the threads each task's run may keep busy (WorkerSettings)."""

    workers: int
    threads: int
    processes: bool
    task_threads: int


def local_cluster_shape(cores: int, workers: int | None = None, threads: int | None = None,
                        *, in_process: bool | Callable[[], bool] = True) -> ClusterShape:
    """A local cluster for ``cores`` CPUs, with the ``workers`` and ``threads`` of each given:
    on up to FEW_CORES cores and neither given, one worker in this process running one task at
    a time on all ``cores`` where ``in_process`` allows it (a question, such as
    :func:`in_process_pays`, asked only then), else a
    worker process of one thread per core (threads of one process share the cores worse than
    processes do: a slide at a time on both cores took 1.4-1.6x as long, benchmarks.md); on
    more, worker processes (WORKER_THREADS threads each unless given), as many as the cores
    hold, each task's run on its worker's threads."""
    if workers is None and threads is None:
        if cores <= FEW_CORES:
            allowed = in_process() if callable(in_process) else in_process
            return ClusterShape(1, 1, False, cores) if allowed else ClusterShape(
                cores, 1, True, 1)
        threads = WORKER_THREADS
    if workers is None:
        workers = max(1, cores // (threads or 1))
    if threads is None:
        threads = max(1, cores // workers)
    return ClusterShape(workers, threads, True, threads)


def batch_pixels(slides: Sequence[str], level: int,
                 storage_options: Mapping[str, Any] | None = None) -> float:
    """Pixels of ``level`` over all ``slides``, estimated: the first SIZED_SLIDES that open
    and have that level, their mean for each of the others; 0 where none does."""
    from ..slide import open_slide

    sizes = []
    for path in slides[:SIZED_SLIDES]:
        try:
            with open_slide(path, storage_options=storage_options) as slide:
                if level < len(slide.levels):
                    height, width = slide.levels[level].shape[:2]
                    sizes.append(height * width)
        except Exception:  # an unreadable slide fails in its own row later
            continue
    return sum(sizes) / len(sizes) * len(slides) if sizes else 0.0


def in_process_pays(slides: Sequence[str], level: int,
                    storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether a batch of ``slides`` at ``level`` runs faster in the command's own process than
    in worker processes on few cores (:func:`local_cluster_shape` asks it there only): fewer
    slides than FEW_CORES (worker processes could not run them side by side), or under
    PROCESSES_MIN_PX level pixels (:func:`batch_pixels`)."""
    return len(slides) < FEW_CORES or batch_pixels(
        slides, level, storage_options) < PROCESSES_MIN_PX
