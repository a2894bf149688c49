"""``spark serve`` (the whole platform on one local server) and ``spark status`` (what is up).

``spark serve`` starts the replay exchange and stream ingest, the paper engine with its gates,
the export manager, the optimizer's Dask cluster and one Panel server with every app of
``apps/`` behind an index page, plus ``/health``, ``/metrics`` and ``/export/*``. It stays up
until Ctrl-C or SIGTERM, then stops everything (no child process survives it).

Ports: ``--port`` / ``SPARK_PORT`` (default 5006) for the web server; ``--prometheus-port``
(default port + 84) for the optional local Prometheus; the replay exchange and the Dask
cluster pick free loopback ports. Everything binds ``SPARK_HOST`` (127.0.0.1 by default).

The implementation lives in :mod:`spark_research.platform`.
"""
from __future__ import annotations

import argparse
import errno
import os
import socket
import sys

DEFAULT_PORT = 5006


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` and ``status`` commands."""
    p = subparsers.add_parser("serve", help="run the whole platform: apps, streams, gates, exports, optimizer")
    p.add_argument("--port", type=int, default=None, help=f"web server port (env SPARK_PORT, default {DEFAULT_PORT})")
    p.add_argument("--host", default=None, help="bind address (env SPARK_HOST, default 127.0.0.1)")
    p.add_argument("--prometheus", action="store_true",
                   help="also run a local Prometheus scraping the platform, with the rules of rules/")
    p.add_argument("--prometheus-port", type=int, default=None, help="local Prometheus port (default port + 84)")
    p.add_argument("--workers", type=int, default=2, help="Dask LocalCluster workers (ignored with SPARK_DASK_SCHEDULER)")
    p.add_argument("--rate", type=float, default=None,
                   help="replay exchange messages per second (env SPARK_STREAM_RATE, default 200)")
    p.add_argument("--faults", default=None,
                   help="replay fault knobs, e.g. 'skip_every=400' ('' for a clean stream; env SPARK_STREAM_FAULTS; "
                        "default: a gap, a duplicate and a malformed frame now and then)")
    p.add_argument("--venue", action="append", default=None, metavar="VENUE:SYM[,SYM]",
                   help="a venue of the multi-venue ingest beside the demo stream, e.g. kraken:BTC/USD (repeatable; "
                        "coinbase, kraken, okx, bybit; env SPARK_STREAM_VENUES, ';'-separated, '' for none; default "
                        "Coinbase, Kraken, OKX and Bybit BTC, and ETH on Coinbase and OKX)")
    p.add_argument("--strategy", default="sma_cross",
                   help="strategy of the live paper session: a name, package.module:Class or path/file.py:Class")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a parameter of --strategy (repeatable)")
    p.add_argument("--no-exercise", action="store_true", help="skip the start-up backtest, sweep and export")
    p.add_argument("--write-prometheus-config", metavar="FILE", default=None,
                   help="write a Prometheus scrape config for this platform to FILE and exit")
    p.add_argument("--scrape-interval", default="5s", help="scrape interval of the written config (default 5s)")
    p.set_defaults(func=_serve)

    s = subparsers.add_parser("status", help="ask a running spark serve what is up (its /health)")
    s.add_argument("--port", type=int, default=None, help=f"web server port (env SPARK_PORT, default {DEFAULT_PORT})")
    s.add_argument("--host", default=None, help="host (env SPARK_HOST, default 127.0.0.1)")
    s.add_argument("--json", action="store_true", help="print the raw /health JSON")
    s.set_defaults(func=_status)


def resolve_port(value: int | None) -> int:
    """``--port``, else ``SPARK_PORT``, else 5006; a clear error naming the bad value."""
    if value is None:
        raw = os.environ.get("SPARK_PORT", "").strip()
        if not raw:
            return DEFAULT_PORT
        if not raw.isdigit():
            raise SystemExit(f"spark: SPARK_PORT={raw!r} is not a port number")
        value = int(raw)
    if not 0 < value <= 65535:
        raise SystemExit(f"spark: port {value} is outside 1..65535")
    return value


def _host(value: str | None) -> str:
    from spark_research.config import settings

    return value or settings().host


def port_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (a bind without SO_REUSEADDR succeeds)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _serve(args: argparse.Namespace) -> int:
    port, host = resolve_port(args.port), _host(args.host)
    if args.write_prometheus_config:
        from spark_research.platform.prometheus import default_rules, write_scrape_config

        target = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        path = write_scrape_config(args.write_prometheus_config, [f"{target}:{port}"], interval=args.scrape_interval,
                                   rules=default_rules())
        print(f"spark serve: wrote Prometheus config for {target}:{port} to {path}")
        return 0
    # Fail at once, before anything heavy starts, if a port is taken (a second spark serve, say).
    ports = [("web server (--port/SPARK_PORT)", port)]
    if args.prometheus:
        ports.append(("prometheus (--prometheus-port)", args.prometheus_port or port + 84))
    for what, p in ports:
        if not port_free(host, p):
            print(f"spark serve: port {p} on {host} is already in use ({what}); is another spark serve running? "
                  f"Stop it or choose another port.", file=sys.stderr)
            return 2
    from spark_research.platform.components import ServeConfig
    from spark_research.platform.main import run

    from spark_research.backtest.cli import _parse_params
    from spark_research.streams.served_venues import venue_specs

    venues = tuple(args.venue) if args.venue else None
    try:  # a bad venue spec fails here, before anything starts
        venue_specs(";".join(venues) if venues else os.environ.get("SPARK_STREAM_VENUES"))
    except ValueError as exc:
        print(f"spark serve: {'--venue' if args.venue else 'SPARK_STREAM_VENUES'}: {exc}", file=sys.stderr)
        return 2

    cfg = ServeConfig(host=host, port=port, prometheus=args.prometheus, prometheus_port=args.prometheus_port,
                      n_workers=args.workers, rate=args.rate, faults=args.faults, venues=venues,
                      exercise=not args.no_exercise,
                      strategy=args.strategy, strategy_params=_parse_params(args.param) if args.param else None)
    if args.strategy != "sma_cross" or args.param:
        cfg.check_strategy()  # the shipped default needs no check (and no vectorbt import before the server is up)
    return run(cfg)


def _status(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request

    port, host = resolve_port(args.port), _host(args.host)
    url = f"http://{host}:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:  # 503: degraded or starting, still a health document
        body = json.loads(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        print(f"spark status: nothing answers at {url} ({getattr(exc, 'reason', exc)}); is spark serve running?",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(f"spark serve at {host}:{port}: {body['status']} (pid {body['pid']}, up {body['uptime_s']:.0f}s)")
        for name, c in body["components"].items():
            extra = f"  {c['error']}" if c.get("error") else ""
            print(f"  {name:<11} {c['state']:<9}{extra}")
    return 0 if body["status"] == "ok" else 1

