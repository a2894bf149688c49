"""``spark data generate|import|list|download``."""
from __future__ import annotations

import argparse
import os


def _generate(args: argparse.Namespace) -> int:
    from spark_research.data.store import BarStore, default_store, generate_sample

    store = BarStore(args.store) if args.store else default_store()
    if args.universe is not None or args.days is not None:  # a synthetic universe, streamed month by month
        from spark_research.data.universe import generate_universe

        rep = generate_universe(args.universe, days=args.days or 365, seed=args.seed, start=args.start, store=store,
                                symbols=list(args.symbols) if args.symbols else None, progress=not args.quiet)
        print(f"store {store.root}: {len(rep.symbols)} symbols, {rep.bars:,} bars, {rep.bytes / 1e6:.1f} MB "
              f"in {rep.seconds:.1f} s ({rep.bars_per_s:,.0f} bars/s)")
        return 0
    symbols = tuple(args.symbols) if args.symbols else ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    made = generate_sample(store, n=args.bars, seed=args.seed, symbols=symbols, force=args.force)
    kept = [s for s in symbols if s not in made]
    print(f"store {store.root}: generated {made or 'nothing'}" + (f"; already present {kept} (--force regenerates)" if kept else ""))
    return 0


def _import(args: argparse.Namespace) -> int:
    from spark_research.data.loaders import load_file
    from spark_research.data.store import BarStore, default_store

    store = BarStore(args.store) if args.store else default_store()
    status = 0
    for path in args.paths:
        if os.path.isdir(path):  # a directory of kline dumps: parallel, resumable, bad rows reported
            status = max(status, _import_dir(path, store, args))
            continue
        kind, frame = load_file(path, args.format, args.symbol)
        written = store.write_bars(frame) if kind == "bars" else store.write_trades(frame)
        print(f"{path}: {len(frame)} {kind} of {sorted(frame['symbol'].unique())} -> {written} bytes")
    return status


def _import_dir(path: str, store, args: argparse.Namespace) -> int:  # noqa: ANN001 - BarStore, imported lazily
    from spark_research.data.importer import import_klines

    rep = import_klines(path, store, workers=args.workers, progress=not args.quiet, reimport=args.reimport)
    print(f"{path}: {len(rep.imported)} files imported ({rep.bars:,} bars, {rep.bytes:,} bytes), "
          f"{len(rep.skipped)} already imported, {len(rep.failed)} bad files, {rep.bad_rows} bad rows")
    for bad in rep.bad[:50]:
        print(f"  bad: {bad}")
    if len(rep.bad) > 50:
        print(f"  ... and {len(rep.bad) - 50} more")
    return 0 if rep.ok else 1


def _list(args: argparse.Namespace) -> int:
    from spark_research.data.store import BarStore, default_store

    store = BarStore(args.store) if args.store else default_store()
    summary = store.summary()
    print(f"store {store.root}")
    print(summary.to_string(index=False) if len(summary) else "(empty: run `spark data generate --sample`)")
    return 0


def _download(args: argparse.Namespace) -> int:
    from spark_research.data.download import DownloadConfig, ccxt_exchange, download_bars, download_trades
    from spark_research.data.store import BarStore, default_store

    store = BarStore(args.store) if args.store else default_store()
    exchange = ccxt_exchange(args.exchange, api_base=args.api_base)
    config = DownloadConfig(page_limit=args.limit, max_retries=args.retries, progress=not args.quiet)
    if args.trades:
        report = download_trades(exchange, args.symbol, args.since, args.until, store,
                                 store_symbol=args.store_symbol, config=config, force=args.force)
    else:
        report = download_bars(exchange, args.symbol, args.timeframe, args.since, args.until, store,
                               store_symbol=args.store_symbol, config=config, force=args.force)
    print(f"store {store.root}: {report.summary()}")
    for bad in report.bad_rows:
        print(f"  bad row skipped: {bad}")
    return 1 if report.bad_rows else 0


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
    gen.add_argument("--universe", type=int, metavar="N", help="a synthetic universe of N symbols (U000USDT, ...), "
                     "streamed to the store month by month")
    gen.add_argument("--days", type=int, help="days of 1-minute bars per universe symbol (default 365)")
    gen.add_argument("--start", default="2024-01-01", help="first day of the universe, UTC (default 2024-01-01)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_generate)

    imp = data_sub.add_parser("import", help="validate and import CSV/Parquet/Binance dumps, or directories of kline dumps")
    imp.add_argument("paths", nargs="+")
    imp.add_argument("--format", default="auto", choices=["auto", "csv", "parquet", "binance-klines", "binance-trades"])
    imp.add_argument("--symbol", help="symbol (default: from the file, or the Binance file name)")
    imp.add_argument("--store", help="store directory")
    imp.add_argument("--workers", type=int, help="processes for a directory of dumps (default: CPUs, at most 4)")
    imp.add_argument("--reimport", action="store_true", help="import files the manifest says are imported already")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=_import)

    dl = data_sub.add_parser("download", help="download bars or trades from any ccxt exchange (resumable)")
    dl.add_argument("--exchange", required=True, help="ccxt exchange id (binance, okx, kraken, bybit, ...)")
    dl.add_argument("--symbol", required=True, help="ccxt unified symbol, e.g. BTC/USDT")
    dl.add_argument("--timeframe", default="1m", help="bar length (default 1m; ignored with --trades)")
    dl.add_argument("--since", required=True, help="first time, UTC (e.g. 2024-01-01 or 2024-01-01T06:00)")
    dl.add_argument("--until", help="end time, UTC, exclusive (default: now)")
    dl.add_argument("--trades", action="store_true", help="public trades instead of bars")
    dl.add_argument("--store", help="store directory")
    dl.add_argument("--store-symbol", help="symbol in the store (default: BTC/USDT -> BTCUSDT)")
    dl.add_argument("--api-base", help="http(s)://host:port replacing the venue's API host (testnet, proxy)")
    dl.add_argument("--limit", type=int, help="rows per request (default: the venue's maximum)")
    dl.add_argument("--retries", type=int, default=5, help="retries per request on 429/5xx/timeouts (default 5)")
    dl.add_argument("--force", action="store_true", help="download again what is already stored")
    dl.add_argument("--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(func=_download)

    lst = data_sub.add_parser("list", help="what the store holds")
    lst.add_argument("--store", help="store directory")
    lst.set_defaults(func=_list)
