"""Universe sweeps on the Dask cluster: per-symbol tables aggregated, PBO and deflated Sharpe over every
symbol x combination trial; cross-sectional rotation swept with each worker loading the universe."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spark_research.backtest.rotation import MomentumRotation, run_rotation, sweep_rotation
from spark_research.data import BarStore, generate_bars
from spark_research.optimizer import Optimizer, SweepSpec
from spark_research.optimizer.spec import SpecError
from spark_research.optimizer.universe import universe_sweep
from tests.optimizer.conftest import wait_workers

SYMBOLS = [f"U{i:02d}USDT" for i in range(8)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = BarStore(tmp_path_factory.mktemp("universe") / "store")
    for i, sym in enumerate(SYMBOLS):
        s.write_bars(generate_bars(sym, n=6_000, seed=300 + i, price=40.0 + i))
    return s


@pytest.fixture
def opt(dask_client, store, sweep_store):
    wait_workers(dask_client, 2)
    o = Optimizer(dask_client, store=sweep_store, bar_store=store, persist=False)
    yield o
    o.close()


def test_universe_sweep_aggregates_every_symbol_and_reports_overfitting_over_all_trials(opt):
    spec = SweepSpec(strategy="sma_cross", symbols=SYMBOLS, values={"fast": [5, 10, 20], "slow": [50, 100]},
                     check=None)
    res = universe_sweep(opt, spec, n_periods=8, cscv_splits=4, progress=False)
    assert len(res.table) == len(SYMBOLS) * 6 and sorted(res.table["symbol"].unique()) == SYMBOLS
    summary = res.summary()
    assert len(summary) == 6 and (summary["symbols"] == len(SYMBOLS)).all()
    means = res.table.groupby(["fast", "slow"])["sharpe"].mean()
    assert summary["sharpe_mean"].iloc[0] == pytest.approx(means.max())
    assert res.returns.shape == (8, len(SYMBOLS) * 6)
    rep = res.overfitting
    assert rep["trials"] == 48 and 0.0 <= rep["pbo"] <= 1.0 and 0.0 <= rep["dsr"] <= 1.0
    assert rep["best_trial"]["symbol"] in SYMBOLS
    # the trial columns line up with the table: the best trial's final value is that row's total return
    best = rep["best_trial"]
    row = res.table[(res.table["symbol"] == best["symbol"]) & (res.table["fast"] == best["fast"])
                    & (res.table["slow"] == best["slow"])]
    assert len(row) == 1
    assert res.heatmap("fast", "slow") is not None


def test_universe_sweep_needs_symbols_the_store_has(opt):
    with pytest.raises(SpecError, match=r"NOPE"):
        universe_sweep(opt, SweepSpec(strategy="sma_cross", symbols=["U00USDT", "NOPE"],
                                      values={"fast": [5], "slow": [50]}, check=None), progress=False)


def test_rotation_sweeps_on_workers_that_load_the_universe_and_match_the_local_run(opt, store):
    table = sweep_rotation(opt, MomentumRotation, SYMBOLS, {"lookback": [60, 240], "top_k": [2, 4], "rebalance": [240]},
                           store=store, timeout=300)
    assert len(table) == 4 and table["sharpe"].is_monotonic_decreasing
    bars = {s: store.load_bars(s) for s in SYMBOLS}
    local = run_rotation(MomentumRotation, bars, {"lookback": 60, "top_k": 2, "rebalance": 240})
    row = table[(table["lookback"] == 60) & (table["top_k"] == 2)].iloc[0]
    for k in ("total_return", "sharpe", "max_drawdown", "trades", "rebalances"):
        assert row[k] == local.stats[k], k  # bit for bit, whichever worker ran it
