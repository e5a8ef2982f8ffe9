"""Where distributed work runs: a Dask client for a local cluster, a scheduler address, or a
dask-jobqueue cluster (SLURM, PBS).

``connect("local", workers=2)`` starts a ``LocalCluster`` of worker processes on loopback (the
embedded default); ``connect("tcp://host:8786")`` joins a running scheduler;
``connect("slurm", workers=8)`` / ``connect("pbs", ...)`` ask dask-jobqueue for batch jobs,
configured as dask-jobqueue documents (``~/.config/dask/jobqueue.yaml``: cores, memory,
queue...). Workers must see the same files (notebooks, output folder) and have the workbench
installed: on a cluster, a shared file system and the same environment.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

JOBQUEUE_KINDS = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}


def _local_cluster(workers: int, threads_per_worker: int):
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                        processes=True, host="127.0.0.1", dashboard_address=None)


def _jobqueue_cluster(kind: str, workers: int, options: dict[str, Any]):
    try:
        import dask_jobqueue
    except ImportError:
        raise ImportError(f"scheduler '{kind}' needs dask-jobqueue: pip install dask-jobqueue "
                          "(or the workbench's 'cluster' extra)") from None
    cluster = getattr(dask_jobqueue, JOBQUEUE_KINDS[kind])(**options)
    cluster.scale(workers)
    return cluster


@contextmanager
def connect(scheduler: str | Any = "local", workers: int = 2, threads_per_worker: int = 1,
            **cluster_options: Any) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler``, closed (with any cluster it started) on exit.

    ``scheduler``: ``"local"`` (a ``LocalCluster`` of ``workers`` processes on 127.0.0.1),
    ``"slurm"`` or ``"pbs"`` (dask-jobqueue, ``cluster_options`` passed on), a scheduler
    address such as ``"tcp://10.0.0.5:8786"``, or an existing ``Client`` (used as it is, not
    closed).
    """
    from distributed import Client

    if isinstance(scheduler, Client):
        yield scheduler
        return
    if not isinstance(scheduler, str) or not scheduler:
        raise ValueError(f"scheduler must be 'local', 'slurm', 'pbs', an address like "
                         f"'tcp://host:8786' or a distributed.Client, got {scheduler!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    cluster = None
    if scheduler == "local":
        cluster = _local_cluster(workers, threads_per_worker)
    elif scheduler in JOBQUEUE_KINDS:
        cluster = _jobqueue_cluster(scheduler, workers, cluster_options)
    elif "://" not in scheduler and ":" not in scheduler:
        raise ValueError(f"scheduler {scheduler!r} is neither 'local', 'slurm', 'pbs' nor an "
                         "address like 'tcp://host:8786'")
    client = Client(cluster if cluster is not None else scheduler)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
