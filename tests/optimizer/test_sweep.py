"""Sweeps on the Dask cluster: same numbers as run_backtest, stored and reloadable, robust to worker death."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

from spark_research.backtest import run_backtest
from spark_research.optimizer.fused import FUSED_STATS
from spark_research.optimizer.scheduler import JobFailed, JobStatus
from spark_research.optimizer.spec import SpecError, SweepSpec, combinations
from spark_research.optimizer.sweep import SweepResult

from .conftest import wait_workers


def serial(spec: SweepSpec, bars: dict, combos: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for sym in spec.symbols:
        for params in combos.to_dict("records"):
            stats = run_backtest(spec.strategy, bars[sym], params, fees=spec.fees, slippage=spec.slippage,
                                 init_cash=spec.init_cash).stats
            rows.append({"symbol": sym, **params, **stats})
    return pd.DataFrame(rows)


def test_fused_sweep_equals_serial_run_backtest_loop(optimizer, bars_small):
    spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT", "ETHUSDT"], step_size=3,
                     values={"fast": [5, 10, 20], "slow": [20, 40, 80]})
    res = optimizer.run(spec, bars_small, progress=False, timeout=60)
    ref = serial(spec, bars_small, combinations(spec))
    assert len(res.table) == len(ref) == 16
    assert (res.table[["symbol", "fast", "slow"]].to_numpy() == ref[["symbol", "fast", "slow"]].to_numpy()).all()
    assert (res.table["trades"].to_numpy() == ref["trades"].to_numpy()).all()
    for stat in FUSED_STATS:
        np.testing.assert_allclose(res.table[stat], ref[stat], rtol=1e-9, atol=1e-9, err_msg=stat)


def test_generic_path_sweep_equals_serial_loop_on_every_stat(optimizer, bars_small):
    spec = SweepSpec(strategy="donchian_breakout", symbols=["ETHUSDT"], objective="win_rate", step_size=2,
                     values={"window": [20, 55], "exit_window": [10, 20]})
    res = optimizer.run(spec, bars_small, progress=False, timeout=60)
    ref = serial(spec, bars_small, combinations(spec))
    pd.testing.assert_frame_equal(res.table, ref, check_dtype=False, check_exact=False, rtol=1e-9, atol=1e-12)
    assert (res.table["trades"].to_numpy() == ref["trades"].to_numpy()).all()


def test_sweep_is_stored_and_reloads_by_id(optimizer, bars_small, sweep_store):
    spec = SweepSpec(strategy="rsi_reversion", symbols=["BTCUSDT"], space="random", n_samples=12, seed=4,
                     user="ana", values={"window": [7, 14, 21], "lower": [20, 30], "upper": [70, 80]})
    res = optimizer.run(spec, bars_small, progress=False, timeout=60)
    again = SweepResult.load(res.id, store=sweep_store)
    pd.testing.assert_frame_equal(again.table, res.table, check_exact=True)
    assert again.spec == spec and again.best_params == res.best_params
    status = sweep_store.load_status(res.id)
    assert status["status"] == "completed" and status["steps_done"] == status["steps_total"] > 0
    assert sweep_store.list()["id"].tolist() == [res.id]
    top = res.top(3)
    assert len(top) == 3 and top["objective"].is_monotonic_decreasing
    assert sweep_store.query("SELECT count(*) AS n FROM results")["n"].iloc[0] == 12


def test_seeded_sweeps_are_bit_for_bit_deterministic(optimizer, bars_small):
    spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], space="random", n_samples=15, seed=9, step_size=4)
    a = optimizer.run(spec, bars_small, progress=False, timeout=60).table
    b = optimizer.run(spec, bars_small, progress=False, timeout=60).table
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_tpe_sampler_is_seeded_and_respects_constraints(optimizer, bars_small):
    spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], space="tpe", n_samples=24, batch=8, seed=3,
                     values={"fast": list(range(2, 40, 2)), "slow": list(range(10, 200, 10))})
    a = optimizer.run(spec, bars_small, progress=False, timeout=60)
    b = optimizer.run(spec, bars_small, progress=False, timeout=60)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    assert 0 < len(a.table) <= 24 and (a.table["fast"] < a.table["slow"]).all()
    assert np.isfinite(a.ranked["objective"].iloc[0])


def test_bad_parameters_fail_the_sweep_with_the_error_not_others(optimizer, bars_small):
    good = optimizer.submit(SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], step_size=1,
                                      values={"fast": [5, 10], "slow": [30, 60]}), bars_small)
    bad = optimizer.submit(SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], step_size=1), bars_small,
                           combos=pd.DataFrame({"fast": [5, 50], "slow": [20, 20]}))
    with pytest.raises(JobFailed, match="violate the constraint"):
        bad.result(timeout=60)
    assert bad.info()["status"] == "failed" and "fast" in bad.info()["error"]
    assert len(good.result(timeout=60).table) == 4


def test_spec_errors_name_field_and_value():
    with pytest.raises(SpecError, match="objective.*'profit'"):
        SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], objective="profit")
    with pytest.raises(SpecError, match="priority.*'urgent'"):
        SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], priority="urgent")
    with pytest.raises(SpecError, match="fees.*1.5"):
        SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], fees=1.5)
    with pytest.raises(SpecError, match=r"unknown parameter\(s\) \['speed'\]"):
        SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], values={"speed": [1]})
    with pytest.raises(SpecError, match=r"values\['slow'\]: \[510\] outside the declared range \[5, 500\]"):
        SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], values={"slow": [500, 510]})
    with pytest.raises(SpecError, match=r"combos\[1\]"):
        combinations(SweepSpec(strategy="sma_cross", symbols=["X"], space="list",
                               combos=[{"fast": 5, "slow": 20}, {"fast": 30, "slow": 20}]))
    with pytest.raises(SpecError, match="no valid combination"):
        combinations(SweepSpec(strategy="sma_cross", symbols=["X"], values={"fast": [50], "slow": [20]}))


def test_progress_and_eta_are_reported_while_running(optimizer, bars_small):
    spec = SweepSpec(strategy="rsi_reversion", symbols=["BTCUSDT"], objective="win_rate", step_size=1,
                     values={"window": [5, 10, 14, 20, 30, 40], "lower": [30], "upper": [70]})
    h = optimizer.submit(spec, bars_small)
    seen, deadline = [], time.monotonic() + 120
    while not h.wait(0.02) and time.monotonic() < deadline:
        info = h.info()
        seen.append((info["status"], info["steps_done"], info["eta_s"]))
    assert h.result(timeout=5)
    assert any(st == "running" and 0 < done < 6 and eta is not None and eta > 0 for st, done, eta in seen), seen
    assert h.info()["progress"] == 1.0 and h.info()["status"] == "completed"


def test_killed_worker_mid_job_still_completes_with_identical_results(optimizer, dask_client):
    from spark_research.data import generate_bars

    bars = {"BTCUSDT": generate_bars("BTCUSDT", n=60_000, seed=2)}
    spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], step_size=25,
                     values={"fast": list(range(4, 40, 2)), "slow": list(range(50, 250, 10))})
    ref = optimizer.run(spec, bars, progress=False, timeout=120).table  # undisturbed run
    pids = dask_client.run(os.getpid)
    h = optimizer.submit(spec, bars)
    deadline, victim = time.monotonic() + 30, None
    while victim is None and time.monotonic() < deadline:  # a worker busy with one of our steps
        for addr, keys in dask_client.processing().items():
            if any(h.id in str(k) for k in keys) and h.jobs[0].steps_done >= 1:
                victim = addr
                break
        time.sleep(0.002)
    assert victim is not None, "never caught a worker in the middle of a step"
    os.kill(pids[victim], signal.SIGKILL)
    res = h.result(timeout=120)
    assert h.status is JobStatus.COMPLETED and h.jobs[0].steps_done == h.total_steps
    pd.testing.assert_frame_equal(res.table, ref, check_exact=True)
    wait_workers(dask_client, 2)
    assert pids[victim] not in dask_client.run(os.getpid).values()  # the nanny started a fresh process


def test_heatmap_of_objective_over_two_parameters(optimizer, bars_small):
    import holoviews as hv

    spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT", "ETHUSDT"], values={"fast": [5, 10], "slow": [20, 40, 80]})
    res = optimizer.run(spec, bars_small, progress=False, timeout=60)
    hm = res.heatmap("fast", "slow")
    assert isinstance(hm, hv.HeatMap)
    got = hm.data.set_index(["fast", "slow"])["sharpe"]
    want = res.table.groupby(["fast", "slow"])["sharpe"].mean()
    np.testing.assert_allclose(got.loc[want.index], want, rtol=1e-12)


@pytest.mark.parametrize("bad", ["..", ".", "../x", "a/b", "", "x" * 65, ".hidden"])
def test_sweep_ids_cannot_escape_the_sweeps_folder(tmp_path, bad):
    from spark_research.optimizer.store import SweepStore

    with pytest.raises(ValueError, match="sweep id must match"):
        SweepStore(tmp_path).path(bad)
    assert SweepStore(tmp_path).path("sweep-2024.01_a").parent == tmp_path


@pytest.mark.parametrize("n_combos,workers", [(2_261, 2), (2_261, 3), (301, 2), (1, 2), (5_000, 1)])
def test_automatic_steps_are_bounded_and_split_evenly_over_the_workers(n_combos, workers):
    from spark_research.optimizer.sweep import (FUSED_STEP_WORK, GENERIC_STEP_WORK, MAX_STEP_COMBOS,
                                                 auto_step_size, chunk)

    spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"])
    n_bars = 100_000
    size = auto_step_size(spec, n_bars, n_combos, workers)
    assert 1 <= size <= min(MAX_STEP_COMBOS, -(-FUSED_STEP_WORK // n_bars))
    steps = chunk(pd.DataFrame({"fast": range(n_combos)}), size)
    assert sum(len(s) for s in steps) == n_combos
    if len(steps) > 1 and workers > 1:
        assert len(steps) % workers == 0, (size, len(steps))  # nobody gets a last step alone
        assert max(map(len, steps)) - min(map(len, steps)) < len(steps)  # only the last one is shorter
    # an explicit step size wins; strategies without a fused kernel take steps of the generic path's size
    assert auto_step_size(SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], step_size=7), n_bars, n_combos, workers) == 7
    assert auto_step_size(SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"], objective="win_rate"),
                          n_bars) == -(-GENERIC_STEP_WORK // n_bars)
