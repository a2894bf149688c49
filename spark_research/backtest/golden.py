"""Golden files: the stats and trades of every shipped strategy on the sample data, pinned.

``golden/<strategy>.json`` holds, per sample symbol, the run's settings and stats;
``golden/<strategy>_<symbol>_trades.csv`` holds every trade. Floats are written with
``repr`` (shortest round-trip form), so a byte-identical file means bit-identical results.

:func:`check` re-runs everything and returns readable differences naming strategy,
symbol, field, expected and actual; :func:`update` rewrites the files.

Example::

    >>> from spark_research.backtest import golden
    >>> diffs = golden.check()          # doctest: +SKIP
    >>> print("\\n".join(map(str, diffs)) or "golden files match")  # doctest: +SKIP
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from spark_research import metrics
from spark_research.backtest.engine import run_backtest
from spark_research.backtest.registry import resolve_strategy
from spark_research.backtest.strategies import STRATEGIES
from spark_research.config import settings
from spark_research.data.store import BarStore, default_store

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
RUN_SETTINGS = {"fees": 0.001, "slippage": 0.0005, "init_cash": 10_000.0, "fill": "next_open", "direction": "longonly"}


@dataclass(frozen=True)
class GoldenDiff:
    """One field whose value differs from the golden file."""

    strategy: str
    symbol: str
    field: str
    expected: object
    actual: object

    def __str__(self) -> str:
        return f"{self.strategy}/{self.symbol}: {self.field}: expected {self.expected!r}, actual {self.actual!r}"


def _trades_csv(trades: pd.DataFrame) -> str:
    df = trades.copy()
    for col in ("entry_time", "exit_time"):
        df[col] = df[col].map(lambda t: t.isoformat() if pd.notna(t) else "")
    buf = io.StringIO()
    # float repr: shortest string that round-trips, so text equality == bit equality
    df.to_csv(buf, index=False, lineterminator="\n", float_format=None)
    return buf.getvalue()


def render(strategy: str, store: BarStore | None = None, symbols: Iterable[str] = SYMBOLS) -> dict[str, str]:
    """Run ``strategy`` on the sample symbols; return ``{file name: content}`` of its golden files."""
    store = store or default_store()
    strat = resolve_strategy(strategy)
    strategy = strat.name  # files are named after the strategy, however it was named
    summary: dict[str, object] = {"strategy": strategy, "params": strat.defaults(), "settings": RUN_SETTINGS, "symbols": {}}
    files: dict[str, str] = {}
    for sym in symbols:
        res = run_backtest(strat, store.load_bars(sym), strat.defaults(), **RUN_SETTINGS)
        summary["symbols"][sym] = {"bars": int(len(res.equity)), "stats": res.stats}
        files[f"{strategy}_{sym}_trades.csv"] = _trades_csv(res.trades)
    files[f"{strategy}.json"] = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    return files


def _diff_json(strategy: str, expected: str, actual: str) -> list[GoldenDiff]:
    exp, act = json.loads(expected), json.loads(actual)
    out = []
    for key in ("params", "settings"):
        if exp.get(key) != act.get(key):
            out.append(GoldenDiff(strategy, "*", key, exp.get(key), act.get(key)))
    for sym in sorted(set(exp["symbols"]) | set(act["symbols"])):
        e, a = exp["symbols"].get(sym), act["symbols"].get(sym)
        if e is None or a is None:
            out.append(GoldenDiff(strategy, sym, "symbol", e is not None, a is not None))
            continue
        if e["bars"] != a["bars"]:
            out.append(GoldenDiff(strategy, sym, "bars", e["bars"], a["bars"]))
        for stat in sorted(set(e["stats"]) | set(a["stats"])):
            if e["stats"].get(stat) != a["stats"].get(stat):
                out.append(GoldenDiff(strategy, sym, f"stats.{stat}", e["stats"].get(stat), a["stats"].get(stat)))
    return out


def _diff_trades(strategy: str, symbol: str, expected: str, actual: str, limit: int = 5) -> list[GoldenDiff]:
    exp = pd.read_csv(io.StringIO(expected), dtype=str, keep_default_na=False)
    act = pd.read_csv(io.StringIO(actual), dtype=str, keep_default_na=False)
    out = []
    if len(exp) != len(act):
        out.append(GoldenDiff(strategy, symbol, "trades.count", len(exp), len(act)))
    for i in range(min(len(exp), len(act))):
        for col in exp.columns:
            if col in act.columns and exp.at[i, col] != act.at[i, col]:
                out.append(GoldenDiff(strategy, symbol, f"trades[{i}].{col}", exp.at[i, col], act.at[i, col]))
                if len(out) >= limit:
                    return out
    return out


def check(golden_dir: Path | None = None, store: BarStore | None = None,
          strategies: Iterable[str] | None = None) -> list[GoldenDiff]:
    """Compare fresh runs with the golden files; an empty list means byte-identical.

    Also runs each strategy twice and counts fields that differ between the two runs
    (``backtest_determinism_diffs``); sets ``backtest_golden_diffs``.
    """
    golden_dir = golden_dir or settings().golden_dir
    diffs: list[GoldenDiff] = []
    nondeterministic = 0
    for strategy in strategies or sorted(STRATEGIES):
        files = render(strategy, store)
        strategy = resolve_strategy(strategy).name
        again = render(strategy, store)
        nondeterministic += sum(files[k] != again[k] for k in files)
        for name, content in sorted(files.items()):
            path = golden_dir / name
            if not path.exists():
                diffs.append(GoldenDiff(strategy, "*", f"file {name}", "present", "missing golden file"))
                continue
            expected = path.read_text()
            if expected == content:
                continue
            if name.endswith(".json"):
                diffs.extend(_diff_json(strategy, expected, content))
            else:
                symbol = name[len(strategy) + 1: -len("_trades.csv")]
                diffs.extend(_diff_trades(strategy, symbol, expected, content))
    metrics.BACKTEST_GOLDEN_DIFFS.set(len(diffs))
    metrics.BACKTEST_DETERMINISM_DIFFS.set(nondeterministic)
    return diffs


def update(golden_dir: Path | None = None, store: BarStore | None = None,
           strategies: Iterable[str] | None = None) -> list[Path]:
    """Rewrite the golden files from fresh runs; returns the paths written."""
    golden_dir = golden_dir or settings().golden_dir
    golden_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for strategy in strategies or sorted(STRATEGIES):
        for name, content in render(strategy, store).items():
            path = golden_dir / name
            path.write_text(content)
            written.append(path)
    return written
