"""``spark stream replay|ingest|status``: run the replay exchange, the ingest, or show ingest status.

Example::

    spark stream replay --rate 1000 --port 9443 --faults skip_every=200,drop_every=5000
    spark stream replay --orders latency_ms=50,slippage_bps=3,partial_fill_prob=0.3
    spark stream ingest --ws-url ws://127.0.0.1:9443 --rest-url http://127.0.0.1:9443 --from-id 1
    spark stream replay --venue kraken --symbols BTC/USD,ETH/USD --port 9001
    spark stream ingest --venue binance:BTCUSDT,ETHUSDT --venue kraken:BTC/USD,ETH/USD \
        --venue-url binance=ws://127.0.0.1:9443 --venue-url kraken=ws://127.0.0.1:9001 --from-id 1
    spark stream status
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``stream`` command and its subcommands to the ``spark`` parser."""
    p = subparsers.add_parser("stream", help="live streams: replay exchange, ingest, status")
    sub = p.add_subparsers(dest="stream_command", metavar="SUBCOMMAND", required=True)

    r = sub.add_parser("replay", help="serve a replay exchange on 127.0.0.1 (Binance format, or --venue's)")
    r.add_argument("--symbol", default="BTCUSDT")
    r.add_argument("--venue", default="binance", help="binance, coinbase, kraken, okx or bybit")
    r.add_argument("--symbols", default=None, help="symbols of a --venue replay, comma-separated (e.g. BTC/USD,ETH/USD)")
    r.add_argument("--depth-every", type=int, default=None, help="trades of a symbol between two book updates")
    r.add_argument("--n", type=int, default=100_000, help="synthetic trades in the tape")
    r.add_argument("--first-id", type=int, default=1)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--rate", type=float, default=1_000.0, help="messages per second (1..50k)")
    r.add_argument("--host", default=None)
    r.add_argument("--port", type=int, default=9443)
    r.add_argument("--faults", default="", help="e.g. skip_every=50,drop_every=1000,stall_every=500,stall_ms=200")
    r.add_argument("--orders", default="", help="order execution, e.g. latency_ms=80,slippage_bps=3,"
                                                 "partial_fill_prob=0.2,expire_prob=0.05,reject_prob=0.01,seed=1")
    r.add_argument("--min-clients", type=int, default=0, help="hold the tape until N trade streams connect")
    r.add_argument("--from-store", action="store_true", help="replay trades stored in the data store")
    r.add_argument("--exit-when-done", type=float, default=None, metavar="S",
                   help="exit S seconds after the whole tape is published")
    r.set_defaults(func=_replay)

    i = sub.add_parser("ingest", help="ingest trades and depth from a Binance-format WebSocket")
    i.add_argument("--symbol", default="BTCUSDT")
    i.add_argument("--exchange", default="binance")
    i.add_argument("--venue", action="append", default=None, metavar="VENUE:SYM[,SYM]",
                   help="ingest these symbols of VENUE (repeatable; one connection per venue), e.g. kraken:BTC/USD")
    i.add_argument("--venue-url", action="append", default=[], metavar="VENUE=WS[,REST]",
                   help="endpoint of a --venue (default: the venue's public one), e.g. kraken=ws://127.0.0.1:9001")
    i.add_argument("--ws-url", default="ws://127.0.0.1:9443")
    i.add_argument("--rest-url", default="http://127.0.0.1:9443")
    i.add_argument("--root", default=None, help="journal/status directory (default var/ingest)")
    i.add_argument("--from-id", type=int, default=None)
    i.add_argument("--no-depth", action="store_true")
    i.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    i.add_argument("--metrics-port", type=int, default=None, help="serve /metrics on this port")
    i.add_argument("--durability", choices=("process", "power"), default="process")
    i.set_defaults(func=_ingest)

    s = sub.add_parser("status", help="print the status of the ingests under --root")
    s.add_argument("--root", default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_status)


def _logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


def _replay(args: argparse.Namespace) -> int:
    import asyncio
    import sys

    import orjson

    from spark_research.streams.orders import OrderConfig
    from spark_research.streams.replay import Faults, ReplayExchange, load_tape

    _logging()
    faults = Faults.parse(args.faults)
    if args.venue != "binance":
        return _venue_replay(args, faults)
    orders = OrderConfig.parse(args.orders)
    if args.from_store:
        tape = load_tape(args.symbol, n=args.n)
    else:
        from spark_research.data.synthetic import generate_trades

        tape = generate_trades(args.symbol, n=args.n, seed=args.seed, first_seq=args.first_id)
    ex = ReplayExchange(tape, rate=args.rate, faults=faults, host=args.host, port=args.port, seed=args.seed,
                        min_clients=args.min_clients, orders=orders)

    async def main() -> None:
        await ex.astart()
        sys.stdout.write(orjson.dumps({"ws_url": ex.ws_url, "rest_url": ex.rest_url, "port": ex.port}).decode() + "\n")
        sys.stdout.flush()
        while True:
            await asyncio.sleep(0.1)
            if ex.finished and args.exit_when_done is not None:
                await asyncio.sleep(args.exit_when_done)
                break
        await ex.astop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


def _venue_replay(args: argparse.Namespace, faults) -> int:
    import asyncio
    import sys

    import orjson

    from spark_research.streams.venues.replay import VenueReplay

    symbols = [s for s in (args.symbols or args.symbol).split(",") if s]
    ex = VenueReplay(args.venue, symbols, n=args.n, rate=args.rate, faults=faults, host=args.host, port=args.port,
                     seed=args.seed, min_clients=args.min_clients, depth_every=args.depth_every)

    async def main() -> None:
        await ex.astart()
        sys.stdout.write(orjson.dumps({"ws_url": ex.ws_url, "rest_url": ex.rest_url, "port": ex.port,
                                       "venue": ex.venue, "symbols": [m.native for m in ex.markets]}).decode() + "\n")
        sys.stdout.flush()
        while True:
            await asyncio.sleep(0.1)
            if ex.finished and args.exit_when_done is not None:
                await asyncio.sleep(args.exit_when_done)
                break
        await ex.astop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from spark_research.streams.ingest import IngestConfig, run_ingest

    _logging()
    if args.metrics_port is not None:
        from spark_research.metrics import serve_metrics

        serve_metrics(args.metrics_port)
    if args.venue:
        from spark_research.streams.multi import build_multi_ingest, parse_venue_url, run_multi_ingest

        urls = dict(parse_venue_url(u) for u in args.venue_url)
        ingest = build_multi_ingest(args.venue, urls=urls, root=args.root, from_id=args.from_id,
                                    depth=not args.no_depth, durability=args.durability)
        run_multi_ingest(ingest, duration_s=args.duration)
        return 0
    cfg = IngestConfig(symbol=args.symbol, exchange=args.exchange, ws_url=args.ws_url, rest_url=args.rest_url,
                       root=args.root, from_id=args.from_id, depth=not args.no_depth, durability=args.durability)
    run_ingest(cfg, duration_s=args.duration)
    return 0


def _status(args: argparse.Namespace) -> int:
    import time

    import orjson

    from spark_research.streams.ingest import read_status

    rows = read_status(args.root)
    if args.json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not rows:
        print("no ingest status found")
        return 1
    for s in rows:
        c, lat = s["counters"], s["latency_ms"]
        age = time.time() - s["updated_at"]
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{s['exchange']}:{s['symbol']} pid={s['pid']} updated {age:.1f}s ago  state={s['state']}\n"
              f"  last_id={s['last_id']} last_price={s['last_price']} msgs={c['msgs']} trades={c['trades']} "
              f"gaps={c['gaps']} open={s['gaps_open']} resyncs={c['resyncs']}+{c['book_resyncs']} "
              f"dups={c['duplicates']} malformed={c['malformed']} reconnects={c['reconnects']}\n"
              f"  latency ms p50={fmt(lat['p50'])} p95={fmt(lat['p95'])} p99={fmt(lat['p99'])}")
    return 0
