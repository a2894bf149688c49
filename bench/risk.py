"""Pre-trade risk check latency, and the live portfolio's per-bar update with VaR, against nautilus_trader.

Three figures, each a percentile taken within a run, printed as the median [min–max] over
``--runs`` runs (round-robin, so a slow minute of the shared machine hits every contender):

* **pre-trade check** -- ``RiskEngine.evaluate`` on an order stream of ``--n`` orders (default
  1M) with every check on: the shipped ``config/risk.yml`` (qty/notional bounds, price collar,
  lot/tick grid, position, gross/net exposure, budget, open orders, daily loss and drawdown
  watch) with the submit throttle raised to 10^9/s so it is evaluated but never binds; the
  durable SQLite audit log for denials. About 0.5 % of the orders are oversized and denied.
  Two modes: ``check`` (each approved order released at once, no fills: what nautilus sees)
  and ``check+fills`` (each approved order filled, so positions and exposure move; only the
  check is timed). Target P99 < 20 µs.
* **nautilus_trader** -- its ``RiskEngine.execute(SubmitOrder)`` on the same stream (limit
  orders at the same prices and sizes; cash account, max notional per order 50 000, submit
  throttle raised likewise), run in a throwaway venv outside the project
  (``--nautilus-python``, default ``/tmp/ntvenv/bin/python``; create it with
  ``python -m venv /tmp/ntvenv && /tmp/ntvenv/bin/pip install nautilus_trader``). Building
  nautilus order objects is slow, so it sees the first ``--nautilus-n`` orders (default 200k).
* **portfolio bar update + VaR** -- 100 positions: mark every symbol at the bar's close, equity,
  drawdown, historical and Cornish-Fisher VaR/ES at 95 and 99 % over a 250-bar window; alone
  (``Portfolio.mark_many`` + ``end_bar``) and through the engine (``RiskEngine.on_bars``: also
  exposure totals, breakers, gauges). Target P95 < 1 ms.

Never asserts on wall time. Figures go to ``bench/results.json`` only with ``--record``.

    .venv/bin/python bench/risk.py                 # 1M orders per run, 5 runs
    .venv/bin/python bench/risk.py --n 100000      # quicker
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from _results import RESULTS, record
from _timing import MIN_RUNS, Spread, ratios

from spark_research.gates.audit import AuditLog
from spark_research.gates.model import Fill, Order
from spark_research.risk.config import RiskConfig, default_config_path
from spark_research.risk.engine import RiskEngine
from spark_research.risk.portfolio import Portfolio

SYMBOL = "BTCUSDT"

NAUTILUS_HARNESS = textwrap.dedent('''
    """nautilus_trader's RiskEngine on the stream in argv[1] (.npz); per-order latency (ns) to argv[2] (.npy)."""
    import sys, time
    import numpy as np
    from nautilus_trader.common.component import LiveClock, MessageBus
    from nautilus_trader.common.factories import OrderFactory
    from nautilus_trader.config import RiskEngineConfig
    from nautilus_trader.core.uuid import UUID4
    from nautilus_trader.execution.messages import SubmitOrder
    from nautilus_trader.model.enums import OrderSide
    from nautilus_trader.model.identifiers import AccountId, StrategyId
    from nautilus_trader.model.objects import Price, Quantity
    from nautilus_trader.portfolio.portfolio import Portfolio
    from nautilus_trader.risk.engine import RiskEngine
    from nautilus_trader.test_kit.providers import TestInstrumentProvider
    from nautilus_trader.test_kit.stubs.component import TestComponentStubs
    from nautilus_trader.test_kit.stubs.data import TestDataStubs
    from nautilus_trader.test_kit.stubs.execution import TestExecStubs
    from nautilus_trader.test_kit.stubs.identifiers import TestIdStubs
    import nautilus_trader

    stream = np.load(sys.argv[1])
    sides, sizes, prices = stream["sides"], stream["sizes"], stream["prices"]
    n = len(sides)
    clock = LiveClock()
    trader_id = TestIdStubs.trader_id()
    msgbus = MessageBus(trader_id=trader_id, clock=clock)
    cache = TestComponentStubs.cache()
    portfolio = Portfolio(msgbus=msgbus, cache=cache, clock=clock)
    instrument = TestInstrumentProvider.btcusdt_binance()
    cache.add_instrument(instrument)
    cache.add_account(TestExecStubs.cash_account(AccountId("BINANCE-001")))
    counts = {"sent": 0, "denied": 0}
    msgbus.register(endpoint="ExecEngine.execute", handler=lambda c: counts.__setitem__("sent", counts["sent"] + 1))
    msgbus.register(endpoint="ExecEngine.process", handler=lambda e: counts.__setitem__("denied", counts["denied"] + 1))
    risk = RiskEngine(portfolio=portfolio, msgbus=msgbus, cache=cache, clock=clock,
                      config=RiskEngineConfig(max_order_submit_rate="1000000000/00:00:01",
                                              max_notional_per_order={str(instrument.id): 50_000}))
    risk.start()
    strategy_id = StrategyId("S-001")
    factory = OrderFactory(trader_id=trader_id, strategy_id=strategy_id, clock=clock)
    lat = np.empty(n, dtype=np.int64)
    pc = time.perf_counter_ns
    CHUNK = 5_000
    for start in range(0, n, CHUNK):  # orders are built outside the timed call
        cmds = []
        for i in range(start, min(n, start + CHUNK)):
            cmds.append(SubmitOrder(trader_id=trader_id, strategy_id=strategy_id, command_id=UUID4(), ts_init=0,
                                    order=factory.limit(instrument.id, OrderSide.BUY if sides[i] else OrderSide.SELL,
                                                        Quantity(float(sizes[i]), 5), Price(float(prices[i]), 2))))
        for k, cmd in enumerate(cmds):
            i = start + k
            if i % 10 == 0:  # a new quote every 10 orders, as the other engine's mark
                p = float(prices[i])
                cache.add_quote_tick(TestDataStubs.quote_tick(instrument, bid_price=p - 0.01, ask_price=p + 0.01))
            t0 = pc()
            risk.execute(cmd)
            lat[i] = pc() - t0
    np.save(sys.argv[2], lat)
    print(nautilus_trader.__version__, counts["sent"], counts["denied"])
''')


def order_stream(n: int, seed: int) -> dict[str, np.ndarray]:
    """Sides, sizes (base units, 5 decimals) and prices (2 decimals): a random walk around 30 000;
    0.5 % of the orders are 6 BTC (over max_qty and max notional: denied by both engines)."""
    rng = np.random.default_rng(seed)
    sides = rng.integers(0, 2, n).astype(np.int8)
    sizes = np.round(rng.uniform(0.001, 0.05, n), 5)
    sizes[rng.random(n) < 0.005] = 6.0
    prices = np.round(30_000.0 + np.cumsum(rng.normal(0.0, 2.0, n)), 2)
    return {"sides": sides, "sizes": sizes, "prices": prices}


def bench_config() -> RiskConfig:
    cfg = RiskConfig.load(default_config_path())
    # every check on; the throttle is evaluated on every order but a benchmark must not be throttled
    return dataclasses.replace(cfg, limits=dataclasses.replace(cfg.limits, submit_rate=1e9, submit_burst=10**9))


def run_engine(stream: dict[str, np.ndarray], fills: bool, tmp: Path, run: int) -> tuple[np.ndarray, int]:
    """Per-order latency (ns) of ``evaluate`` over the stream, and how many orders were denied."""
    audit = AuditLog(tmp / f"audit-{run}-{int(fills)}.db")
    eng = RiskEngine(bench_config(), audit=audit, publish=True)
    sides, sizes, prices = stream["sides"], stream["sizes"], stream["prices"]
    n = len(sides)
    lat = np.empty(n, dtype=np.int64)
    pc = time.perf_counter_ns
    evaluate = eng.evaluate
    denied = 0
    chunk = 50_000
    for start in range(0, n, chunk):  # orders are built outside the timed call, as for nautilus
        orders = [Order(f"o{i}", "bench", SYMBOL, 0, "buy" if sides[i] else "sell", float(sizes[i]),
                        float(prices[i])) for i in range(start, min(n, start + chunk))]
        for k, o in enumerate(orders):
            i = start + k
            if i % 10 == 0:
                eng.on_price(SYMBOL, float(prices[i]))
            t0 = pc()
            out = evaluate(o)
            lat[i] = pc() - t0
            if type(out) is Order:
                if fills:
                    eng.on_fill(Fill(out.order_id, "bench", SYMBOL, 0, out.side, out.size, out.ref_price, 0.0, "b"))
                eng.on_order_done(out.order_id)
            else:
                denied += 1
    eng.flush()
    eng.close()
    return lat, denied


def run_nautilus(python: str, stream_path: Path, tmp: Path, run: int) -> tuple[np.ndarray, str]:
    script = tmp / "nautilus_harness.py"
    if not script.exists():
        script.write_text(NAUTILUS_HARNESS)
    out = tmp / f"nautilus-{run}.npy"
    res = subprocess.run([python, str(script), str(stream_path), str(out)], capture_output=True, text=True,
                         timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"nautilus harness failed: {res.stderr[-2000:]}")
    return np.load(out), res.stdout.strip()


def run_portfolio(n_bars: int, n_pos: int, seed: int, through_engine: bool) -> np.ndarray:
    """Per-bar latency (ns) of marking ``n_pos`` positions and recomputing equity, drawdown, VaR/ES."""
    rng = np.random.default_rng(seed)
    symbols = [f"S{i:03d}USDT" for i in range(n_pos)]
    px = rng.uniform(10, 1000, n_pos)
    if through_engine:
        eng = RiskEngine(RiskConfig.from_dict({"global": {"max_daily_loss": 1e12, "max_drawdown": 0.99},
                                               "portfolio": {"cash": 1e7}}), publish=True)
        book = eng.book
    else:
        book = Portfolio(1e7, var_window=250, publish=True)
    for s, p in zip(symbols, px):
        book.apply_fill(s, "buy" if rng.random() < 0.7 else "sell", 10.0, float(p))
    if through_engine:
        eng.on_bars(dict(zip(symbols, px.tolist())), 0)
    warm = 260  # fill the VaR window first: every timed bar computes it over 250 returns
    lat = np.empty(n_bars, dtype=np.int64)
    pc = time.perf_counter_ns
    for b in range(warm + n_bars):
        px = px * np.exp(rng.normal(0, 0.002, n_pos))
        closes = dict(zip(symbols, px.tolist()))
        ts = (b + 1) * 60_000_000_000
        t0 = pc()
        if through_engine:
            eng.on_bars(closes, ts)
        else:
            book.mark_many(closes)
            book.end_bar(ts)
        if b >= warm:
            lat[b - warm] = pc() - t0
    return lat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="orders per run (default 1M)")
    ap.add_argument("--nautilus-n", type=int, default=200_000, help="orders per run for nautilus_trader")
    ap.add_argument("--bars", type=int, default=2_000, help="timed bars per run for the portfolio figure")
    ap.add_argument("--positions", type=int, default=100)
    ap.add_argument("--runs", type=int, default=MIN_RUNS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nautilus-python", default=os.environ.get("SPARK_NAUTILUS_PYTHON", "/tmp/ntvenv/bin/python"))
    ap.add_argument("--only", choices=("check", "portfolio"), help="run one part only")
    ap.add_argument("--record", action="store_true", help="write the figures to bench/results.json")
    args = ap.parse_args(argv)
    check = bars = None
    if args.only != "portfolio":
        check = check_part(args)
    if args.only != "check":
        bars = portfolio_part(args)
    if args.record and check is not None and bars is not None:
        pct, nautilus, r99 = check["pct"], check["nautilus"], check["r99"]
        peer = "nautilus_trader RiskEngine.execute, P99" if nautilus else None
        record("risk", "pre-trade check, all checks on, P50", pct["check"][50], "µs")
        record("risk", "pre-trade check, all checks on, P99", pct["check"][99], "µs", target="< 20 µs",
               peer=peer, ratio=r99)
        if nautilus:
            record("risk", "nautilus_trader RiskEngine.execute, P99", pct["nautilus"][99], "µs")
        record("risk", "portfolio bar update + VaR, 100 positions, P95", bars[95], "µs", target="< 1 ms")
        print(f"figures recorded in {RESULTS}")
    return 0


def check_part(args) -> dict:
    """The pre-trade check figures (spark, both modes, and nautilus_trader); printed, and returned."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-risk-"))
    stream = order_stream(args.n, args.seed)
    nt_n = min(args.n, args.nautilus_n)
    stream_path = tmp / "stream.npz"
    np.savez(stream_path, **{k: v[:nt_n] for k, v in stream.items()})
    nautilus = Path(args.nautilus_python).is_file()
    why_not = "" if nautilus else f"no nautilus_trader interpreter at {args.nautilus_python}"
    lat: dict[str, list[np.ndarray]] = {"check": [], "check+fills": [], "check (first N)": [], "nautilus": []}
    denied: dict[str, set[int]] = {"check": set(), "check+fills": set()}
    nt_info = ""
    for run in range(args.runs):
        for mode, fills in (("check", False), ("check+fills", True)):
            x, d = run_engine(stream, fills, tmp, run)
            lat[mode].append(x / 1e3)
            denied[mode].add(d)
            if mode == "check":
                lat["check (first N)"].append(x[:nt_n] / 1e3)
        if nautilus:
            try:
                x, nt_info = run_nautilus(args.nautilus_python, stream_path, tmp, run)
                lat["nautilus"].append(x / 1e3)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                nautilus, why_not = False, str(exc).splitlines()[-1]
        print(f"  run {run + 1}/{args.runs} done", file=sys.stderr)
    nautilus = nautilus and len(lat["nautilus"]) == args.runs
    pct = {k: {q: Spread.of(np.percentile(x, q) for x in v) for q in (50, 99)} for k, v in lat.items() if v}
    print(f"pre-trade risk check latency (µs), every check on; each run's percentile, median [min–max] of "
          f"{args.runs} runs (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"{'contender':<46}{'orders':>10}{'P50':>24}{'P99':>24}{'denied':>9}")
    for key, label, n in (("check", "spark RiskEngine.evaluate", args.n),
                          ("check+fills", "spark RiskEngine.evaluate, fills booked", args.n),
                          ("check (first N)", "spark RiskEngine.evaluate (nautilus' orders)", nt_n),
                          ("nautilus", "nautilus_trader RiskEngine.execute", nt_n)):
        if key in pct:
            den = "" if key not in denied else str(max(denied[key]))
            print(f"{label:<46}{n:>10,}{format(pct[key][50], '.2f'):>24}{format(pct[key][99], '.2f'):>24}{den:>9}")
    r99 = None
    if nautilus:
        r50 = ratios([np.percentile(x, 50) for x in lat["check (first N)"]],
                     [np.percentile(x, 50) for x in lat["nautilus"]])
        r99 = ratios([np.percentile(x, 99) for x in lat["check (first N)"]],
                     [np.percentile(x, 99) for x in lat["nautilus"]])
        version, sent, nt_denied = (nt_info.split() + ["?", "?", "?"])[:3]
        print(f"spark / nautilus_trader {version} on the same {nt_n:,} orders, run by run: P50 {r50:.2f}x, "
              f"P99 {r99:.2f}x (nautilus sent {sent}, denied {nt_denied})")
    else:
        print(f"nautilus_trader not measured: {why_not}")
    target = pct["check"][99].median < 20.0
    print(f"target P99 < 20 µs: {'met' if target else 'NOT met'} ({pct['check'][99].median:.2f} µs)")
    return {"pct": pct, "nautilus": nautilus, "r99": r99}


def portfolio_part(args) -> dict:
    """The per-bar portfolio figures (alone and through the engine); printed, and returned."""
    bars: dict[str, list[np.ndarray]] = {"portfolio": [], "engine": []}
    for run in range(args.runs):
        bars["portfolio"].append(run_portfolio(args.bars, args.positions, args.seed + run, False) / 1e3)
        bars["engine"].append(run_portfolio(args.bars, args.positions, args.seed + run, True) / 1e3)
    print(f"\nportfolio bar update + VaR/ES (95/99 %, historical + Cornish-Fisher, 250-bar window), "
          f"{args.positions} positions, {args.bars} bars per run (µs; load average {os.getloadavg()[0]:.1f})")
    print(f"{'path':<46}{'P50':>24}{'P95':>24}")
    bar_pct = {k: {q: Spread.of(np.percentile(x, q) for x in v) for q in (50, 95)} for k, v in bars.items()}
    for key, label in (("portfolio", "Portfolio.mark_many + end_bar"), ("engine", "RiskEngine.on_bars (all)")):
        print(f"{label:<46}{format(bar_pct[key][50], '.1f'):>24}{format(bar_pct[key][95], '.1f'):>24}")
    print(f"target P95 < 1 ms: {'met' if bar_pct['engine'][95].median < 1000 else 'NOT met'}")
    return bar_pct["engine"] | {"portfolio": bar_pct["portfolio"]}

if __name__ == "__main__":
    sys.exit(main())
