"""bench/streams.py's cryptofeed comparison: how it calls the peer, and what it says without one.

No benchmark runs here and cryptofeed is not needed: the peer's process is replaced by a stand-in.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def streams(monkeypatch):
    """bench/streams.py as a module (``bench/`` on ``sys.path``, as when it runs)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_streams", BENCH / "streams.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakeExchanges:
    """What ``cryptofeed_run`` reads of ``VenueExchanges``: symbols, URLs, trades per symbol."""

    n = 500
    symbols = {"coinbase": ["S00USD", "S01USD"], "okx": ["S00USDT", "S01USDT"], "bybit": ["S00USDT"]}
    urls = {"coinbase": ("ws://127.0.0.1:1001", "http://127.0.0.1:1001"),
            "okx": ("ws://127.0.0.1:1002", "http://127.0.0.1:1002"),
            "bybit": ("ws://127.0.0.1:1003", "http://127.0.0.1:1003")}


def test_without_the_peer_interpreter_nothing_runs_and_the_bench_says_how_to_create_it(streams, tmp_path, capsys,
                                                                                        monkeypatch):
    monkeypatch.setattr(streams, "VenueExchanges", lambda *a, **k: pytest.fail("no replay should start"))
    args = argparse.Namespace(cryptofeed_python=str(tmp_path / "no-venv" / "bin" / "python"), venue_symbols=100,
                              venue_n=100_000, runs=5)
    assert streams.cryptofeed_section(args, recording=False) is True
    out = capsys.readouterr().out
    assert f"no interpreter at {args.cryptofeed_python}" in out
    assert "make cryptofeed-venv" in out and streams.CRYPTOFEED_VENV_CMD in out
    assert "Not on Kraken" in out


def test_the_peer_gets_each_venues_replay_url_with_its_path_and_native_symbols(streams, monkeypatch):
    seen = {}

    def run(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 0, json.dumps({"trades": 2500, "expected": 2500, "seconds": 0.01,
                                                                "msg_per_s": 250000.0, "complete": True}) + "\n", "")

    monkeypatch.setattr(streams.subprocess, "run", run)
    out = streams.cryptofeed_run(FakeExchanges(), "/venv/bin/python", "list", 30)
    assert out["complete"] and out["msg_per_s"] == 250000.0
    cmd = seen["cmd"]
    assert cmd[:2] == ["/venv/bin/python", str(BENCH / "cryptofeed_peer.py")]
    assert cmd[cmd.index("--n") + 1] == "500" and cmd[cmd.index("--mode") + 1] == "list"
    venues = [cmd[i + 1:i + 4] for i, a in enumerate(cmd) if a == "--venue"]
    assert venues == [["coinbase", "ws://127.0.0.1:1001/", "S00-USD,S01-USD"],
                      ["okx", "ws://127.0.0.1:1002/ws/v5/public", "S00-USDT,S01-USDT"],
                      ["bybit", "ws://127.0.0.1:1003/v5/public/spot", "S00USDT"]]


def test_a_peer_that_dies_without_its_json_is_an_incomplete_run_with_its_stderr(streams, monkeypatch):
    monkeypatch.setattr(streams.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, "", "ModuleNotFoundError: No module named 'cryptofeed'"))
    out = streams.cryptofeed_run(FakeExchanges(), "/venv/bin/python", "count", 30)
    assert out["complete"] is False
    assert "exit 1" in out["errors"][0] and "No module named 'cryptofeed'" in out["errors"][0]


def test_cryptofeed_is_compared_only_on_venues_whose_protocol_version_it_speaks(streams):
    assert set(streams.CRYPTOFEED_VENUES) == {"coinbase", "okx", "bybit"}
    assert set(streams.CRYPTOFEED_VENUES) < set(streams.VENUES)
