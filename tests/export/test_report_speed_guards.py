"""Structural guards of the report's speed: what each step computes and each process imports.

No test here times anything (``bench/export.py`` measures the 50k-trade report end to end);
each pins one thing its time budget rests on, so a change that undoes it fails by name.
"""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from spark_research.backtest import run_backtest
from spark_research.backtest.engine import _as_utc
from spark_research.backtest.strategy import Param, Signals, Strategy
from spark_research.data import generate_bars

_TRADE_COLUMNS = {"Column": "symbol", "Entry Timestamp": "entry_time", "Exit Timestamp": "exit_time",
                  "Direction": "side", "Size": "size", "Avg Entry Price": "entry_price",
                  "Avg Exit Price": "exit_price", "Entry Fees": "entry_fees", "Exit Fees": "exit_fees",
                  "PnL": "pnl", "Return": "return", "Status": "status"}
_ORDER_COLUMNS = {"Column": "symbol", "Timestamp": "timestamp", "Side": "side", "Size": "size", "Price": "price",
                  "Fees": "fees"}


def _readable(res, records, columns: dict[str, str]) -> pd.DataFrame:
    """``res``'s trades or orders the way vectorbt's ``records_readable`` presents them."""
    df = records.records_readable.rename(columns=columns)[list(columns.values())]
    if len(res.symbols) == 1:
        df["symbol"] = res.symbols[0]
    for col in ("entry_time", "exit_time", "timestamp"):
        if col in df:
            df[col] = _as_utc(df[col], res.utc)
    for col in ("side", "status"):
        if col in df:
            df[col] = df[col].astype(str).str.lower()
    return df.reset_index(drop=True)


def _bars(kind: str):
    bars = generate_bars("BTCUSDT", n=3_000, seed=7)
    if kind == "naive":
        return bars.assign(timestamp=bars["timestamp"].dt.tz_localize(None))
    if kind == "two symbols":
        return {"BTCUSDT": bars, "ETHUSDT": generate_bars("ETHUSDT", n=2_500, seed=8)}
    return bars


class Idle(Strategy):
    """Never trades: empty trades and orders."""

    name = "idle"
    window = Param(5, low=2, high=10)

    def signals(self, bars, window):
        never = pd.Series(False, index=bars.index)
        return Signals(entries=never, exits=never)


@pytest.mark.parametrize("kind", ["one symbol", "naive", "two symbols"])
@pytest.mark.parametrize(("strategy", "params"), [("sma_cross", {"fast": 2, "slow": 5}), (Idle, {})])
def test_trades_and_orders_are_vectorbts_readable_records_built_from_the_record_arrays(kind, strategy, params):
    # records_readable maps bar positions to times through a dict of the whole index:
    # about 1 s of the 50k-trade report, against milliseconds from the arrays
    res = run_backtest(strategy, _bars(kind), params, direction="both")
    pd.testing.assert_frame_equal(res.trades, _readable(res, res.portfolio.trades, _TRADE_COLUMNS), check_exact=True)
    pd.testing.assert_frame_equal(res.orders, _readable(res, res.portfolio.orders, _ORDER_COLUMNS), check_exact=True)


def test_the_from_signals_kernel_is_kept_in_numbas_disk_cache():
    # uncached, every process compiled it again (2.5-5 s for each of its four signatures)
    from numba.core.caching import NullCache
    from vectorbt.portfolio import nb

    import spark_research.backtest.engine  # noqa: F401  (enables the cache on import)

    assert not isinstance(nb.simulate_from_signals_nb._cache, NullCache)


def _imported(code_or_module: list[str]) -> set[str]:
    """Modules a fresh interpreter imports running ``code_or_module`` (``-c CODE`` or ``-m MODULE``)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *code_or_module], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def test_the_report_worker_starts_without_the_backtest_stack_or_an_iri_grammar():
    # the worker's imports must be over before the data stage is (it is ~0.7 s at 50k trades)
    modules = _imported(["-m", "spark_research.export._report_worker"])  # no request: it exits 0
    assert "papermill" in modules and "nbconvert" in modules
    assert not {m for m in modules if m.startswith(("vectorbt", "spark_research.backtest", "rfc3987_syntax."))}
    assert "spark_research.export.sources" not in modules


def test_the_report_kernel_imports_no_backtest_stack():
    # the notebook imports report_data; vectorbt would add seconds to the execute stage
    modules = _imported(["-c", "import spark_research.export.report_data"])
    assert not {m for m in modules if m.startswith(("vectorbt", "spark_research.backtest", "panel", "holoviews"))}
