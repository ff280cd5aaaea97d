"""Many slides, and huge slides in regions, on dask.distributed: :func:`run_batch`.

One task per slide runs what ``patchheat run`` runs (the job layer's ``run_job``: the same
HeatmapRun, the same files) in a worker process that loads each model once; with ``split_px``
a slide's task splits it into region tasks and merges them bit for bit. ``client`` submits and
follows the tasks and writes the manifest; ``tasks`` is what runs on the workers. No
scheduler of our own: a LocalCluster of worker processes by default, else the caller's Client.
"""

from __future__ import annotations

from .client import (
    SCHEDULER_CONNECT_S,
    BatchProgress,
    TaskReport,
    cluster_client,
    connect_scheduler,
    plan,
    run_batch,
)
from .shape import ClusterShape, in_process_pays, local_cluster_shape
from .tasks import (
    BatchCancelled,
    BatchJob,
    WorkerSettings,
    compute_region,
    process_slide,
    reuse_freed_memory,
    run_order,
    split_order,
)

__all__ = [
    "SCHEDULER_CONNECT_S", "BatchCancelled", "BatchJob", "BatchProgress", "ClusterShape",
    "TaskReport", "WorkerSettings", "cluster_client", "compute_region", "connect_scheduler",
    "in_process_pays", "local_cluster_shape",
    "plan", "process_slide", "reuse_freed_memory", "run_batch", "run_order", "split_order",
]
