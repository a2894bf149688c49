"""Sweep kernels loaded on every Dask worker as it joins, so no sweep's first step pays for them.

numba compiles a kernel on its first call (or loads it from the disk cache under
``NUMBA_CACHE_DIR``, ~0.5 s each; a cold compile takes 5-20 s). A worker started elsewhere
(``dask worker`` on another machine, or one that ``spark serve`` restarted) would pay that on
its first step, in the middle of a sweep. :class:`WarmKernels` is a Dask worker plugin: the
:class:`~spark_research.optimizer.sweep.Optimizer` registers it with its client, and the
scheduler runs it on every worker there is and on every worker that joins later.

The scheduler needs warming too: Dask's scheduler unpickles every task it is sent, so the first
task of a sweep makes it import the modules the task names (the optimizer's step functions, and
through them pandas and vectorbt: ~3.5 s on this kind of machine), while every worker waits.
:class:`WarmScheduler` imports them when it is registered; ``python -m spark_research.optimizer.service
scheduler`` imports them as it starts.

Example::

    >>> from distributed import Client                     # doctest: +SKIP
    >>> register_warm_plugin(Client("tcp://127.0.0.1:8786"))  # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import time

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

log = logging.getLogger(__name__)


def warm_sweep_kernels() -> float:
    """Run every fused sweep kernel (at each strategy's defaults) and the generic kernel once on tiny inputs;
    returns the seconds it took."""
    import numpy as np
    import pandas as pd

    from spark_research.backtest.strategies import STRATEGIES
    from spark_research.data.synthetic import generate_bars
    from spark_research.optimizer.fused import FUSED_PARAMS, evaluate_fused
    from spark_research.optimizer.generic import warm_generic

    t0 = time.perf_counter()
    bars = generate_bars("BTCUSDT", n=2_000, seed=1)
    for name, params in FUSED_PARAMS.items():
        combo = pd.DataFrame([{p: STRATEGIES[name].defaults()[p] for p in params}])
        evaluate_fused(name, bars, combo, checkpoints=np.array([999], dtype=np.int64))
    warm_generic()
    return time.perf_counter() - t0


#: Modules a sweep's tasks name by reference (unpickled by the scheduler on every sweep's first task).
TASK_MODULES = ("spark_research.optimizer.scheduler", "spark_research.optimizer.steps",
                "spark_research.optimizer.generic", "spark_research.optimizer.walkforward")


def import_task_modules() -> float:
    """Import :data:`TASK_MODULES` (the scheduler's side of warming); returns the seconds it took."""
    t0 = time.perf_counter()
    for name in TASK_MODULES:
        importlib.import_module(name)
    return time.perf_counter() - t0


class WarmScheduler(SchedulerPlugin):
    """Imports :data:`TASK_MODULES` on the scheduler when registered (off its event loop)."""

    name = "spark-warm-scheduler"

    async def start(self, scheduler) -> None:
        seconds = await asyncio.get_running_loop().run_in_executor(None, import_task_modules)
        log.info("sweep task modules imported on the scheduler in %.1f s", seconds)


class WarmKernels(WorkerPlugin):
    """Loads the sweep kernels on a worker's executor when the plugin is set up there."""

    name = "spark-warm-kernels"

    async def setup(self, worker) -> None:
        seconds = await asyncio.get_running_loop().run_in_executor(None, warm_sweep_kernels)
        log.info("sweep kernels ready on %s in %.1f s", worker.address, seconds)
        worker._spark_kernels_warm_s = seconds  # what kernels_warm() reports


def kernels_warm(dask_worker=None) -> float | None:
    """On a worker (``client.run(kernels_warm)``): seconds the plugin took, None while it has not finished."""
    return getattr(dask_worker, "_spark_kernels_warm_s", None)


def register_warm_plugin(client, *, wait: bool = False) -> None:
    """Register :class:`WarmKernels` with ``client``'s scheduler (every present and future worker runs it).

    ``wait=False`` registers from a background thread, so the caller does not wait for the
    workers to finish loading; a step that arrives meanwhile waits for numba's compile lock, not longer.
    """
    def register() -> None:
        for plugin in (WarmScheduler(), WarmKernels()):
            try:
                client.register_plugin(plugin, name=plugin.name)
            except Exception as exc:  # a closing client, a worker that left: the next sweep pays on demand
                log.warning("warming the cluster (%s) failed: %s", plugin.name, exc)

    if wait:
        register()
    else:
        threading.Thread(target=register, name="warm-workers", daemon=True).start()
