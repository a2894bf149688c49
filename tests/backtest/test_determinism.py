"""Same inputs, identical results bit for bit: same process, new process, Dask worker."""
import hashlib
import subprocess
import sys

import pytest

SNIPPET = """
import hashlib, json
from spark_research.backtest import run_backtest
from spark_research.data.synthetic import generate_bars
def fingerprint():
    bars = generate_bars("ETHUSDT", n=8_000, seed=99)
    h = hashlib.sha256()
    for name in ("sma_cross", "rsi_reversion", "donchian_breakout"):
        res = run_backtest(name, bars, direction="both")
        h.update(json.dumps(res.stats, sort_keys=True).encode())
        h.update(res.trades.to_csv(index=False).encode())
        h.update(res.equity.to_numpy().tobytes())
    return h.hexdigest()
"""


def _fingerprint():
    ns: dict = {}
    exec(SNIPPET, ns)
    return ns["fingerprint"]()


def test_same_process_runs_are_identical():
    assert _fingerprint() == _fingerprint()


def test_new_process_gives_the_same_bits():
    out = subprocess.run([sys.executable, "-c", SNIPPET + "\nprint(fingerprint())"], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == _fingerprint()


def test_dask_worker_gives_the_same_bits():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        remote = client.submit(_fingerprint, pure=False).result(timeout=300)
    assert remote == _fingerprint()
