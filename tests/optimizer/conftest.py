"""Optimizer fixtures: one real Dask LocalCluster (2 worker processes) shared by every test here."""
from __future__ import annotations

import time

import pytest


def _warm_worker() -> bool:
    # import vectorbt and load the cached numba kernels (fused and Portfolio) once per process
    import pandas as pd

    from spark_research.data import generate_bars
    from spark_research.optimizer.fused import evaluate_fused

    bars = generate_bars("BTCUSDT", n=300, seed=1)
    evaluate_fused("sma_cross", bars, pd.DataFrame({"fast": [5], "slow": [20]}))
    evaluate_fused("rsi_reversion", bars, pd.DataFrame({"window": [14], "lower": [30], "upper": [70]}))
    evaluate_fused("donchian_breakout", bars, pd.DataFrame({"window": [20], "exit_window": [10]}))
    from spark_research.optimizer.generic import warm_generic

    warm_generic()
    from spark_research.backtest import run_backtest

    res = run_backtest("sma_cross", bars, {"fast": 5, "slow": 20})
    res.stats, res.equity  # noqa: B018  (compile the stats/value kernels)
    return True


def wait_workers(client, n: int, timeout: float = 60.0) -> None:
    """Block until ``n`` workers are connected (bounded in time)."""
    deadline = time.monotonic() + timeout
    while len(client.scheduler_info()["workers"]) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(client.scheduler_info()['workers'])} of {n} workers after {timeout}s")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def dask_client():
    """A ``distributed.Client`` on a LocalCluster of 2 single-threaded worker processes on 127.0.0.1."""
    from spark_research.optimizer.cluster import close_client, connect

    import threading

    local = threading.Thread(target=_warm_worker)  # warm this process while the workers warm up
    local.start()
    client = connect(n_workers=2)
    wait_workers(client, 2)
    client.run(_warm_worker)
    local.join()
    yield client
    close_client(client)


@pytest.fixture
def sweep_store(tmp_path):
    from spark_research.optimizer.store import SweepStore

    return SweepStore(tmp_path / "sweeps")


@pytest.fixture
def optimizer(dask_client, sweep_store):
    """An :class:`Optimizer` on the shared cluster, storing sweeps in a temporary directory."""
    from spark_research.optimizer.sweep import Optimizer

    opt = Optimizer(dask_client, store=sweep_store)
    yield opt
    for h in list(opt._handles.values()):
        h.cancel()
    opt.close()


@pytest.fixture(scope="session")
def bars_small():
    """Two symbols, 6,000 one-minute bars each (seeded)."""
    from spark_research.data import generate_bars

    return {s: generate_bars(s, n=6_000, seed=11) for s in ("BTCUSDT", "ETHUSDT")}
