"""``spark sweep run|status|cancel|list``: parameter sweeps from the command line.

Examples::

    spark sweep run --strategy sma_cross --symbols BTCUSDT --grid fast=5:50:5 --grid slow=20:200:10
    spark sweep run --strategy rsi_reversion --symbols BTCUSDT ETHUSDT --space random --samples 200 --seed 1
    spark sweep status 20240101-120000-ab12cd
    spark sweep cancel 20240101-120000-ab12cd
    spark sweep list

``run`` uses the scheduler at ``--scheduler`` / ``SPARK_DASK_SCHEDULER`` or starts a
LocalCluster; sweeps are stored under ``settings().var_dir / "sweeps"``. ``cancel`` works
from another terminal: the running ``spark sweep run`` sees the request within 0.2 s.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _parse_values(items: list[str]) -> dict[str, list[float]]:
    """``name=a,b,c`` or ``name=start:stop:step`` (stop inclusive) -> ``{name: values}``."""
    out: dict[str, list[float]] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--grid expects name=values, got {item!r}")
        name, spec = item.split("=", 1)
        try:
            if ":" in spec:
                start, stop, step = (float(x) for x in spec.split(":"))
                if step <= 0:
                    raise ValueError
                n = int((stop - start) / step + 1e-9) + 1
                vals = [start + i * step for i in range(n)]
            else:
                vals = [float(x) for x in spec.split(",") if x]
        except ValueError:
            raise ValueError(f"--grid {name}: cannot parse {spec!r} (use a,b,c or start:stop:step)") from None
        out[name] = [int(v) if float(v).is_integer() else v for v in vals]
    return out


def _run(args: argparse.Namespace) -> int:
    from spark_research.optimizer.spec import SpecError, SweepSpec
    from spark_research.optimizer.sweep import Optimizer

    try:
        spec = SweepSpec(strategy=args.strategy, symbols=args.symbols, space=args.space,
                         values=_parse_values(args.grid), n_samples=args.samples, seed=args.seed,
                         objective=args.objective, maximize=not args.minimize, fees=args.fees,
                         slippage=args.slippage, start=args.start, end=args.end, step_size=args.step_size,
                         user=args.user, priority=args.priority)
    except (SpecError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with Optimizer(address=args.scheduler, n_workers=args.workers) as opt:
        try:
            handle = opt.submit(spec, block=True, sweep_id=args.id)
        except (SpecError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"sweep {handle.id}: {handle.total_steps} steps", file=sys.stderr, flush=True)
        try:
            opt.follow(handle, progress=not args.quiet)
        except KeyboardInterrupt:
            print(f"sweep {handle.id} cancelled", file=sys.stderr)
            return 130
        info = handle.info()
        if info["status"] != "completed":
            print(f"sweep {handle.id} {info['status']}" + (f": {info['error']}" if info["error"] else ""),
                  file=sys.stderr)
            return 1 if info["status"] == "failed" else 3
        res = handle.result(timeout=0)
        print(res.top(args.top).to_string(index=False))
        print(handle.id)
    return 0


def _status(args: argparse.Namespace) -> int:
    from spark_research.optimizer.store import SweepNotFound, SweepStore

    try:
        print(json.dumps(SweepStore().load_status(args.id), indent=2, sort_keys=True))
    except (SweepNotFound, ValueError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from spark_research.optimizer.store import SweepNotFound, SweepStore

    store = SweepStore()
    try:
        status = store.load_status(args.id)
        if status.get("status") in ("completed", "failed", "cancelled"):
            print(f"sweep {args.id} already {status['status']}")
            return 0
        store.request_cancel(args.id)
    except (SweepNotFound, ValueError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:  # bounded: the running sweep acknowledges within ~0.2 s
        if store.load_status(args.id).get("status") == "cancelled":
            print(f"sweep {args.id} cancelled")
            return 0
        time.sleep(0.05)
    print(f"cancel requested for sweep {args.id}; no running process acknowledged within {args.wait}s")
    return 1


def _list(args: argparse.Namespace) -> int:
    from spark_research.optimizer.store import SweepStore

    df = SweepStore().list()
    print(df.to_string(index=False) if len(df) else "no sweeps stored")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``spark sweep ...`` to the ``spark`` command."""
    p = subparsers.add_parser("sweep", help="parameter sweeps on Dask (run, status, cancel, list)")
    sub = p.add_subparsers(dest="sweep_command", metavar="SUBCOMMAND", required=True)

    run = sub.add_parser("run", help="run a sweep and print the top combinations")
    run.add_argument("--strategy", required=True)
    run.add_argument("--symbols", nargs="+", required=True)
    run.add_argument("--space", default="grid", choices=["grid", "random", "tpe"])
    run.add_argument("--grid", action="append", metavar="NAME=VALUES",
                     help="parameter values: a,b,c or start:stop:step (repeatable); default: declared ranges")
    run.add_argument("--samples", type=int, default=100, help="draws for random/tpe")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--objective", default="sharpe")
    run.add_argument("--minimize", action="store_true")
    run.add_argument("--fees", type=float, default=0.001)
    run.add_argument("--slippage", type=float, default=0.0005)
    run.add_argument("--start")
    run.add_argument("--end")
    run.add_argument("--step-size", type=int, default=None)
    run.add_argument("--user", default="default")
    run.add_argument("--priority", default="normal", choices=["high", "normal", "low"])
    run.add_argument("--scheduler", default=None, help="tcp://host:port (default SPARK_DASK_SCHEDULER or a LocalCluster)")
    run.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: cores)")
    run.add_argument("--id", default=None, help="sweep id (default: time-based)")
    run.add_argument("--top", type=int, default=10)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    st = sub.add_parser("status", help="status of a stored sweep (JSON)")
    st.add_argument("id")
    st.set_defaults(func=_status)

    ca = sub.add_parser("cancel", help="cancel a running sweep")
    ca.add_argument("id")
    ca.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the acknowledgement")
    ca.set_defaults(func=_cancel)

    ls = sub.add_parser("list", help="stored sweeps")
    ls.set_defaults(func=_list)
