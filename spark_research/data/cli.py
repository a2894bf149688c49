"""``spark data generate|import|list``."""
from __future__ import annotations

import argparse


def _generate(args: argparse.Namespace) -> int:
    from spark_research.data.store import BarStore, default_store, generate_sample

    store = BarStore(args.store) if args.store else default_store()
    symbols = tuple(args.symbols) if args.symbols else ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    made = generate_sample(store, n=args.bars, seed=args.seed, symbols=symbols, force=args.force)
    kept = [s for s in symbols if s not in made]
    print(f"store {store.root}: generated {made or 'nothing'}" + (f"; already present {kept} (--force regenerates)" if kept else ""))
    return 0


def _import(args: argparse.Namespace) -> int:
    from spark_research.data.loaders import load_file
    from spark_research.data.store import BarStore, default_store

    store = BarStore(args.store) if args.store else default_store()
    for path in args.paths:
        kind, frame = load_file(path, args.format, args.symbol)
        written = store.write_bars(frame) if kind == "bars" else store.write_trades(frame)
        print(f"{path}: {len(frame)} {kind} of {sorted(frame['symbol'].unique())} -> {written} bytes")
    return 0


def _list(args: argparse.Namespace) -> int:
    from spark_research.data.store import BarStore, default_store

    store = BarStore(args.store) if args.store else default_store()
    summary = store.summary()
    print(f"store {store.root}")
    print(summary.to_string(index=False) if len(summary) else "(empty: run `spark data generate --sample`)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="generate, import and list market data")
    data_sub = data.add_subparsers(dest="data_command", required=True)

    gen = data_sub.add_parser("generate", help="write seeded synthetic 1-minute bars to the store")
    gen.add_argument("--sample", action="store_true", help="the standard sample: 3 symbols x 30 days (default)")
    gen.add_argument("--symbols", nargs="+", help="symbols to generate (default BTCUSDT ETHUSDT SOLUSDT)")
    gen.add_argument("--bars", type=int, default=43_200, help="bars per symbol (default 43200 = 30 days)")
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--force", action="store_true", help="regenerate symbols already in the store")
    gen.add_argument("--store", help="store directory (default data/store or $SPARK_STORE)")
    gen.set_defaults(func=_generate)

    imp = data_sub.add_parser("import", help="validate and import CSV/Parquet/Binance dumps")
    imp.add_argument("paths", nargs="+")
    imp.add_argument("--format", default="auto", choices=["auto", "csv", "parquet", "binance-klines", "binance-trades"])
    imp.add_argument("--symbol", help="symbol (default: from the file, or the Binance file name)")
    imp.add_argument("--store", help="store directory")
    imp.set_defaults(func=_import)

    lst = data_sub.add_parser("list", help="what the store holds")
    lst.add_argument("--store", help="store directory")
    lst.set_defaults(func=_list)
