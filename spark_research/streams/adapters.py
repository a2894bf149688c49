"""Exchange adapters: one normaliser per venue behind :class:`ExchangeAdapter`.

An adapter knows a venue's public wire format and nothing else: how to build the stream
and REST URLs, how to turn a raw frame into a :class:`Trade` or :class:`DepthUpdate`, and how
to read the REST answers used for resync (historical trades from an id, a book snapshot).
The ingest client (:mod:`spark_research.streams.ingest`) never looks at raw JSON itself.

Plugging in a second venue: subclass :class:`ExchangeAdapter`, set ``name``, implement the
``*_url`` builders and the ``parse_*`` methods (raise :class:`MalformedMessage` with a short
``reason`` for anything unusable), and pass an instance as ``IngestConfig(adapter=...)``. The
venue must offer a monotonically increasing trade id and a REST way to fetch trades from an
id; for the book, diff updates carrying first/last update ids and a snapshot with its last
update id (this is the shape of Binance, Bybit, OKX and Coinbase feeds).

Example::

    >>> a = BinanceAdapter()
    >>> t = a.parse_trade(b'{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":"30000.5","q":"0.1","T":1,"m":true}')
    >>> (t.id, t.price, t.side)
    (7, 30000.5, 'sell')
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlencode

import orjson

from spark_research.streams.timeunits import UnitGuard


class MalformedMessage(ValueError):
    """A frame that cannot be used. ``reason`` is a short label (``json``, ``schema``, ``invalid``...)."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


class Trade(NamedTuple):
    """One trade print, normalised. ``time_us``/``event_us`` are UTC epoch microseconds.

    A named tuple rather than a dataclass: one is built per message on the hot path.
    """

    symbol: str
    id: int
    price: float
    qty: float
    time_us: int  #: trade time at the venue
    event_us: int  #: event (message) time at the venue; equals ``time_us`` for REST backfill
    buyer_maker: bool

    @property
    def side(self) -> str:
        """Aggressor side: ``sell`` when the buyer was the maker."""
        return "sell" if self.buyer_maker else "buy"


class TradeBatch(NamedTuple):
    """Trades of one symbol as columns, in arrival order: the many-trades-per-frame path.

    A venue frame carries tens to hundreds of trades; normalising them column by column and
    sequencing, aggregating and storing the run as a whole costs a fraction of one
    :class:`Trade` object per print. ``trades()`` gives the same prints as :class:`Trade` s.

    Example::

        >>> b = TradeBatch.of("BTCUSDT", [Trade("BTCUSDT", 7, 10.0, 1.0, 5, 5, False)])
        >>> b.ids, b.trades()[0].side
        ([7], 'buy')
    """

    symbol: str
    ids: list[int]
    prices: list[float]
    qtys: list[float]
    times_us: list[int]
    events_us: list[int]
    buyer_maker: list[bool]

    @classmethod
    def of(cls, symbol: str, trades) -> "TradeBatch":
        """The columns of ``trades`` (Trade-shaped tuples of ``symbol``)."""
        if not trades:
            return cls(symbol, [], [], [], [], [], [])
        _, ids, prices, qtys, times, events, bm = map(list, zip(*trades))
        return cls(symbol, ids, prices, qtys, times, events, bm)

    def trades(self) -> list[Trade]:
        """The batch as :class:`Trade` s."""
        s = self.symbol
        return [Trade(s, *r) for r in zip(self.ids, self.prices, self.qtys, self.times_us, self.events_us,
                                          self.buyer_maker)]


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    """One diff-depth event: absolute quantities per price level (qty 0 removes the level)."""

    symbol: str
    first_id: int  #: ``U``
    last_id: int  #: ``u``
    event_us: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """A full order book at ``last_update_id``."""

    symbol: str
    last_update_id: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]


class ExchangeAdapter:
    """The venue-specific part of the ingest. See the module docstring for adding a venue."""

    name: str = "abstract"
    rest_limit: int = 1000  #: most trades one REST backfill request returns

    def trade_stream_url(self, ws_base: str, symbol: str) -> str:
        """WebSocket URL of ``symbol``'s trade stream."""
        raise NotImplementedError

    def depth_stream_url(self, ws_base: str, symbol: str) -> str:
        """WebSocket URL of ``symbol``'s diff-depth stream."""
        raise NotImplementedError

    def trades_from_url(self, rest_base: str, symbol: str, from_id: int, limit: int) -> str:
        """REST URL returning up to ``limit`` trades with id >= ``from_id``."""
        raise NotImplementedError

    def snapshot_url(self, rest_base: str, symbol: str, limit: int) -> str:
        """REST URL of an order book snapshot."""
        raise NotImplementedError

    def parse_trade(self, raw: bytes | str) -> Trade:
        """Parse a trade stream frame; raise :class:`MalformedMessage` if unusable."""
        raise NotImplementedError

    def parse_depth(self, raw: bytes | str) -> DepthUpdate:
        """Parse a diff-depth frame; raise :class:`MalformedMessage` if unusable."""
        raise NotImplementedError

    def parse_trades_rest(self, body: bytes, symbol: str) -> list[Trade]:
        """Parse the REST historical trades answer."""
        raise NotImplementedError

    def parse_snapshot(self, body: bytes, symbol: str) -> BookSnapshot:
        """Parse the REST order book snapshot answer."""
        raise NotImplementedError

    async def fetch_trades(self, get, rest_base: str, symbol: str, from_id: int, limit: int,
                           since_us: int | None = None, until: Trade | None = None) -> list[Trade]:
        """Trades with id >= ``from_id`` from REST, by id (``get(url)`` returns the body).

        ``since_us`` is the time of the last stored trade and ``until`` the first trade still
        buffered after the gap: venues without paging by trade id (Kraken, Coinbase) page by
        time, OKX pages backwards from ``until``. The default is one request to :meth:`trades_from_url`.
        """
        return self.parse_trades_rest(await get(self.trades_from_url(rest_base, symbol, from_id, limit)), symbol)


_INF = float("inf")


def _positive(value: object, field: str) -> float:
    x = float(value)  # type: ignore[arg-type]
    if not math.isfinite(x) or x <= 0:
        raise MalformedMessage("invalid", f"field {field!r} = {value!r} must be a finite number > 0")
    return x


def _levels(raw: object, field: str) -> tuple[tuple[float, float], ...]:
    out = []
    for lvl in raw:  # type: ignore[union-attr]
        p, q = float(lvl[0]), float(lvl[1])
        if not (math.isfinite(p) and p > 0 and math.isfinite(q) and q >= 0):
            raise MalformedMessage("invalid", f"field {field!r} level {lvl!r}: price must be > 0, qty >= 0")
        out.append((p, q))
    return tuple(out)


class BinanceAdapter(ExchangeAdapter):
    """Binance spot public format (``<symbol>@trade``, ``<symbol>@depth@100ms``, ``/api/v3``).

    ``time_unit="MICROSECOND"`` asks for microsecond ``E``/``T`` fields (Binance's
    ``timeUnit`` parameter), so latency is not quantised to whole milliseconds; with
    ``"MILLISECOND"`` the wire is the classic millisecond format. Some Binance-compatible
    venues ignore ``timeUnit`` and keep sending milliseconds: the first values of each time
    field are checked by magnitude (:class:`~spark_research.streams.timeunits.UnitGuard`) and
    converted from the unit really sent, so stored times stay right.
    """

    name = "binance"

    def __init__(self, time_unit: str = "MICROSECOND"):
        if time_unit not in ("MICROSECOND", "MILLISECOND"):
            raise ValueError(f"time_unit must be 'MICROSECOND' or 'MILLISECOND', got {time_unit!r}")
        self.time_unit = time_unit
        unit = "us" if time_unit == "MICROSECOND" else "ms"
        #: one guard per time field and channel: a venue may honour timeUnit on REST but not on WS
        self.units = {f: UnitGuard(self.name, f, unit) for f in ("trade.T", "trade.E", "depth.E", "rest.time")}

    def _q(self) -> str:
        return f"?timeUnit={self.time_unit}"

    def trade_stream_url(self, ws_base: str, symbol: str) -> str:
        return f"{ws_base.rstrip('/')}/ws/{symbol.lower()}@trade{self._q()}"

    def depth_stream_url(self, ws_base: str, symbol: str) -> str:
        return f"{ws_base.rstrip('/')}/ws/{symbol.lower()}@depth@100ms{self._q()}"

    def trades_from_url(self, rest_base: str, symbol: str, from_id: int, limit: int) -> str:
        q = urlencode({"symbol": symbol.upper(), "fromId": from_id, "limit": min(limit, 1000),
                       "timeUnit": self.time_unit})
        return f"{rest_base.rstrip('/')}/api/v3/historicalTrades?{q}"

    def snapshot_url(self, rest_base: str, symbol: str, limit: int) -> str:
        q = urlencode({"symbol": symbol.upper(), "limit": limit})
        return f"{rest_base.rstrip('/')}/api/v3/depth?{q}"

    def parse_trade(self, raw: bytes | str) -> Trade:
        try:
            m = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage("json", str(exc)) from None
        try:
            if m["e"] != "trade":
                raise MalformedMessage("schema", f"field 'e' = {m['e']!r}, expected 'trade'")
            tid = m["t"]
            if type(tid) is not int or tid < 0:
                raise MalformedMessage("invalid", f"field 't' = {tid!r} must be a non-negative integer")
            price, qty = float(m["p"]), float(m["q"])
            if not (0.0 < price < _INF and 0.0 < qty < _INF):  # also false for NaN
                _positive(m["p"], "p"), _positive(m["q"], "q")  # raises, naming the bad field
            u = self.units
            return Trade(m["s"], tid, price, qty, u["trade.T"].to_us(m["T"]), u["trade.E"].to_us(m["E"]), m["m"] is True)
        except MalformedMessage:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedMessage("schema", f"{type(exc).__name__}: {exc}") from None

    def parse_depth(self, raw: bytes | str) -> DepthUpdate:
        try:
            m = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage("json", str(exc)) from None
        try:
            if m["e"] != "depthUpdate":
                raise MalformedMessage("schema", f"field 'e' = {m['e']!r}, expected 'depthUpdate'")
            first, last = m["U"], m["u"]
            if type(first) is not int or type(last) is not int or last < first:
                raise MalformedMessage("invalid", f"fields 'U','u' = {first!r},{last!r}: need integers with U <= u")
            return DepthUpdate(m["s"], first, last, self.units["depth.E"].to_us(m["E"]),
                               _levels(m["b"], "b"), _levels(m["a"], "a"))
        except MalformedMessage:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise MalformedMessage("schema", f"{type(exc).__name__}: {exc}") from None

    def parse_trades_rest(self, body: bytes, symbol: str) -> list[Trade]:
        rows = orjson.loads(body)
        out = []
        guard = self.units["rest.time"]
        for r in rows:
            t = guard.to_us(r["time"])
            out.append(Trade(symbol, int(r["id"]), _positive(r["price"], "price"), _positive(r["qty"], "qty"),
                             t, t, bool(r["isBuyerMaker"])))
        return out

    def parse_snapshot(self, body: bytes, symbol: str) -> BookSnapshot:
        m = orjson.loads(body)
        return BookSnapshot(symbol, int(m["lastUpdateId"]), _levels(m["bids"], "bids"), _levels(m["asks"], "asks"))


ADAPTERS: dict[str, type[ExchangeAdapter]] = {"binance": BinanceAdapter}


def get_adapter(name: str) -> ExchangeAdapter:
    """The adapter registered under ``name`` (``binance``)."""
    try:
        return ADAPTERS[name]()
    except KeyError:
        raise ValueError(f"exchange {name!r} has no adapter; known: {sorted(ADAPTERS)}") from None
