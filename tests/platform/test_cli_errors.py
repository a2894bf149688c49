"""Every ``spark`` command answers bad input with one clear line on stderr and a non-zero exit.

Never a Python traceback (``spark --debug`` shows one); the line names what was wrong.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spark_research.cli import main

from ..conftest import ROOT

BROKEN = 'import os\nvalue = 1\nraise RuntimeError("boom in the user file")\n'


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    bad_csv = tmp_path / "bad_bars.csv"
    bad_csv.write_text("timestamp,open,high,low,close,volume,symbol\n"
                       "2024-01-01T00:00:00Z,10,9,11,10,1,BTCUSDT\n")
    broken = tmp_path / "broken_strategy.py"
    broken.write_text(BROKEN)
    return {"bad_csv": bad_csv, "broken": broken}


CASES = [
    # (argv, words the one line must contain)
    (["backtest", "sma_cross", "--param", "fast=300"], ["fast", "300", "outside [2, 200]"]),
    (["backtest", "sma_crss"], ["unknown strategy 'sma_crss'", "did you mean 'sma_cross'"]),
    (["backtest", "--strategy", "{broken}:X"], ["does not import", "boom in the user file", "line 3"]),
    (["backtest", "--strategy", "no_such_pkg.mod:X"], ["no module named 'no_such_pkg'"]),
    (["backtest", "--strategy", "json:dumps"], ["is not a spark_research Strategy subclass"]),
    (["check", "nope"], ["unknown strategy 'nope'"]),
    (["demo", "--strategy", "nope"], ["unknown strategy 'nope'"]),
    (["golden", "check", "nope"], ["unknown strategy 'nope'"]),
    (["data", "import", "{bad_csv}"], ["field 'high'", "high < low"]),
    (["data", "import", "{tmp}/missing.csv"], ["No such file", "missing.csv"]),
    (["sweep", "run", "--strategy", "nope", "--symbols", "BTCUSDT"], ["unknown strategy 'nope'"]),
    (["sweep", "run", "--strategy", "sma_cross", "--symbols", "BTCUSDT", "--grid", "fast=abc"], ["fast", "'abc'"]),
    (["sweep", "status", "no-such-sweep"], ["no sweep 'no-such-sweep'"]),
    (["export", "status", "nope"], ["field 'id'", "'nope'"]),
    (["export", "run", "nosource", "--format", "csv"], ["field 'what'", "'nosource'"]),
    (["serve", "--strategy", "nope:X", "--port", "1"], ["no module named 'nope'"]),
    (["serve", "--strategy", "sma_cross", "--param", "fast=0", "--port", "1"], ["fast", "outside"]),
    (["status", "--port", "1"], ["nothing answers", "127.0.0.1:1"]),
]


@pytest.mark.parametrize("argv,words", CASES, ids=[" ".join(c[0][:2]) + f"-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(argv, words, files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPARK_VAR", str(tmp_path / "var"))
    argv = [a.format(tmp=tmp_path, **files) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse-level and handler-level refusals exit through SystemExit
        code = exc.code if isinstance(exc.code, int) else 1
        if not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    out = capsys.readouterr()
    assert code not in (0, None), out
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1, out.err
    assert "Traceback" not in out.err + out.out
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_strategies_list_shows_every_strategy_with_its_parameters_and_origin(tmp_path, capsys, monkeypatch):
    (tmp_path / "mine.py").write_text(
        "from spark_research.backtest import Param, Signals, Strategy\n"
        "class Breakout(Strategy):\n"
        "    '''Buy a new 50-bar high.'''\n"
        "    window = Param(50, low=10, high=400, step=10)\n"
        "    def signals(self, bars, window):\n"
        "        hi = bars['high'].rolling(window).max().shift(1)\n"
        "        return Signals(entries=(bars['close'] > hi), exits=(bars['close'] < hi * 0.98))\n")
    (tmp_path / "broken.py").write_text(BROKEN)
    monkeypatch.setenv("SPARK_STRATEGY_PATH", str(tmp_path))
    assert main(["strategies", "list"]) == 0
    out = capsys.readouterr().out
    assert "sma_cross  [shipped" in out and "fast = 10  range [2, 200] step 1" in out
    assert f"{tmp_path / 'mine.py'}:Breakout  [path: {tmp_path / 'mine.py'}]" in out
    assert "window = 50  range [10, 400] step 10" in out and "Buy a new 50-bar high." in out
    assert "broken.py" in out and "NOT LOADED" in out and "boom in the user file" in out
    assert main(["strategies", "list", "--strict"]) == 1


def test_backtest_and_check_take_a_file_strategy(tmp_path, capsys):
    path = tmp_path / "mine.py"
    path.write_text(
        "from spark_research.backtest import Param, Signals, Strategy\n"
        "class Dip(Strategy):\n"
        "    drop = Param(0.01, low=0.001, high=0.1, step=0.001)\n"
        "    def signals(self, bars, drop):\n"
        "        r = bars['close'].pct_change()\n"
        "        return Signals(entries=(r < -drop), exits=(r > drop))\n")
    assert main(["backtest", "--strategy", f"{path}:Dip", "--param", "drop=0.002", "--last", "3000"]) == 0
    assert "Dip {'drop': 0.002}" in capsys.readouterr().out
    assert main(["check", "--strategy", f"{path}:Dip", "--last", "2000"]) == 0
    assert "verdict: PASS" in capsys.readouterr().out


def test_debug_shows_the_traceback(files):
    argv = [sys.executable, "-m", "spark_research.cli", "backtest", "--strategy", f"{files['broken']}:X"]
    plain = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    debug = subprocess.run(argv[:3] + ["--debug"] + argv[3:], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().count("\n") == 0 and "boom in the user file" in plain.stderr
    assert debug.returncode != 0 and "Traceback (most recent call last)" in debug.stderr
    assert "RuntimeError: boom in the user file" in debug.stderr
