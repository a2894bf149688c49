"""The venue interface: one normaliser per exchange (cryptofeed's model), plus the local book rules.

A :class:`VenueProtocol` knows one venue's public WebSocket protocol on a single connection
carrying many subscriptions: the URL path, the subscription handshake, the client ping, how a
raw frame becomes :class:`~spark_research.streams.adapters.Trade` s and :class:`BookMsg` s, and
the venue's integrity rules for its order book (sequence numbers and/or a CRC32 checksum).
For the trades' REST backfill it is also the :class:`~spark_research.streams.adapters.ExchangeAdapter`
of every per-symbol :class:`~spark_research.streams.ingest.IngestClient` of that venue.

The replay side of each venue (what the embedded exchange sends) lives in the same module as
the client side, in a ``*Wire`` class, so the two cannot drift apart silently.

Symbols: a venue's *native* symbol (``BTC/USD``, ``BTC-USD``, ``BTCUSDT``) is what goes on the
wire; the *canonical* symbol (separators dropped: ``BTCUSD``) names the journal and metrics.

Example::

    >>> book = VenueBook("BTCUSD", depth=2)
    >>> book.load(BookMsg("BTCUSD", True, ((100.0, 1.0, "100.0", "1.0"), (99.0, 2.0, "99.0", "2.0"),
    ...                                    (98.0, 1.0, "98.0", "1.0")), ((101.0, 1.0, "101.0", "1.0"),)))
    >>> book.best_bid(), sorted(book.bids)     # truncated to the subscribed depth
    (100.0, [99.0, 100.0])
"""
from __future__ import annotations

import zlib
from typing import Awaitable, Callable, NamedTuple

from spark_research.streams.adapters import ExchangeAdapter, MalformedMessage, Trade, TradeBatch
from spark_research.streams.timeunits import UnitGuard, rfc3339_us

#: ``(price, qty, price as sent, qty as sent)``: checksums are over the venue's own strings.
Level = tuple[float, float, str, str]

#: Quote currencies recognised when splitting a canonical symbol (longest first).
QUOTES = ("USDT", "USDC", "FDUSD", "TUSD", "BUSD", "USD", "EUR", "GBP", "JPY", "BTC", "ETH")


class BookMsg(NamedTuple):
    """A book snapshot or update for one symbol, normalised (levels keep the wire strings)."""

    symbol: str  #: canonical
    snapshot: bool
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    seq: int | None = None  #: the venue's update id / seqId / ``u`` (None: the venue has none)
    prev_seq: int | None = None  #: OKX ``prevSeqId``
    checksum: int | None = None
    event_us: int = 0


class Frame(NamedTuple):
    """What one WebSocket frame carried.

    Its trades come either one by one (``trades``, a frame of a few) or, for a frame of many
    (:data:`COLUMNS_FROM` or more), as one :class:`~spark_research.streams.adapters.TradeBatch`
    per symbol (``batches``; ``trades`` is then empty).
    """

    trades: list[Trade]
    books: list[BookMsg]
    conn_seq: int | None = None  #: a per-connection sequence number (Coinbase ``sequence_num``)
    control: str | None = None  #: ``pong``, ``heartbeat``, ``subscribed``, ``status``, ``instrument``...
    batches: tuple[TradeBatch, ...] | list[TradeBatch] = ()


CONTROL = Frame([], [], None, "control")


def split_symbol(symbol: str) -> tuple[str, str]:
    """``("BTC", "USDT")`` from ``BTCUSDT``, ``BTC-USDT``, ``BTC/USDT`` or ``BTC_USDT``.

    Example: ``split_symbol("ETH/USD")`` → ``('ETH', 'USD')``.
    """
    s = symbol.upper()
    for sep in ("/", "-", "_"):
        if sep in s:
            base, _, quote = s.partition(sep)
            if base and quote:
                return base, quote
    for q in QUOTES:
        if s.endswith(q) and len(s) > len(q):
            return s[: -len(q)], q
    raise ValueError(f"symbol {symbol!r}: cannot tell base from quote (use BASE/QUOTE, e.g. 'BTC/USD')")


_CANONICAL: dict[str, str] = {}


def canonical(symbol: str) -> str:
    """The journal/metrics name of a native symbol: separators dropped (``BTC/USD`` → ``BTCUSD``)."""
    c = _CANONICAL.get(symbol)  # called per message: cached
    if c is None:
        c = "".join(ch for ch in symbol.upper() if ch.isalnum())
        if len(_CANONICAL) < 100_000:
            _CANONICAL[symbol] = c
    return c


def crc32_signed(text: str) -> int:
    """CRC32 of ``text`` as a signed 32-bit integer (OKX's form)."""
    c = zlib.crc32(text.encode())
    return c - (1 << 32) if c >= 1 << 31 else c


class VenueBook:
    """Price → quantity per side, plus the wire strings of each level, truncated to ``depth``.

    Same reading interface as :class:`~spark_research.streams.book.LocalBook` (``bids``,
    ``asks``, ``last_update_id``, ``synced``, ``best_bid``/``best_ask``).
    """

    def __init__(self, symbol: str, depth: int | None = None):
        self.symbol, self.depth = symbol, depth
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.bid_wire: dict[float, tuple[str, str]] = {}
        self.ask_wire: dict[float, tuple[str, str]] = {}
        self.last_update_id: int | None = None
        self.applied = 0  #: messages applied since the last snapshot

    @property
    def synced(self) -> bool:
        """True once a snapshot is loaded and no break was seen since."""
        return self.last_update_id is not None

    def reset(self) -> None:
        """Forget everything (before a resync)."""
        for d in (self.bids, self.asks, self.bid_wire, self.ask_wire):
            d.clear()
        self.last_update_id = None

    def load(self, msg: BookMsg) -> None:
        """Replace the book by the snapshot ``msg``."""
        self.reset()
        self.applied = 0
        self._levels(msg)
        self.last_update_id = msg.seq if msg.seq is not None else 0

    def apply(self, msg: BookMsg) -> None:
        """Apply an update (absolute quantities, 0 removes), then truncate to ``depth``."""
        self._levels(msg)
        self.applied += 1
        self.last_update_id = msg.seq if msg.seq is not None else (self.last_update_id or 0) + 1

    def _levels(self, msg: BookMsg) -> None:
        for side, wire, levels in ((self.bids, self.bid_wire, msg.bids), (self.asks, self.ask_wire, msg.asks)):
            for p, q, ps, qs in levels:
                if q == 0.0:
                    side.pop(p, None)
                    wire.pop(p, None)
                else:
                    side[p] = q
                    wire[p] = (ps, qs)
        if self.depth is not None:
            self._truncate(self.bids, self.bid_wire, True)
            self._truncate(self.asks, self.ask_wire, False)

    def _truncate(self, side: dict, wire: dict, reverse: bool) -> None:
        extra = len(side) - self.depth
        if extra > 0:
            for p in sorted(side, reverse=not reverse)[:extra]:  # the worst levels go
                del side[p]
                wire.pop(p, None)

    def top(self, n: int) -> tuple[list[float], list[float]]:
        """The best ``n`` bid prices (high to low) and ask prices (low to high)."""
        return sorted(self.bids, reverse=True)[:n], sorted(self.asks)[:n]

    def best_bid(self) -> float | None:
        """Highest bid price, None if the side is empty."""
        return max(self.bids) if self.bids else None

    def best_ask(self) -> float | None:
        """Lowest ask price, None if the side is empty."""
        return min(self.asks) if self.asks else None


HttpGet = Callable[[str], Awaitable[bytes]]


class VenueProtocol(ExchangeAdapter):
    """One venue's public market-data protocol on one connection (see the module docstring).

    Subclasses set the class attributes and implement :meth:`subscribe_messages`,
    :meth:`book_resubscribe_messages`, :meth:`parse`, :meth:`fetch_trades`, and, if the venue
    has them, :meth:`book_check` (sequence rule) and :meth:`checksum`.
    """

    name = "abstract"
    ws_path = "/"  #: path of the public WebSocket endpoint
    depth: int | None = None  #: levels the subscribed book view keeps (None: the full book)
    ping_interval_s: float | None = None  #: how often the client pings (None: the venue pings/heartbeats)
    has_checksum = False
    #: the venue's book updates have no per-symbol sequence, only a per-connection one (Coinbase)
    conn_sequenced = False

    def __init__(self) -> None:
        self.natives: dict[str, str] = {}  #: canonical → native, filled by :meth:`native`

    # ----------------------------------------------------------------- symbols and URLs
    def native(self, symbol: str) -> str:
        """The venue's spelling of ``symbol`` (any form :func:`split_symbol` reads); remembered."""
        base, quote = split_symbol(symbol)
        nat = self.native_of(base, quote)
        self.natives[canonical(nat)] = nat
        return nat

    def native_of(self, base: str, quote: str) -> str:
        """The venue's spelling of ``base``/``quote``."""
        raise NotImplementedError

    def ws_url(self, ws_base: str) -> str:
        """The public WebSocket URL under ``ws_base`` (``ws://127.0.0.1:PORT`` for the replay)."""
        return ws_base.rstrip("/") + self.ws_path

    def ping_message(self) -> str | None:
        """The client's application-level ping, None if the venue needs none."""
        return None

    # ----------------------------------------------------------------- subscriptions and frames
    def subscribe_messages(self, natives: list[str], depth: bool = True) -> list[str]:
        """Frames to send after connecting: trades (and books if ``depth``) of every symbol."""
        raise NotImplementedError

    def book_resubscribe_messages(self, native: str) -> list[str]:
        """Frames that make the venue send a fresh book snapshot of ``native``."""
        raise NotImplementedError

    def parse(self, raw: bytes | str) -> Frame:
        """Parse one frame; raise :class:`~spark_research.streams.adapters.MalformedMessage` if unusable."""
        raise NotImplementedError

    def book_check(self, book: VenueBook, msg: BookMsg) -> str:
        """Sequence rule for an update: ``apply``, ``stale`` (already applied) or ``gap``."""
        return "apply"

    def checksum(self, book: VenueBook) -> int | None:
        """The venue's checksum of ``book`` (None when the venue has none)."""
        return None

    # ----------------------------------------------------------------- REST backfill
    async def fetch_trades(self, get: HttpGet, rest_base: str, symbol: str, from_id: int, limit: int,
                           since_us: int | None = None, until_us: int | None = None) -> list[Trade]:
        """Trades of canonical ``symbol`` with id >= ``from_id`` the venue's REST API still has, by id."""
        raise NotImplementedError


def malformed_guard(fn):
    """Decorator for ``parse``: any KeyError/TypeError/ValueError/IndexError becomes a ``schema`` MalformedMessage."""
    def wrapper(self, raw):
        try:
            return fn(self, raw)
        except MalformedMessage:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise MalformedMessage("schema", f"{type(exc).__name__}: {exc}") from None
    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


def trade_id(value: object, field: str) -> int:
    """A venue trade id as a non-negative integer (numeric strings accepted)."""
    if type(value) is int:
        tid = value
    elif type(value) is str and value.isdigit():
        tid = int(value)
    else:
        raise MalformedMessage("invalid", f"field {field!r} = {value!r} must be a non-negative integer")
    if tid < 0:
        raise MalformedMessage("invalid", f"field {field!r} = {value!r} must be a non-negative integer")
    return tid


def positive(value: object, field: str) -> float:
    """A price or quantity > 0 (numeric string or number), else ``invalid`` naming the field."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MalformedMessage("schema", f"field {field!r} = {value!r} is not a number") from None
    if not 0.0 < x < float("inf"):
        raise MalformedMessage("invalid", f"field {field!r} = {value!r} must be a finite number > 0")
    return x


def level(px: str, qty: str, field: str) -> Level:
    """A book level from the venue's strings; qty 0 (removal) allowed, price must be > 0."""
    p, q = float(px), float(qty)
    if not (0.0 < p < float("inf") and 0.0 <= q < float("inf")):
        raise MalformedMessage("invalid", f"field {field!r} level {px!r}/{qty!r}: price must be > 0, qty >= 0")
    return (p, q, px, qty)


# ===================================================================== a frame's trades as columns
# A frame of a few trades is normalised trade by trade, into Trade tuples. A frame of many is
# normalised column by column (the checks run over a whole column in C: a type set, min, a
# sum) — unless a column check cannot vouch for every value, then trade by trade after all:
# ``positive``/``trade_id``/... are the reference, and raise the exact error of the first bad
# value. The column path never accepts a frame the reference rejects, and gives the same values.
_INF = float("inf")
_FAST_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)
#: Frames with at least this many trades go column by column (below, a Trade each is cheaper).
COLUMNS_FROM = 10


def frame_trades(data: list, columns: Callable[[list], list[TradeBatch] | None],
                 one_by_one: Callable[[list], list[Trade]]) -> tuple[list[Trade], list[TradeBatch]]:
    """``(trades, batches)`` of a frame's trade items: ``one_by_one(data)``, or ``columns(data)`` for many.

    Example (the bad id of a long frame is reported by the one-by-one reference)::

        >>> slow = lambda data: [Trade("BTCUSD", trade_id(d, "id"), 1.0, 1.0, 0, 0, False) for d in data]
        >>> frame_trades(["7"], lambda data: None, slow)
        ([Trade(symbol='BTCUSD', id=7, price=1.0, qty=1.0, time_us=0, event_us=0, buyer_maker=False)], [])
        >>> frame_trades(["7"] * 11 + ["x"], lambda data: None, slow)
        Traceback (most recent call last):
        ...
        spark_research.streams.adapters.MalformedMessage: invalid: field 'id' = 'x' must be a non-negative integer
    """
    if len(data) < COLUMNS_FROM:
        return one_by_one(data), []
    try:
        batches = columns(data)
    except _FAST_ERRORS:
        batches = None
    if batches is None:
        return one_by_one(data), []
    return [], batches


def by_symbol(natives: list[str], ids: list[int], prices: list[float], qtys: list[float], times_us: list[int],
              buyer_maker: list[bool]) -> list[TradeBatch]:
    """Columns of one frame → one :class:`TradeBatch` per canonical symbol (event time = trade time).

    Example: ``by_symbol(["BTC-USD"], [1], [2.0], [3.0], [4], [False])[0].symbol`` → ``'BTCUSD'``.
    """
    first = natives[0]
    if natives.count(first) == len(natives):  # the usual frame: one symbol
        return [TradeBatch(canonical(first), ids, prices, qtys, times_us, times_us, buyer_maker)]
    groups: dict[str, list[int]] = {}
    for i, sym in enumerate(map(canonical, natives)):
        groups.setdefault(sym, []).append(i)
    out = []
    for sym, idx in groups.items():
        t = [times_us[i] for i in idx]
        out.append(TradeBatch(sym, [ids[i] for i in idx], [prices[i] for i in idx], [qtys[i] for i in idx], t, t,
                              [buyer_maker[i] for i in idx]))
    return out


def id_column(values: list) -> list[int] | None:
    """Trade ids as ints when every one is what :func:`trade_id` accepts (all ints or all digit strings)."""
    if type(values[0]) is str:
        return list(map(int, values)) if all(map(str.isdigit, values)) else None  # a non-str raises: one by one
    if set(map(type, values)) == {int} and min(values) >= 0:
        return values
    return None


def positive_column(values: list) -> list[float] | None:
    """``values`` as floats when every one is what :func:`positive` accepts (finite, > 0)."""
    xs = list(map(float, values))
    # NaN or inf anywhere makes the sum NaN or inf; an overflowing sum only sends the frame one by one
    return xs if min(xs) > 0.0 and sum(xs) < _INF else None


def side_column(values: list, buyer_maker: dict[str, bool]) -> list[bool]:
    """``buyer_maker`` of each side value (a value not in the table raises: one by one)."""
    return list(map(buyer_maker.__getitem__, values))


def time_column(guard: UnitGuard, values: list) -> list[int]:
    """Epoch times (ints or integer strings) → µs, exactly as ``guard.to_us(int(v))`` value by value.

    The trades of one frame mostly share a time: each distinct value is converted once (once
    the guard has checked the field's unit, converting has no side effects). Call it last,
    when nothing else can send the frame one by one: the unit checks count values.
    """
    ints = {v: int(v) for v in set(values)}  # raises before any unit check
    if guard.checks:
        return [guard.to_us(ints[v]) for v in values]
    us = {v: guard.to_us(i) for v, i in ints.items()}
    return list(map(us.__getitem__, values))


def rfc3339_column(values: list[str]) -> list[int]:
    """RFC 3339 times → epoch µs; each distinct string parsed once (a sweep of the book shares one time)."""
    us = {s: rfc3339_us(s) for s in set(values)}
    return list(map(us.__getitem__, values))
