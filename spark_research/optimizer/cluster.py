"""The Dask cluster sweeps run on: an existing scheduler, or a LocalCluster of processes.

Example::

    >>> client = connect(n_workers=1)          # doctest: +SKIP
    >>> client.scheduler_info()["address"]     # doctest: +SKIP
    'tcp://127.0.0.1:...'
"""
from __future__ import annotations

import os

from spark_research.config import settings


def connect(address: str | None = None, *, n_workers: int | None = None, threads_per_worker: int = 1,
            memory_limit: str = "auto", silence_logs: bool = True):
    """A ``distributed.Client``.

    ``address`` (or ``SPARK_DASK_SCHEDULER``) names a running scheduler
    (``tcp://host:8786``); without one a ``LocalCluster`` of ``n_workers`` single-threaded
    worker processes (default: one per core) is started on 127.0.0.1 and closed with the client.
    """
    from distributed import Client, LocalCluster

    address = address or settings().dask_scheduler
    if address:
        return Client(address, timeout="10s")
    import logging

    cluster = LocalCluster(
        n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=threads_per_worker, processes=True,
        host="127.0.0.1", dashboard_address="127.0.0.1:0", memory_limit=memory_limit,
        silence_logs=logging.ERROR if silence_logs else logging.INFO,
    )
    client = Client(cluster)
    client._spark_owns_cluster = cluster  # closed together with the client by close_client
    return client


def close_client(client) -> None:
    """Close ``client`` and the LocalCluster :func:`connect` started for it (if any)."""
    cluster = getattr(client, "_spark_owns_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
