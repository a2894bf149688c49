"""cryptofeed's trade feeds against the replay exchange on 127.0.0.1: the peer of ``bench/streams.py``.

Runs in its own interpreter, a throwaway venv with cryptofeed (it is not a project dependency;
``make cryptofeed-venv`` creates ``/tmp/cfvenv``), and imports nothing from ``spark_research``.
For each ``--venue NAME WS_URL SYMBOLS`` it subscribes cryptofeed's ``TRADES`` channel for the
venue's native symbols (``S00-USDT``, ``S00USDT``, ``S00-USD``) and counts the trades its
callback receives, until every one of ``--n`` trades per symbol arrived or ``--timeout`` passed.
Prints one JSON line: ``{"trades", "expected", "seconds", "msg_per_s", "complete", ...}``;
``msg_per_s`` = trades / (all trades counted − first trade counted), polled every 2 ms as
``bench/streams.py`` polls its own ingest.

How cryptofeed 2.4.1 is pointed at loopback without touching its code or the replay:

* its feeds read their endpoints from the class attribute ``websocket_endpoints``: a subclass per
  venue replaces it by one ``WebsocketEndpoint`` at the replay's URL (same channel/instrument
  filters as the venue's public endpoint it stands for);
* ``WSAsyncConn`` refuses any address but ``wss://``: the check is satisfied with the ``wss://``
  spelling, then the plain ``ws://`` address is put back (no TLS on loopback, as for our ingest);
* before connecting, a feed downloads the venue's symbol list over REST unless
  ``cryptofeed.symbols.Symbols`` already holds it: it is set from the given symbols, so no REST call;
* Coinbase: cryptofeed signs every subscription (even public channels) with ``key_id``/``key_secret``
  from its config: dummy keys are given; the replay ignores the signature fields. It also
  subscribes to ``heartbeat`` (Coinbase's channel is ``heartbeats``): the replay answers with an
  error frame, which cryptofeed drops, so no heartbeats flow (none are needed).

Modes: ``count`` (the callback only counts: cryptofeed's floor) and ``list`` (it also appends
each ``Trade`` to a list: the least a user does with a trade; ids are then checked for
completeness). Neither stores anything, where our ingest commits every trade to SQLite.

Example (replays started with ``spark stream replay --venue okx --symbols S00USDT,S01USDT ...``)::

    /tmp/cfvenv/bin/python bench/cryptofeed_peer.py --n 1000 --mode list \\
        --venue okx ws://127.0.0.1:PORT/ws/v5/public S00-USDT,S01-USDT
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
import time
from importlib.metadata import version

from cryptofeed import FeedHandler
from cryptofeed.connection import WSAsyncConn, WebsocketEndpoint
from cryptofeed.defines import SPOT, TRADES
from cryptofeed.exchanges import OKX, Bybit, Coinbase
from cryptofeed.symbols import Symbol, Symbols

#: The venues whose protocol cryptofeed 2.4.1 speaks in the version the replay serves.
FEEDS = {"okx": OKX, "bybit": Bybit, "coinbase": Coinbase}
_QUOTE = re.compile(r"(USDT|USDC|USD|EUR|BTC|ETH)$")


def _split(native: str) -> tuple[str, str]:
    """``("S00", "USDT")`` from ``S00-USDT``, ``S00/USDT`` or ``S00USDT``."""
    for sep in ("-", "/"):
        if sep in native:
            base, quote = native.split(sep, 1)
            return base, quote
    m = _QUOTE.search(native)
    if not m or m.start() == 0:
        raise ValueError(f"symbol {native!r}: cannot tell base from quote")
    return native[: m.start()], m.group(1)


def _allow_plain_ws() -> None:
    """Let ``WSAsyncConn`` take a ``ws://`` address (it accepts ``wss://`` only)."""
    init = WSAsyncConn.__init__

    def __init__(self, address: str, conn_id: str, **kw):
        plain = address.startswith("ws://")
        init(self, "wss://" + address[5:] if plain else address, conn_id, **kw)
        if plain:
            self.address = address

    WSAsyncConn.__init__ = __init__


def loopback_feed(venue: str, ws_url: str, natives: list[str]) -> tuple[type, list[str]]:
    """A subclass of cryptofeed's ``venue`` feed connecting to ``ws_url``, and its normalized symbols.

    Fills cryptofeed's symbol cache for the venue with ``natives`` so the feed makes no REST call.
    """
    base_cls = FEEDS[venue]
    public = base_cls.websocket_endpoints[0] if venue != "bybit" else base_cls.websocket_endpoints[1]  # bybit: spot
    endpoint = WebsocketEndpoint(ws_url, instrument_filter=public.instrument_filter,
                                 channel_filter=public.channel_filter, options={"compression": None})
    mapping, info = {}, {"tick_size": {}, "instrument_type": {}}
    for native in natives:
        base, quote = _split(native)
        s = Symbol(base, quote, type=SPOT).normalized
        mapping[s] = f"{base}/{quote}" if venue == "bybit" else native  # bybit keys spot as BASE/QUOTE
        info["tick_size"][s], info["instrument_type"][s] = "0.01", SPOT
    Symbols.set(base_cls.id, mapping, info)
    cls = type(f"Loopback{base_cls.__name__}", (base_cls,), {"websocket_endpoints": [endpoint]})
    return cls, list(mapping)


class _Errors(logging.Handler):
    """cryptofeed logs a feed's errors and reconnects: keep them, so a run that broke says so."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname}: {record.getMessage()}"[:300])


async def _wait(counter: dict, expected: int, timeout: float, errors: _Errors) -> tuple[float, float | None]:
    """Poll the count every 2 ms: (first trade seen, all seen or None)."""
    deadline = time.monotonic() + timeout
    t0 = None
    while time.monotonic() < deadline and not any(m.startswith("ERROR") for m in errors.messages):
        n = counter["n"]
        if t0 is None and n:
            t0 = time.perf_counter()
        if n >= expected:
            return t0, time.perf_counter()
        await asyncio.sleep(0.002)
    return t0 or time.perf_counter(), None


def run(venues: list[tuple[str, str, list[str]]], n: int, mode: str, timeout: float) -> dict:
    """Subscribe every venue's trades; return the JSON-able outcome."""
    _allow_plain_ws()
    errors = _Errors()
    logging.getLogger("feedhandler").addHandler(errors)
    config = {"log": {"disabled": True}, "uvloop": True,  # cryptofeed's default event loop
              "coinbase": {"key_id": "loopback", "key_secret": "loopback"}}
    fh = FeedHandler(config=config)
    counter = {"n": 0}
    trades: list = []

    if mode == "count":
        async def on_trade(t, receipt_timestamp):
            counter["n"] += 1
    else:
        async def on_trade(t, receipt_timestamp):
            trades.append(t)
            counter["n"] += 1

    expected = 0
    for venue, url, natives in venues:
        cls, symbols = loopback_feed(venue, url, natives)
        fh.add_feed(cls(config=config, symbols=symbols, channels=[TRADES], callbacks={TRADES: on_trade}))
        expected += n * len(natives)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop_kind = type(loop).__module__.split(".")[0]  # uvloop, as FeedHandler sets it up
    fh.run(start_loop=False, install_signal_handlers=False)
    t0, t1 = loop.run_until_complete(_wait(counter, expected, timeout, errors))
    got = counter["n"]
    loop.run_until_complete(fh.stop_async())
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in pending:
        t.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()
    complete = t1 is not None
    if mode == "list":  # every (venue, symbol, id) once: nothing lost, nothing twice
        complete = complete and len({(t.exchange, t.symbol, t.id) for t in trades}) == expected
    seconds = (t1 or time.perf_counter()) - t0
    return {"trades": got, "expected": expected, "seconds": round(seconds, 6),
            "msg_per_s": round(got / max(seconds, 1e-9), 1), "complete": complete, "mode": mode,
            "cryptofeed": version("cryptofeed"), "event_loop": loop_kind,
            "errors": errors.messages[:5]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venue", nargs=3, action="append", required=True, metavar=("NAME", "WS_URL", "SYMBOLS"),
                    help=f"one of {sorted(FEEDS)}, the replay's WebSocket URL (with the venue's path), "
                         "comma-separated native symbols")
    ap.add_argument("--n", type=int, required=True, help="trades per symbol")
    ap.add_argument("--mode", choices=("count", "list"), default="count")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    venues = []
    for name, url, syms in args.venue:
        if name not in FEEDS:
            ap.error(f"--venue {name!r}: cryptofeed is compared on {sorted(FEEDS)} only")
        if not url.startswith(("ws://127.0.0.1", "ws://localhost")):
            ap.error(f"--venue {name} {url!r}: a loopback ws:// URL is expected")
        venues.append((name, url, [s for s in syms.split(",") if s]))
    out = run(venues, args.n, args.mode, args.timeout)
    print(json.dumps(out))
    return 0 if out["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
