"""``spark backtest``, ``spark check``, ``spark strategies list``, ``spark golden check|update``, ``spark demo``, ``spark warm``.

Every command that takes a strategy takes any name the resolver knows: a registry name, a
plug-in, ``package.module:Class`` or ``path/to/file.py:Class``
(:mod:`spark_research.backtest.registry`).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _parse_params(items: list[str] | None) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param expects NAME=VALUE, got {item!r}")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                raise SystemExit(f"--param {key}: {value!r} is not a number") from None
    return out


def _load(symbols: list[str], last: int | None):
    from spark_research.data.store import load_sample

    return {s: load_sample(s, n=last) for s in symbols}


def _strategy_arg(args: argparse.Namespace) -> str:
    """The strategy named positionally or by ``--strategy`` (one of them, not both)."""
    pos, opt = getattr(args, "strategy_pos", None), getattr(args, "strategy", None)
    if pos and opt and pos != opt:
        raise SystemExit(f"spark {args.command}: name the strategy once (got {pos!r} and --strategy {opt!r})")
    name = opt or pos
    if not name:
        raise SystemExit(f"spark {args.command}: name a strategy (a registry name, package.module:Class or "
                         f"path/to/file.py:Class); `spark strategies list` shows what is found")
    return name


def _backtest(args: argparse.Namespace) -> int:
    from spark_research.backtest.engine import run_backtest

    strategy = _strategy_arg(args)
    bars = _load(args.symbols, args.last)
    res = run_backtest(strategy, bars if len(bars) > 1 else next(iter(bars.values())), _parse_params(args.param),
                       fees=args.fees, slippage=args.slippage, init_cash=args.cash, direction=args.direction, fill=args.fill)
    print(f"{res.strategy} {res.params} on {res.symbols} ({res.fill} fills, {res.runtime_ms:.0f} ms)")
    print(res.stats_frame().to_string())
    if args.trades:
        res.trades.to_csv(args.trades, index=False)
        print(f"trades -> {args.trades}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from spark_research.backtest.lookahead import check_lookahead, check_warmup

    strategy = _strategy_arg(args)
    bars = _load([args.symbol], args.last)[args.symbol]
    params = _parse_params(args.param)
    look = check_lookahead(strategy, bars, params, n_cuts=args.cuts, seed=args.seed, budget_s=args.budget,
                           max_signal_cuts=args.signal_cuts)
    warm = check_warmup(strategy, bars, params)
    print(look)
    print(warm)
    verdict = "PASS" if look.passed else "FAIL (lookahead)"
    print(f"verdict: {verdict}; load at least {warm.warmup} bars of history before the first signal you trust")
    return 0 if look.passed else 1


def _fmt(v: float | int) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _strategies(args: argparse.Namespace) -> int:
    """Print every strategy found, with its parameters, ranges and where it came from."""
    from spark_research.backtest.registry import list_strategies

    infos = list_strategies()
    for info in infos:
        ident = info.identity
        if info.error:
            print(f"{ident.ref}  [{ident.kind}]  NOT LOADED: {info.error}")
            continue
        label = ident.name if ident.kind in ("shipped", "registered", "plugin") else ident.ref
        print(f"{label}  [{ident.kind}: {ident.origin}]  code {ident.source_hash}")
        if info.doc:
            print(f"    {info.doc.splitlines()[0]}")
        for name, p in info.params.items():
            print(f"    {name} = {_fmt(p.default)}  range [{_fmt(p.low)}, {_fmt(p.high)}] step {_fmt(p.step)}")
    broken = sum(1 for i in infos if i.error)
    print(f"{len(infos) - broken} strategies" + (f", {broken} that do not load" if broken else ""))
    return 1 if broken and args.strict else 0


def _golden(args: argparse.Namespace) -> int:
    from spark_research.backtest import golden

    strategies = args.strategies or None
    if args.golden_command == "update":
        for path in golden.update(strategies=strategies):
            print(f"wrote {path}")
        return 0
    diffs = golden.check(strategies=strategies)
    if diffs:
        print(f"golden check FAILED: {len(diffs)} difference(s)")
        for d in diffs:
            print(f"  {d}")
        print("if the change is intended: spark golden update, and commit golden/")
        return 1
    print("golden check passed: results are byte-identical to golden/")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from spark_research.backtest.engine import run_backtest
    from spark_research.data.store import load_sample
    from spark_research.views.backtest import result_layout, save_html

    bars = load_sample(args.symbol)
    res = run_backtest(args.strategy, bars)
    print(f"demo research run: {res.strategy} {res.params} on {args.symbol}, {len(bars):,} 1-minute bars, "
          f"fees {res.fees:.2%}, slippage {res.slippage:.2%}, {res.fill} fills")
    print(res.stats_frame().to_string())
    print(f"\nfirst trades:\n{res.trades.head(5).to_string(index=False)}")
    out = save_html(result_layout(res), Path(args.out), title=f"{res.strategy} on {args.symbol}")
    print(f"\nequity chart -> {out}")
    return 0


def _warm(args: argparse.Namespace) -> int:
    """Load every numba kernel that backtests, reports and sweeps use (compiling once what is missing).

    numba keys a compiled kernel by its argument types, so this runs each path once on tiny
    inputs with the types the real calls have: ``run_backtest`` of every shipped strategy on one
    symbol and on several (a shared cash pool), with direction signals and with long/short ones
    (``direction="both"``), the four signatures of vectorbt's from_signals kernel; the stats,
    trades, orders and drawdown of each; every fused sweep kernel; the generic sweep kernel.
    With a valid cache everything loads from disk; a kernel compiled here is saved for later runs.
    """
    t0 = time.perf_counter()
    from spark_research.backtest.engine import run_backtest
    from spark_research.backtest.strategies import STRATEGIES
    from spark_research.data.synthetic import generate_bars
    from spark_research.optimizer.warm import warm_sweep_kernels

    bars = generate_bars("BTCUSDT", n=2_000, seed=1)
    multi = {s: generate_bars(s, n=500, seed=1) for s in ("BTCUSDT", "ETHUSDT")}
    for name in STRATEGIES:
        for data in (bars, multi):
            for direction in ("longonly", "both"):
                res = run_backtest(name, data, direction=direction)
                _ = res.stats, res.trades, res.orders, res.drawdown
    warm_sweep_kernels()  # the sweeps' fused kernels and the generic one (what each Dask worker loads as it joins)
    print(f"numba kernels ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    strategy_help = "registry name, package.module:Class or path/to/file.py:Class (`spark strategies list`)"

    bt = sub.add_parser("backtest", help="run one backtest on the sample data and print its stats")
    bt.add_argument("strategy_pos", nargs="?", metavar="STRATEGY", help=strategy_help)
    bt.add_argument("--strategy", help=strategy_help)
    bt.add_argument("--symbols", nargs="+", default=["BTCUSDT"])
    bt.add_argument("--param", action="append", metavar="NAME=VALUE")
    bt.add_argument("--fees", type=float, default=0.001)
    bt.add_argument("--slippage", type=float, default=0.0005)
    bt.add_argument("--cash", type=float, default=10_000.0)
    bt.add_argument("--direction", default="longonly", choices=["longonly", "shortonly", "both"])
    bt.add_argument("--fill", default="next_open", choices=["next_open", "close"])
    bt.add_argument("--last", type=int, help="use only the last N bars")
    bt.add_argument("--trades", help="write the trades to this CSV")
    bt.set_defaults(func=_backtest)

    ck = sub.add_parser("check", help="lookahead and warm-up checks of a strategy")
    ck.add_argument("strategy_pos", nargs="?", metavar="STRATEGY", help=strategy_help)
    ck.add_argument("--strategy", help=strategy_help)
    ck.add_argument("--symbol", default="BTCUSDT")
    ck.add_argument("--param", action="append", metavar="NAME=VALUE")
    ck.add_argument("--cuts", type=int, default=25, help="evenly spaced (and as many seeded random) truncation points")
    ck.add_argument("--seed", type=int, default=0, help="seed of the random cuts and of sampled signal cuts")
    ck.add_argument("--budget", type=float, default=10.0, help="seconds the lookahead check may spend (default 10)")
    ck.add_argument("--signal-cuts", type=int, default=256, help="most cuts at signal bars (sampled beyond that)")
    ck.add_argument("--last", type=int, default=10_000, help="bars to check on (default 10000)")
    ck.set_defaults(func=_check)

    st = sub.add_parser("strategies", help="list every strategy found (shipped, registered, plug-ins, SPARK_STRATEGY_PATH)")
    st_sub = st.add_subparsers(dest="strategies_command", required=True)
    stl = st_sub.add_parser("list", help="strategies with parameters, ranges and where each came from")
    stl.add_argument("--strict", action="store_true", help="exit 1 when a plug-in or strategy file does not load")
    stl.set_defaults(func=_strategies)

    gd = sub.add_parser("golden", help="check or update the golden result files")
    gd.add_argument("golden_command", choices=["check", "update"])
    gd.add_argument("strategies", nargs="*")
    gd.set_defaults(func=_golden)

    dm = sub.add_parser("demo", help="demo research run: stats table and an HTML equity chart")
    dm.add_argument("--strategy", default="sma_cross", help=strategy_help)
    dm.add_argument("--symbol", default="BTCUSDT")
    dm.add_argument("--out", default="out/demo_equity.html")
    dm.set_defaults(func=_demo)

    wm = sub.add_parser("warm", help="load the numba kernels of backtests, reports and sweeps from the disk cache "
                                     "(compiling once what is missing) so later runs start fast")
    wm.set_defaults(func=_warm)
