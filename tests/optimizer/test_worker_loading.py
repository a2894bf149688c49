"""Workers load the bars a step names from the store themselves: a client allowed to hold less than
the universe still sweeps all of it (and the same sweep with the client scattering the bars does not)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from spark_research.data import BarStore, generate_bars
from spark_research.optimizer import Optimizer, SweepSpec
from spark_research.optimizer.steps import BarsRef, evaluate_step
from tests.optimizer.conftest import wait_workers

N_SYMBOLS, N_BARS = 24, 200_000  # ~230 MB as frames: more than the client may hold below
SYMBOLS = [f"S{i:02d}USDT" for i in range(N_SYMBOLS)]


@pytest.fixture(scope="module")
def universe(tmp_path_factory):
    store = BarStore(tmp_path_factory.mktemp("universe") / "store")
    for i, sym in enumerate(SYMBOLS):
        store.write_bars(generate_bars(sym, n=N_BARS, seed=100 + i, price=100.0))
    return store


def test_a_step_given_a_store_reference_equals_the_step_given_the_frame(universe):
    combos = pd.DataFrame({"fast": [5, 10], "slow": [30, 60]})
    frame = universe.load_bars(SYMBOLS[0]).set_index("timestamp").drop(columns="symbol")
    by_ref = evaluate_step("sma_cross", SYMBOLS[0], BarsRef.of(universe, SYMBOLS[0]), combos)["table"]
    by_frame = evaluate_step("sma_cross", SYMBOLS[0], frame, combos)["table"]
    pd.testing.assert_frame_equal(by_ref, by_frame)


def test_a_sweep_of_the_store_ships_references_not_frames(dask_client, universe, sweep_store):
    wait_workers(dask_client, 2)
    opt = Optimizer(dask_client, store=sweep_store, bar_store=universe, persist=False)
    spec = SweepSpec(strategy="sma_cross", symbols=SYMBOLS[:3], values={"fast": [5, 10], "slow": [30, 60]},
                     check=None)
    shipped = []
    submit = opt.scheduler.submit

    def spy(steps, **kw):
        shipped.extend(args[2] for (_fn, args, _kw, _w) in steps)
        return submit(steps, **kw)

    opt.scheduler.submit = spy
    handle = opt.submit(spec)
    assert shipped and all(isinstance(a, BarsRef) for a in shipped)
    table = handle.result(timeout=120).table
    assert sorted(table["symbol"].unique()) == SYMBOLS[:3] and len(table) == 12
    with pytest.raises(Exception, match=r"NOPE.*not in the store"):
        opt.submit(SweepSpec(strategy="sma_cross", symbols=["NOPE"], values={"fast": [5], "slow": [30]}))


CLIENT = textwrap.dedent('''
    import json, resource, sys
    from distributed import Client
    from spark_research.data import BarStore
    from spark_research.optimizer import Optimizer, SweepSpec

    address, root, on_workers, symbols = sys.argv[1], sys.argv[2], sys.argv[3] == "1", json.loads(sys.argv[4])
    client = Client(address, timeout="30s")
    opt = Optimizer(client, bar_store=BarStore(root), persist=False, load_on_workers=on_workers, warm_workers=False)
    spec = SweepSpec(strategy="sma_cross", symbols=symbols, values={"fast": [5, 10], "slow": [30, 60]}, check=None)
    BarStore(root).load_bars(symbols[0])  # Arrow's and DuckDB's thread pools start here, before the limit
    # from here on this process may allocate at most 120 MB more than it holds: less than the universe
    used = int(next(l for l in open("/proc/self/status") if l.startswith("VmData:")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (used + 120 * 2**20, resource.RLIM_INFINITY))
    try:
        table = opt.run(spec, progress=False, timeout=300).table
        print(json.dumps({"rows": len(table), "symbols": sorted(table["symbol"].unique())}))
    except MemoryError:
        print(json.dumps({"memory_error": True}))
    client.close()
''')


@pytest.mark.slow
def test_a_client_that_cannot_hold_the_universe_sweeps_it_when_workers_load_the_bars(dask_client, universe):
    wait_workers(dask_client, 2)
    address = dask_client.scheduler.address

    def run(on_workers: bool) -> dict:
        # Arrow on the system allocator: its buffers count against the limit like every other allocation
        # (its own pools reserve address space up front, which the limit would not see grow)
        out = subprocess.run([sys.executable, "-c", CLIENT, address, str(universe.root), "1" if on_workers else "0",
                              json.dumps(SYMBOLS)], capture_output=True, text=True, timeout=400,
                             env={**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"})
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        assert lines, out.stderr[-3000:]
        return json.loads(lines[-1])

    done = run(on_workers=True)
    assert done == {"rows": 4 * N_SYMBOLS, "symbols": SYMBOLS}
    # the control: the same client, scattering the bars itself, cannot hold them
    assert run(on_workers=False) == {"memory_error": True}
