"""``spark sweep run|status|cancel|list`` against the shared cluster and a temporary SPARK_VAR."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spark_research.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_env(tmp_path, monkeypatch, dask_client, sample_store):
    monkeypatch.setenv("SPARK_VAR", str(tmp_path / "var"))
    monkeypatch.setenv("SPARK_DASK_SCHEDULER", dask_client.scheduler.address)
    return {**os.environ}


def test_run_status_list(cli_env, capsys):
    rc = main(["sweep", "run", "--strategy", "sma_cross", "--symbols", "BTCUSDT", "--grid", "fast=5:15:5",
               "--grid", "slow=30,60", "--end", "2024-01-04", "--id", "cli-grid", "--top", "3", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and out.strip().endswith("cli-grid")
    assert "fast" in out and "objective" in out
    assert main(["sweep", "status", "cli-grid"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "completed" and status["steps_done"] == status["steps_total"] >= 1
    assert main(["sweep", "list"]) == 0
    assert "cli-grid" in capsys.readouterr().out
    assert main(["sweep", "status", "no-such-sweep"]) == 2
    assert "no sweep 'no-such-sweep'" in capsys.readouterr().err


def test_bad_arguments_name_the_field(cli_env, capsys):
    assert main(["sweep", "run", "--strategy", "sma_cross", "--symbols", "BTCUSDT", "--objective", "profit"]) == 2
    assert "objective" in capsys.readouterr().err
    assert main(["sweep", "run", "--strategy", "sma_cross", "--symbols", "BTCUSDT", "--grid", "fast=a:b"]) == 2
    assert "--grid fast" in capsys.readouterr().err


def test_cancel_from_another_process_stops_a_running_sweep_within_1s(cli_env, tmp_path):
    # a long sweep (the whole declared grid, one combination per step) in a separate `spark` process
    cmd = [sys.executable, "-m", "spark_research.cli", "sweep", "run", "--strategy", "sma_cross",
           "--symbols", "BTCUSDT", "--step-size", "1", "--id", "cli-cancel", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        status_file = Path(cli_env["SPARK_VAR"]) / "sweeps" / "cli-cancel" / "status.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if status_file.exists() and json.loads(status_file.read_text()).get("steps_done", 0) >= 1:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        t0 = time.monotonic()
        assert main(["sweep", "cancel", "cli-cancel", "--wait", "5"]) == 0
        assert time.monotonic() - t0 < 1.0
        status = json.loads(status_file.read_text())
        assert status["status"] == "cancelled" and status["steps_done"] < status["steps_total"]
        assert proc.wait(timeout=30) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_a_strategy_from_a_file(cli_env, capsys, tmp_path):
    path = tmp_path / "dip.py"
    path.write_text(
        "from spark_research.backtest import Param, Signals, Strategy\n"
        "class Dip(Strategy):\n"
        "    window = Param(20, low=5, high=200, step=5)\n"
        "    def signals(self, bars, window):\n"
        "        ma = bars['close'].rolling(window).mean()\n"
        "        return Signals(entries=bars['close'] < 0.995 * ma, exits=bars['close'] > ma)\n")
    rc = main(["sweep", "run", "--strategy", f"{path}:Dip", "--symbols", "BTCUSDT", "--grid", "window=10,20,40",
               "--end", "2024-01-03", "--id", "cli-file", "--top", "3", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and out.strip().endswith("cli-file"), out
    assert main(["sweep", "status", "cli-file"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "completed" and status["strategy"] == "Dip"
    assert status["check"]["kind"] == "lookahead" and status["check"]["passed"]
