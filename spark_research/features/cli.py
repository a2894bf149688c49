"""``spark features list|build``: the feature registry and the point-in-time feature store."""
from __future__ import annotations

import argparse


def _split(items: list[str] | None) -> list[str] | None:
    """``--features a,b c`` -> ``[a, b, c]`` (None when not given)."""
    if not items:
        return None
    return [n for item in items for n in item.split(",") if n]


def _list(args: argparse.Namespace) -> int:
    from spark_research.features.registry import get_feature, list_features

    rows = [get_feature(n) for n in list_features()]
    width = max(len(f.name) for f in rows)
    print(f"{'feature':<{width}}  lookback  code hash         columns / params / description")
    for f in rows:
        params = ", ".join(f"{k}={v}" for k, v in f.params.items())
        extra = (" (cross-asset)" if f.universe else "") + (" (trades)" if f.trades else "")
        print(f"{f.name:<{width}}  {f.lookback:>8}  {f.code_hash}  {', '.join(f.columns)}"
              f"{f' [{params}]' if params else ''}{extra} - {f.description}")
    print(f"{len(rows)} features, {sum(len(f.columns) for f in rows)} columns")
    return 0


def _build(args: argparse.Namespace) -> int:
    from spark_research.data.store import BarStore
    from spark_research.features.store import FeatureStore

    store = FeatureStore(args.store, BarStore(args.store) if args.store else None)
    results = store.build(_split(args.symbols), _split(args.features), freq=args.freq, full=args.full)
    for r in results.values():
        span = f"{r.first} .. {r.last}" if r.rows else "no new bars"
        why = f" ({r.reason})" if r.reason else ""
        print(f"{r.symbol} [{r.freq}]: {r.mode}{why}, {r.rows} rows, {span}, {r.seconds:.2f} s")
    print(f"feature store {store.base}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from spark_research.data.store import BarStore
    from spark_research.features.store import FeatureStore

    store = FeatureStore(args.store, BarStore(args.store) if args.store else None)
    summary = store.summary()
    print(f"feature store {store.base}")
    print(summary.to_string(index=False) if len(summary) else "(empty: run `spark features build`)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    feats = sub.add_parser("features", help="list registered features, build and inspect the feature store")
    feats_sub = feats.add_subparsers(dest="features_command", required=True)

    lst = feats_sub.add_parser("list", help="registered features: lookback, code hash, columns, parameters")
    lst.set_defaults(func=_list)

    build = feats_sub.add_parser("build", help="compute features into the store (incremental unless --full)")
    build.add_argument("--symbol", "--symbols", dest="symbols", nargs="+",
                       help="symbols (default: every symbol with bars); comma-separated or repeated")
    build.add_argument("--features", nargs="+", help="feature names (default: all registered)")
    build.add_argument("--freq", help="resample the bars first, e.g. 1h (default: the stored bars)")
    build.add_argument("--full", action="store_true", help="recompute everything instead of the new bars only")
    build.add_argument("--store", help="store root (default data/store or $SPARK_STORE)")
    build.set_defaults(func=_build)

    status = feats_sub.add_parser("status", help="what the feature store holds")
    status.add_argument("--store", help="store root")
    status.set_defaults(func=_status)
