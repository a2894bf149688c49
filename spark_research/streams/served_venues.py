"""The multi-venue ingest as ``spark serve`` runs it: each venue's replay on 127.0.0.1, one ingest over them.

:class:`ServedVenues` starts, for ``venue:SYM1,SYM2`` specs (Coinbase, Kraken, OKX, Bybit), one
:class:`~spark_research.streams.venues.replay.VenueReplay` per venue on a free loopback port
(the venue's wire protocol, at a modest ``rate_per_symbol``, with the demo's faults: now and then
a skipped frame and a wrong book checksum, so gaps, resyncs and checksum failures are seen being
handled) and one :class:`~spark_research.streams.multi.MultiIngest` over them, journaling under
``root`` (``<venue>.sqlite``). The ingest process of ``spark serve``
(:mod:`spark_research.streams.service`) runs it next to the Binance demo stream.

Restart: each symbol's tape continues after the last trade id its journal holds (a restarted
process resumes every symbol where it stopped: nothing stored twice, nothing skipped). Every
venue replays the same price path per instrument (:func:`demo_tape`: the price is a function of
the trade id), so the venues quote within a few basis points of one another and the consolidated
top of book is a sensible one. The Binance demo stream is a replay of its own (its own tape, ten
times faster): listed and consolidated beside them, it drifts away and often shows as crossed.

:meth:`ServedVenues.snapshot` is the ``venues`` and ``consolidated`` sections of the ingest's
``/snapshot``: per (venue, symbol) the ingest status (connection and book state, last price,
counters, latency P50/P95), its best bid/ask with sizes, and per instrument the
:func:`~spark_research.streams.consolidated.consolidated_top_of_book`.

Example::

    >>> import tempfile
    >>> sv = ServedVenues(["kraken:BTC/USD", "okx:BTC-USDT"], root=tempfile.mkdtemp(), rate_per_symbol=200).start()
    >>> sv.venues()
    {'kraken': ['BTC/USD'], 'okx': ['BTC-USDT']}
    >>> snap = sv.snapshot()                       # doctest: +SKIP
    >>> snap["consolidated"][0]["instrument"]      # doctest: +SKIP
    'BTC-USD'
    >>> sv.stop()
"""
from __future__ import annotations

import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

from spark_research.data.synthetic import generate_trades
from spark_research.streams.consolidated import VenueTop, consolidated_top_of_book, instrument
from spark_research.streams.multi import MultiIngest, VenueSpec, build_multi_ingest, parse_venue_spec
from spark_research.streams.replay import Faults
from spark_research.streams.venues import VENUES
from spark_research.streams.venues.base import canonical

#: What ``spark serve`` ingests besides the Binance demo stream (``--venue`` / ``SPARK_STREAM_VENUES`` override).
DEFAULT_VENUES = ("coinbase:BTC-USD,ETH-USD", "kraken:BTC/USD", "okx:BTC-USDT,ETH-USDT", "bybit:BTCUSDT")
#: Trade messages per second per symbol of the served replays (a venue with two symbols: 40 msg/s).
DEMO_RATE_PER_SYMBOL = 20.0
#: A skipped frame (a trade gap backfilled over REST, or a book gap resynced) every ~8000 frames of a
#: connection and a wrong checksum every 6000 book updates (Kraken, OKX): seen every few minutes,
#: rarely enough that ``StreamsBookChecksumFailing`` (> 3 in 10 min) stays quiet.
DEMO_VENUE_FAULTS = "skip_every=8000,checksum_every=6000"
#: Trade messages per symbol on each replay's tape (at 20 msg/s: about 80 minutes).
DEMO_TAPE = 100_000
#: Trades per block of :func:`demo_tape`'s path (each block drawn on its own, so trade ``i`` never changes).
TAPE_BLOCK = 10_000
#: Recent inter-message gaps (ms) per symbol in a snapshot (the monitor's histogram).
SNAPSHOT_GAPS = 500


def venue_specs(raw: str | None) -> tuple[str, ...]:
    """``SPARK_STREAM_VENUES``'s value as specs: None → :data:`DEFAULT_VENUES`; ``""`` → none;
    ``"kraken:BTC/USD;okx:BTC-USDT,ETH-USDT"`` → two specs. Each is checked (:func:`served_spec`).

    Example: ``venue_specs("kraken:BTC/USD; ")`` → ``('kraken:BTC/USD',)``.
    """
    if raw is None:
        return DEFAULT_VENUES
    specs = tuple(s.strip() for s in raw.split(";") if s.strip())
    for s in specs:
        served_spec(s)
    return specs


def served_spec(spec: str | VenueSpec) -> VenueSpec:
    """``spec`` parsed, with a venue that has a replay (Binance is the demo stream, ``--symbol``).

    Example: ``served_spec("okx:BTC-USDT").venue`` → ``'okx'``.
    """
    s = parse_venue_spec(spec) if isinstance(spec, str) else spec
    if s.venue not in VENUES:
        raise ValueError(f"venue spec {spec!r}: venue {s.venue!r} has no served replay; served venues are "
                         f"{list(VENUES)} (Binance is the demo stream: its symbol is SPARK_STREAM_SYMBOL)")
    return s


def demo_tape(symbol: str, first_id: int, n: int, seed: int = 42) -> pd.DataFrame:
    """Trades ``first_id .. first_id + n - 1`` of ``symbol``'s instrument path (``generate_trades`` columns).

    The path depends on the instrument only (:func:`~spark_research.streams.consolidated.instrument`):
    ``BTC/USD`` on Kraken and ``BTCUSDT`` on Bybit trade the same prices at the same trade ids,
    starting from the reference price of ``BTCUSDT``. Trade ``i`` is the same whatever ``first_id``
    and ``n`` (the path is drawn in fixed blocks of :data:`TAPE_BLOCK` trades, each seeded by its
    index and starting at the previous block's last price).

    Example::

        >>> a, b = demo_tape("BTC/USD", 1, 10), demo_tape("BTC-USDT", 6, 50_000)
        >>> list(b["seq"][:3]), a["price"].iloc[5:].tolist() == b["price"].iloc[:5].tolist()
        ([6, 7, 8], True)
    """
    if first_id < 1 or n < 1:
        raise ValueError(f"demo_tape: first_id and n must be >= 1, got first_id={first_id!r}, n={n!r}")
    base, _, quote = instrument(symbol).partition("-")
    ref = base + ("USDT" if quote == "USD" else quote)
    last_id = first_id - 1 + n
    blocks, price = [], None
    for b in range((last_id - 1) // TAPE_BLOCK + 1):
        block = generate_trades(ref, n=TAPE_BLOCK, seed=seed + b, first_seq=b * TAPE_BLOCK + 1, price=price)
        price = float(block["price"].iloc[-1])
        if (b + 1) * TAPE_BLOCK >= first_id:
            blocks.append(block)
    tape = pd.concat(blocks, ignore_index=True)
    tape = tape[(tape["seq"] >= first_id) & (tape["seq"] <= last_id)]
    return tape.assign(symbol=canonical(symbol)).reset_index(drop=True)


def stored_last_ids(root: str | Path, venue: str, symbols: list[str]) -> dict[str, int | None]:
    """``{canonical symbol: last stored trade id or None}`` from ``root/<venue>.sqlite``."""
    import sqlite3

    from spark_research.streams.venues.journal import stored_last_id

    path = Path(root) / f"{venue}.sqlite"
    out: dict[str, int | None] = {canonical(s): None for s in symbols}
    if not path.exists():
        return out
    con = sqlite3.connect(path, timeout=30)  # read-write: it may recover a WAL left by a kill -9
    try:
        for sym in out:
            out[sym] = stored_last_id(con, sym)
    except sqlite3.OperationalError:  # created but no table yet
        pass
    finally:
        con.close()
    return out


def book_top(book) -> dict[str, Any]:
    """``{"bid", "bid_size", "ask", "ask_size", "update_id", "synced"}`` of a local book (call on its loop)."""
    synced = book.last_update_id is not None
    bid = max(book.bids) if synced and book.bids else None
    ask = min(book.asks) if synced and book.asks else None
    return {"bid": bid, "bid_size": book.bids[bid] if bid is not None else None,
            "ask": ask, "ask_size": book.asks[ask] if ask is not None else None,
            "update_id": book.last_update_id, "synced": synced}


class ServedVenues:
    """Replays + one multi-venue ingest for ``specs`` (see the module docstring).

    ``rate_per_symbol``: trade messages per second of each symbol; ``faults``: the replays'
    (default :data:`DEMO_VENUE_FAULTS`; ``Faults()`` for clean feeds); ``n``: trades per symbol
    per tape; ``stale_after_s``: a book unchanged that long is left out of the consolidated best.
    """

    def __init__(self, specs: list[str] | tuple[str, ...], *, root: str | Path,
                 rate_per_symbol: float = DEMO_RATE_PER_SYMBOL, faults: Faults | None = None, n: int = DEMO_TAPE, seed: int = 42, stale_after_s: float = 5.0,
                 **ingest_options):
        if not rate_per_symbol > 0:
            raise ValueError(f"rate_per_symbol must be > 0, got {rate_per_symbol!r}")
        self.symbols: dict[str, list[str]] = {}
        for spec in specs:
            s = served_spec(spec)
            have = self.symbols.setdefault(s.venue, [])
            have += [x for x in s.symbols if canonical(x) not in {canonical(h) for h in have}]
        self.root, self.rate_per_symbol, self.n, self.seed = Path(root), rate_per_symbol, n, seed
        self.faults = Faults.parse(DEMO_VENUE_FAULTS) if faults is None else faults
        self.stale_after_s = stale_after_s
        self.ingest_options = ingest_options
        self.replays: dict[str, Any] = {}
        self.ingest: MultiIngest | None = None
        self._seen: dict[tuple[str, str], tuple[Any, float]] = {}  # book update id and when it last changed
        self._lock = threading.Lock()

    def venues(self) -> dict[str, list[str]]:
        """``{venue: [native symbols]}`` served (``/health``'s list)."""
        from spark_research.streams.venues import get_venue

        return {v: [get_venue(v).native(s) for s in syms] for v, syms in self.symbols.items()}

    def start(self) -> "ServedVenues":
        """Start every venue's replay (tapes continuing after the stored ids), then the ingest."""
        from spark_research.streams.venues.replay import VenueReplay

        if not self.symbols:
            return self
        urls = {}
        for venue, natives in self.venues().items():
            last = stored_last_ids(self.root, venue, natives)
            tapes = {canonical(s): demo_tape(s, (last[canonical(s)] or 0) + 1, self.n, self.seed) for s in natives}
            # the books differ per venue (their own seed), around the instrument's common price path
            ex = VenueReplay(venue, natives, n=self.n, seed=self.seed + zlib.crc32(venue.encode()) % 10_000,
                             rate=self.rate_per_symbol * len(natives), faults=self.faults, host="127.0.0.1",
                             tapes=tapes, min_clients=1).start()  # no trade published before the ingest listens
            self.replays[venue] = ex
            urls[venue] = (ex.ws_url, ex.rest_url)
        specs = [VenueSpec(v, tuple(s)) for v, s in self.symbols.items()]
        self.ingest = build_multi_ingest(specs, urls=urls, root=self.root, from_id=1, **self.ingest_options).start()
        return self

    def stop(self) -> None:
        """Stop the ingest (every symbol commits its last batch), close its journals, stop the replays."""
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest.close()
            self.ingest = None
        for ex in self.replays.values():
            ex.stop()
        self.replays.clear()

    # ----------------------------------------------------------------- snapshot
    def _read_feeds(self) -> list[dict[str, Any]]:
        rows = []
        for f in self.ingest.feeds:  # on the ingest's loop: every number of one instant
            fs = f.status()
            for sym, status in fs["symbols"].items():
                c = f.clients[sym]
                counters = {**status["counters"], "malformed": fs["malformed"]}  # the connection's, all symbols
                rows.append({**status, "counters": counters, "venue": f.venue, "native": f.books[sym].native,
                             "connected": fs["connected"], "frames": fs["frames"], "conn_gaps": fs["conn_gaps"],
                             "top": book_top(c.book), "gaps_ms": list(c.gaps_ms)[-SNAPSHOT_GAPS:]})
        return rows

    def _age(self, venue: str, symbol: str, update_id: Any, now: float) -> float:
        with self._lock:
            seen = self._seen.get((venue, symbol))
            if seen is None or seen[0] != update_id:
                self._seen[(venue, symbol)] = seen = (update_id, now)
            return now - seen[1]

    def snapshot(self, main=None) -> dict[str, Any]:
        """``{"venues": [row per (venue, symbol)], "consolidated": [per instrument]}`` (see the module docstring).

        ``main``: the demo stream's :class:`~spark_research.streams.ingest.IngestClient`, listed
        (and consolidated) as a venue too. A row is the symbol's ingest status plus ``venue``,
        ``native``, ``instrument``, ``connected``, ``top`` (best bid/ask, sizes, ``synced``, ``age_s``)
        and, for the venue feeds, ``gaps_ms`` (recent inter-message gaps).
        """
        rows = self.ingest.call(self._read_feeds) if self.ingest is not None else []
        if main is not None:
            status, top = main.call(lambda: (main.status(), book_top(main.book)))
            rows.insert(0, {**status, "venue": main.exchange, "native": main.symbol,
                            "connected": status["state"].get("trade") == "connected", "top": top})
        now = time.monotonic()
        tops = []
        for r in rows:
            t = r["top"]
            t["age_s"] = round(self._age(r["venue"], r["native"], t["update_id"], now), 3)
            r["instrument"] = instrument(r["native"])
            tops.append(VenueTop(r["venue"], r["native"], t["bid"], t["bid_size"], t["ask"], t["ask_size"],
                                 age_s=t["age_s"], synced=t["synced"]))
        consolidated = consolidated_top_of_book(tops, stale_after_s=self.stale_after_s)
        return {"venues": rows, "consolidated": [c.as_dict() for c in consolidated.values()]}


def stream_snapshot(pipeline, venues: ServedVenues) -> dict[str, Any]:
    """The demo pipeline's :meth:`~spark_research.streams.pipeline.StreamPipeline.snapshot` with the
    ``venues`` and ``consolidated`` sections (the ingest process's ``/snapshot``)."""
    return {**pipeline.snapshot(), **venues.snapshot(main=pipeline.client)}


__all__ = ["DEFAULT_VENUES", "DEMO_RATE_PER_SYMBOL", "DEMO_TAPE", "DEMO_VENUE_FAULTS", "ServedVenues", "TAPE_BLOCK",
           "book_top", "demo_tape", "served_spec", "stored_last_ids", "stream_snapshot", "venue_specs"]
