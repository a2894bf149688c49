"""Golden files pin every shipped strategy's stats and trades on the sample, byte for byte."""
import json
import shutil
import subprocess
import sys

import pytest

from spark_research import metrics
from spark_research.backtest import golden
from spark_research.config import settings


@pytest.fixture(scope="module")
def golden_copy(tmp_path_factory, sample_store):
    dst = tmp_path_factory.mktemp("golden")
    for p in settings().golden_dir.iterdir():
        shutil.copy(p, dst / p.name)
    return dst


def test_golden_files_match_fresh_runs(sample_store):
    diffs = golden.check(store=sample_store)
    assert diffs == [], "\n".join(map(str, diffs))
    assert metrics.BACKTEST_GOLDEN_DIFFS._value.get() == 0
    assert metrics.BACKTEST_DETERMINISM_DIFFS._value.get() == 0


def test_changed_stat_gives_a_readable_diff(golden_copy, sample_store):
    path = golden_copy / "sma_cross.json"
    data = json.loads(path.read_text())
    true_sharpe = data["symbols"]["ETHUSDT"]["stats"]["sharpe"]
    data["symbols"]["ETHUSDT"]["stats"]["sharpe"] = 1.5
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    diffs = golden.check(golden_dir=golden_copy, store=sample_store, strategies=["sma_cross"])
    assert [str(d) for d in diffs] == [f"sma_cross/ETHUSDT: stats.sharpe: expected 1.5, actual {true_sharpe!r}"]
    assert metrics.BACKTEST_GOLDEN_DIFFS._value.get() == 1


def test_changed_trade_names_row_and_column(golden_copy, sample_store):
    path = golden_copy / "donchian_breakout_SOLUSDT_trades.csv"
    lines = path.read_text().splitlines(keepends=True)
    cols = lines[0].strip().split(",")
    row = lines[3].split(",")
    original = row[cols.index("exit_price")]
    row[cols.index("exit_price")] = "1.0"
    lines[3] = ",".join(row)
    path.write_text("".join(lines))
    diffs = golden.check(golden_dir=golden_copy, store=sample_store, strategies=["donchian_breakout"])
    assert len(diffs) == 1
    d = diffs[0]
    assert (d.strategy, d.symbol, d.field, d.expected, d.actual) == ("donchian_breakout", "SOLUSDT", "trades[2].exit_price", "1.0", original)


def test_missing_golden_file_is_reported(tmp_path, sample_store):
    diffs = golden.check(golden_dir=tmp_path, store=sample_store, strategies=["rsi_reversion"])
    assert {d.field for d in diffs} >= {"file rsi_reversion.json"}


def test_update_then_check_round_trips(tmp_path, sample_store):
    written = golden.update(golden_dir=tmp_path, store=sample_store, strategies=["donchian_breakout"])
    assert {p.name for p in written} == {"donchian_breakout.json"} | {f"donchian_breakout_{s}_trades.csv" for s in golden.SYMBOLS}
    for p in written:
        assert p.read_bytes() == (settings().golden_dir / p.name).read_bytes()


def test_cli_golden_check_fails_with_a_diff(golden_copy, sample_store):
    path = golden_copy / "rsi_reversion.json"
    data = json.loads(path.read_text())
    data["symbols"]["BTCUSDT"]["stats"]["trades"] += 1
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    out = subprocess.run([sys.executable, "-m", "spark_research.cli", "golden", "check", "rsi_reversion"],
                         capture_output=True, text=True, env={**__import__("os").environ, "SPARK_GOLDEN": str(golden_copy)},
                         timeout=300)
    assert out.returncode == 1
    assert "rsi_reversion/BTCUSDT: stats.trades: expected" in out.stdout
