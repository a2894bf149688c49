"""A user's own strategy through sweeps and walk-forward on a real Dask cluster.

Three ways a user names a strategy reach the workers: a class defined in a notebook or
``__main__`` (by value), an import path (imported on the worker) and a file (by value).
Each gives the numbers a serial loop of ``run_backtest`` gives. A worker that cannot load a
strategy fails the sweep at once, naming the strategy, the worker and the error.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spark_research.backtest import STAT_FIELDS, run_backtest
from spark_research.backtest.registry import StrategyLoadError
from spark_research.optimizer.spec import SpecError, SweepSpec, combinations
from spark_research.optimizer.sweep import LookaheadRefused, StrategyChangedWarning, SweepResult

from ..conftest import ROOT, free_port

STRATEGY_SOURCE = '''
import pandas as pd
from spark_research.backtest import Param, Signals, Strategy


class BollingerRevert(Strategy):
    """Buy below the lower Bollinger band, sell back at the mean."""

    window = Param(20, low=5, high=200, step=5)
    k = Param(2.0, low=0.5, high=4.0, step=0.5)

    def indicators(self, bars, window, k):
        close = bars["close"]
        mean = close.rolling(int(window)).mean()
        std = close.rolling(int(window)).std()
        return {"mean": mean, "lower": mean - k * std}

    def signals(self, bars, window, k):
        ind = self.indicators(bars, window, k)
        close = bars["close"]
        return Signals(entries=(close < ind["lower"]).fillna(False), exits=(close > ind["mean"]).fillna(False))
'''

LEAKY_SOURCE = '''
from spark_research.backtest import Param, Signals, Strategy


class PeekAhead(Strategy):
    """Buys when the NEXT close is higher: a lookahead bug."""

    hold = Param(5, low=1, high=50)

    def signals(self, bars, hold):
        up = bars["close"].shift(-1) > bars["close"]
        return Signals(entries=up.fillna(False), exits=(~up).fillna(False))
'''

VALUES = {"window": [10, 20, 40], "k": [1.0, 2.0]}


def notebook_class():
    """A strategy class as a notebook cell defines it: not importable by name anywhere."""
    ns: dict = {"__name__": "__main__"}
    exec(compile(STRATEGY_SOURCE, "<notebook cell>", "exec"), ns)
    return ns["BollingerRevert"]


def serial(strategy, bars: dict, spec: SweepSpec) -> pd.DataFrame:
    rows = []
    for sym in spec.symbols:
        for params in combinations(spec).to_dict("records"):
            stats = run_backtest(strategy, bars[sym], params, fees=spec.fees, slippage=spec.slippage,
                                 init_cash=spec.init_cash).stats
            rows.append({"symbol": sym, **params, **stats})
    return pd.DataFrame(rows)


def assert_same(table: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert len(table) == len(ref) > 0
    keys = ["symbol", *[c for c in ref.columns if c in ("window", "k")]]
    assert table[keys].to_dict("records") == ref[keys].to_dict("records")
    assert (table["trades"].to_numpy() == ref["trades"].to_numpy()).all()
    for stat in STAT_FIELDS:
        np.testing.assert_allclose(table[stat].astype(float), ref[stat].astype(float), rtol=1e-9, atol=1e-12,
                                   err_msg=stat)


@pytest.fixture
def strategy_file(tmp_path) -> Path:
    path = tmp_path / "my_strategies" / "bollinger.py"
    path.parent.mkdir()
    path.write_text(STRATEGY_SOURCE)
    return path


@pytest.fixture
def user_package(tmp_path, dask_client):
    """An importable package ``userstrats`` on the client's and the workers' sys.path (as if installed)."""
    root = tmp_path / "site"
    (root / "userstrats").mkdir(parents=True)
    (root / "userstrats" / "__init__.py").write_text("")
    (root / "userstrats" / "bands.py").write_text(STRATEGY_SOURCE)
    sys.path.insert(0, str(root))
    dask_client.run(_add_path, str(root))
    yield "userstrats.bands:BollingerRevert"
    sys.path.remove(str(root))
    dask_client.run(_drop_path, str(root), ("userstrats.bands", "userstrats"))
    for mod in ("userstrats.bands", "userstrats"):
        sys.modules.pop(mod, None)


def _add_path(path: str) -> None:
    import importlib
    import sys

    sys.path.insert(0, path)
    importlib.invalidate_caches()


def _drop_path(path: str, modules: tuple[str, ...]) -> None:
    import sys

    if path in sys.path:
        sys.path.remove(path)
    for mod in modules:
        sys.modules.pop(mod, None)


def test_notebook_class_sweeps_on_dask_like_a_serial_loop(optimizer, bars_small):
    cls = notebook_class()
    spec = SweepSpec(strategy=cls, symbols=["BTCUSDT", "ETHUSDT"], values=VALUES)
    res = optimizer.run(spec, bars_small, progress=False, timeout=120)
    assert_same(res.table, serial(cls, bars_small, spec))
    assert res.identity.kind == "class" and not res.identity.portable
    assert res.check["kind"] == "lookahead" and res.check["passed"]


def test_file_strategy_sweeps_by_value_on_workers_without_the_file(optimizer, bars_small, strategy_file):
    ref = f"{strategy_file}:BollingerRevert"
    spec = SweepSpec(strategy=ref, symbols=["ETHUSDT"], values=VALUES)
    res = optimizer.run(spec, bars_small, progress=False, timeout=120)
    assert_same(res.table, serial(ref, bars_small, spec))
    assert res.identity.kind == "file" and res.identity.ref == ref


def test_import_path_strategy_is_imported_on_the_workers(optimizer, bars_small, user_package):
    spec = SweepSpec(strategy=user_package, symbols=["BTCUSDT"], values=VALUES)
    res = optimizer.run(spec, bars_small, progress=False, timeout=120)
    assert_same(res.table, serial(user_package, bars_small, spec))
    assert res.identity.kind == "import" and res.identity.ref == user_package


def test_worker_that_cannot_import_the_strategy_fails_the_sweep_at_once(optimizer, bars_small, tmp_path):
    root = tmp_path / "client_only"
    (root / "clientonly").mkdir(parents=True)
    (root / "clientonly" / "__init__.py").write_text(STRATEGY_SOURCE)
    sys.path.insert(0, str(root))
    try:
        spec = SweepSpec(strategy="clientonly:BollingerRevert", symbols=["BTCUSDT"], values=VALUES)
        t0 = time.monotonic()
        with pytest.raises(StrategyLoadError) as err:
            optimizer.submit(spec, bars_small)
        assert time.monotonic() - t0 < 10
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("clientonly", None)
    msg = str(err.value)
    assert "'clientonly:BollingerRevert'" in msg and "tcp://127.0.0.1:" in msg and "clientonly" in msg
    assert not optimizer._handles  # nothing was queued


def test_stored_sweep_records_the_code_and_warns_when_it_changed(optimizer, bars_small, strategy_file,
                                                                  sweep_store):
    ref = f"{strategy_file}:BollingerRevert"
    spec = SweepSpec(strategy=ref, symbols=["BTCUSDT"], values={"window": [20], "k": [2.0]})
    res = optimizer.run(spec, bars_small, progress=False, timeout=120)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = SweepResult.load(res.id, store=sweep_store)  # unchanged code: no warning
    assert again.identity == res.identity and again.identity.source_hash
    stored = json.loads((sweep_store.path(res.id) / "spec.json").read_text())
    assert stored["strategy"] == ref and stored["strategy_id"]["source_hash"] == res.identity.source_hash

    strategy_file.write_text(STRATEGY_SOURCE.replace("close > ind[\"mean\"]", "close > ind[\"mean\"] * 1.001"))
    with pytest.warns(StrategyChangedWarning, match=res.identity.source_hash):
        changed = SweepResult.load(res.id, store=sweep_store)
    assert changed.identity.source_hash == res.identity.source_hash  # what produced the stored results
    with pytest.warns(StrategyChangedWarning):
        rerun = optimizer.run(changed.spec, bars_small, progress=False, timeout=120)
    assert rerun.identity.source_hash != res.identity.source_hash


def test_stored_notebook_sweep_loads_in_a_process_without_its_code(optimizer, bars_small, sweep_store):
    spec = SweepSpec(strategy=notebook_class(), symbols=["BTCUSDT"], values={"window": [20], "k": [2.0]})
    res = optimizer.run(spec, bars_small, progress=False, timeout=120)
    code = (f"from spark_research.optimizer.sweep import SweepResult\n"
            f"from spark_research.optimizer.store import SweepStore\n"
            f"r = SweepResult.load({res.id!r}, store=SweepStore({str(sweep_store.root)!r}))\n"
            f"print(r.identity.ref, r.identity.source_hash, r.spec.strategy_name, r.top(1)['k'].iloc[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["__main__:BollingerRevert", res.identity.source_hash, "BollingerRevert", "2.0"]


def test_leaky_strategy_is_refused_before_any_step(optimizer, bars_small, tmp_path):
    path = tmp_path / "leaky.py"
    path.write_text(LEAKY_SOURCE)
    spec = SweepSpec(strategy=f"{path}:PeekAhead", symbols=["BTCUSDT"], values={"hold": [5, 10]})
    with pytest.raises(LookaheadRefused, match="signal:entries") as err:
        optimizer.submit(spec, bars_small)
    assert "PeekAhead" in str(err.value) and not optimizer._handles


def test_skipped_check_is_recorded(optimizer, bars_small, tmp_path):
    path = tmp_path / "leaky.py"
    path.write_text(LEAKY_SOURCE)
    spec = SweepSpec(strategy=f"{path}:PeekAhead", symbols=["BTCUSDT"], values={"hold": [5]}, check=None)
    res = optimizer.run(spec, bars_small, progress=False, timeout=120)
    assert res.check == {"kind": None, "skipped": True}
    assert optimizer.store.load_status(res.id)["check"] == {"kind": None, "skipped": True}


def test_walk_forward_of_a_notebook_class(optimizer, bars_small):
    from spark_research.optimizer.walkforward import walk_forward

    cls = notebook_class()
    spec = SweepSpec(strategy=cls, symbols=["BTCUSDT"], values={"window": [10, 20, 40], "k": [1.0, 2.0]})
    wf = walk_forward(optimizer, spec, bars_small, is_bars=2_000, oos_bars=1_000, n_periods=16, cscv_splits=4,
                      timeout=120)
    assert len(wf.windows) >= 3 and wf.check["passed"]
    assert 0.0 <= wf.report()["pbo"] <= 1.0
    first = wf.windows.iloc[0]
    frame = bars_small["BTCUSDT"].set_index("timestamp")
    oos = run_backtest(cls, frame.loc[first["oos_start"]:first["oos_end"]], {"window": first["window"], "k": first["k"]})
    assert first["oos_trades"] == oos.stats["trades"]


def test_spec_names_a_strategy_that_is_not_found_or_not_usable():
    from spark_research.backtest import Signals, Strategy

    class Undeclared(Strategy):
        def signals(self, bars, window):
            return Signals(bars["close"] > 0, bars["close"] < 0)

    class NotAStrategy:
        pass

    with pytest.raises(SpecError, match=r"strategy: unknown strategy 'bolinger'"):
        SweepSpec(strategy="bolinger", symbols=["BTCUSDT"])
    with pytest.raises(SpecError, match=r"strategy: .*\['window'\] without a Param declaration"):
        SweepSpec(strategy=Undeclared, symbols=["BTCUSDT"])
    with pytest.raises(SpecError, match="is not a spark_research Strategy subclass"):
        SweepSpec(strategy=NotAStrategy, symbols=["BTCUSDT"])


# ---------------------------------------------------------------------------- external cluster
CLIENT_SCRIPT = '''
import json, sys
import pandas as pd
from spark_research.backtest import Param, Signals, Strategy, run_backtest, STAT_FIELDS
from spark_research.data import generate_bars
from spark_research.optimizer import Optimizer, SweepSpec
from spark_research.optimizer.spec import combinations


class MainBands(Strategy):
    """Defined in __main__: reaches the workers by value."""
    window = Param(20, low=5, high=200, step=5)
    k = Param(2.0, low=0.5, high=4.0, step=0.5)

    def signals(self, bars, window, k):
        close = bars["close"]
        mean = close.rolling(int(window)).mean()
        lower = mean - k * close.rolling(int(window)).std()
        return Signals(entries=(close < lower).fillna(False), exits=(close > mean).fillna(False))


address, file_ref, import_ref = sys.argv[1:4]
bars = {"BTCUSDT": generate_bars("BTCUSDT", n=4_000, seed=5)}
out = {}
with Optimizer(address=address, persist=False) as opt:
    for label, strategy in (("main", MainBands), ("file", file_ref), ("import", import_ref)):
        spec = SweepSpec(strategy=strategy, symbols=["BTCUSDT"], values={"window": [10, 30], "k": [1.0, 2.5]})
        table = opt.run(spec, bars, progress=False, timeout=120).table
        worst = 0.0
        for row, params in zip(table.to_dict("records"), combinations(spec).to_dict("records")):
            ref = run_backtest(strategy, bars["BTCUSDT"], params).stats
            for stat in STAT_FIELDS:
                a, b = float(row[stat]), float(ref[stat])
                if not (a == b or (a != a and b != b)):
                    worst = max(worst, abs(a - b) / max(abs(b), 1e-12))
        out[label] = {"rows": len(table), "worst_rel_diff": worst, "trades": int(table["trades"].sum())}
print(json.dumps(out))
'''


@pytest.mark.slow
def test_external_scheduler_and_worker_run_all_three_kinds(tmp_path, strategy_file):
    """``dask scheduler`` and ``dask worker`` as separate commands; the worker runs in another directory."""
    site = tmp_path / "site"
    (site / "extstrats").mkdir(parents=True)
    (site / "extstrats" / "__init__.py").write_text(STRATEGY_SOURCE)
    elsewhere = tmp_path / "worker_home"
    elsewhere.mkdir()
    port = free_port()
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": "", "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    sched = subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--dashboard-address", "127.0.0.1:0", "--no-show"],
                             cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the package is installed on the worker (PYTHONPATH), not the strategy file nor the client's script
    worker = subprocess.Popen([str(bindir / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                               "--nworkers", "1", "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0",
                               "--no-nanny"],
                              cwd=elsewhere, env={**env, "PYTHONPATH": str(site)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        script = tmp_path / "client_script.py"
        script.write_text(CLIENT_SCRIPT)
        out = subprocess.run([sys.executable, str(script), f"tcp://127.0.0.1:{port}",
                              f"{strategy_file}:BollingerRevert", "extstrats:BollingerRevert"],
                             capture_output=True, text=True, timeout=240, cwd=tmp_path,
                             env={**os.environ, "PYTHONPATH": str(site)})
        assert out.returncode == 0, out.stderr[-3000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        for label in ("main", "file", "import"):
            assert result[label]["rows"] == 4 and result[label]["trades"] > 0, result
            assert result[label]["worst_rel_diff"] <= 1e-9, result
    finally:
        for proc in (worker, sched):
            proc.terminate()
        for proc in (worker, sched):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
