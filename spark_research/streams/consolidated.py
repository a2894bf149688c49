"""Consolidated top of book: every venue's best bid and ask for one instrument, and the best of them.

A venue symbol maps to an *instrument* ``BASE-QUOTE`` (:func:`instrument`): separators and
spellings are dropped (``BTC/USD``, ``BTC-USD``, ``BTCUSD`` are one), Kraken's ``XBT`` is
``BTC``, and quote currencies are grouped by :data:`QUOTE_GROUPS`: **USD, USDT and USDC all
count as USD**, so Coinbase ``BTC-USD``, Kraken ``BTC/USD``, OKX ``BTC-USDT`` and Binance/Bybit
``BTCUSDT`` are one instrument, ``BTC-USD``. Prices are compared as quoted, without converting
a stablecoin to dollars: a few basis points between a USDT and a USD book can be the stablecoin's
own basis, not an arbitrage. Each row keeps the venue's own symbol, so the table shows which
quote currency a price is in. Other quotes (EUR, BTC, ...) stay instruments of their own.

:func:`consolidated_top_of_book` takes one :class:`VenueTop` per venue book and returns, per
instrument, a :class:`ConsolidatedTop`: the venues' rows, the best (highest) bid and best
(lowest) ask among the *live* books with the venue holding each, and ``crossed`` — the best bid
above the best ask (on two venues; equal prices are *locked*, not crossed). A book is not live
while it resyncs (``synced`` False) or when it has not changed for ``stale_after_s`` seconds
(``age_s``); it is still listed, with ``stale`` True, but never named best. Ties go to the larger
size, then to the venue name in alphabetical order, so the answer does not depend on input order.

Example::

    >>> tops = [VenueTop("kraken", "BTC/USD", 30_010.0, 0.5, 30_011.0, 1.2),
    ...         VenueTop("okx", "BTC-USDT", 30_012.0, 0.3, 30_013.0, 0.8),
    ...         VenueTop("bybit", "BTCUSDT", 30_009.0, 2.0, 30_010.5, 0.1)]
    >>> btc = consolidated_top_of_book(tops)["BTC-USD"]
    >>> (btc.best_bid.venue, btc.best_bid.bid, btc.best_ask.venue, btc.best_ask.ask, btc.crossed)
    ('okx', 30012.0, 'bybit', 30010.5, True)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

#: Quote currency → the group it is consolidated under (stablecoins count as dollars, at par).
QUOTE_GROUPS: dict[str, str] = {"USD": "USD", "USDT": "USD", "USDC": "USD"}
#: Quote currencies recognised at the end of a symbol without separator (longest first: USDT before USD).
KNOWN_QUOTES = ("USDT", "USDC", "USD", "EUR", "GBP", "JPY", "BTC", "ETH")
#: Other names of a base currency.
BASE_ALIASES: dict[str, str] = {"XBT": "BTC"}


def instrument(symbol: str) -> str:
    """The instrument a venue symbol trades, ``BASE-QUOTE`` with the quote grouped (see the module docstring).

    A symbol with no recognisable quote currency is an instrument of its own (its upper-case name).

    Example::

        >>> [instrument(s) for s in ("BTC/USD", "BTC-USDT", "BTCUSDT", "XBT/USD", "ETHEUR", "ETHBTC")]
        ['BTC-USD', 'BTC-USD', 'BTC-USD', 'BTC-USD', 'ETH-EUR', 'ETH-BTC']
    """
    s = symbol.strip().upper()
    for sep in ("-", "/", "_"):
        if sep in s:
            base, _, quote = s.partition(sep)
            break
    else:
        quote = next((q for q in KNOWN_QUOTES if s.endswith(q) and len(s) > len(q)), "")
        if not quote:
            return s
        base = s[: -len(quote)]
    base = BASE_ALIASES.get(base, base)
    return f"{base}-{QUOTE_GROUPS.get(quote, quote)}"


@dataclass(frozen=True)
class VenueTop:
    """One venue's book of one symbol at its top: best bid and ask (None: that side is empty).

    ``age_s``: seconds since the book last changed (None: unknown, taken as fresh); ``synced``:
    False while the book waits for a snapshot after a gap or checksum failure.
    """

    venue: str
    symbol: str
    bid: float | None
    bid_size: float | None
    ask: float | None
    ask_size: float | None
    age_s: float | None = None
    synced: bool = True

    def stale(self, stale_after_s: float) -> bool:
        """True if this book must not be named best: resyncing, or unchanged for over ``stale_after_s``."""
        return not self.synced or (self.age_s is not None and self.age_s > stale_after_s)


@dataclass(frozen=True)
class ConsolidatedTop:
    """An instrument's books across venues (see :func:`consolidated_top_of_book`)."""

    instrument: str
    venues: tuple[VenueTop, ...]  #: every venue's book, by venue name; stale ones included
    stale: frozenset[tuple[str, str]]  #: ``(venue, symbol)`` of the books left out of the best bid/ask
    best_bid: VenueTop | None  #: the live book with the highest bid
    best_ask: VenueTop | None  #: the live book with the lowest ask
    crossed: bool  #: best bid > best ask

    @property
    def spread(self) -> float | None:
        """Best ask minus best bid (negative when crossed, 0 when locked); None if a side is missing."""
        if self.best_bid is None or self.best_ask is None:
            return None
        return self.best_ask.ask - self.best_bid.bid

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``instrument``, ``venues`` (rows with a ``stale`` flag), ``best_bid``/``best_ask``
        (``{"venue", "symbol", "price", "size"}`` or None), ``crossed``, ``spread``."""
        def side(top: VenueTop | None, price: str) -> dict[str, Any] | None:
            if top is None:
                return None
            return {"venue": top.venue, "symbol": top.symbol, "price": getattr(top, price),
                    "size": getattr(top, price + "_size")}

        return {"instrument": self.instrument,
                "venues": [{**asdict(v), "stale": (v.venue, v.symbol) in self.stale} for v in self.venues],
                "best_bid": side(self.best_bid, "bid"), "best_ask": side(self.best_ask, "ask"),
                "crossed": self.crossed, "spread": self.spread}


def consolidated_top_of_book(tops: Iterable[VenueTop], *, stale_after_s: float = 5.0) -> dict[str, ConsolidatedTop]:
    """Per instrument (:func:`instrument` of each symbol): every venue's top, the best bid and ask among
    the live books, and whether they cross. Pure: no I/O, no clock (``age_s`` comes with the input).

    Example::

        >>> live = VenueTop("coinbase", "BTC-USD", 100.0, 1.0, 101.0, 1.0)
        >>> old = VenueTop("kraken", "BTC/USD", 105.0, 1.0, 106.0, 1.0, age_s=60.0)
        >>> c = consolidated_top_of_book([live, old], stale_after_s=5.0)["BTC-USD"]
        >>> c.best_bid.venue, sorted(c.stale), c.crossed
        ('coinbase', [('kraken', 'BTC/USD')], False)
    """
    if not stale_after_s > 0:
        raise ValueError(f"stale_after_s must be > 0, got {stale_after_s!r}")
    groups: dict[str, list[VenueTop]] = {}
    for t in tops:
        groups.setdefault(instrument(t.symbol), []).append(t)
    out = {}
    for inst in sorted(groups):
        rows = tuple(sorted(groups[inst], key=lambda t: (t.venue, t.symbol)))
        stale = frozenset((t.venue, t.symbol) for t in rows if t.stale(stale_after_s))
        live = [t for t in rows if (t.venue, t.symbol) not in stale]
        bids = [t for t in live if t.bid is not None]
        asks = [t for t in live if t.ask is not None]
        # highest bid / lowest ask; ties: larger size, then venue name (sorted rows: min/max keep the first)
        best_bid = min(bids, key=lambda t: (-t.bid, -(t.bid_size or 0.0)), default=None)
        best_ask = min(asks, key=lambda t: (t.ask, -(t.ask_size or 0.0)), default=None)
        crossed = best_bid is not None and best_ask is not None and best_bid.bid > best_ask.ask
        out[inst] = ConsolidatedTop(inst, rows, stale, best_bid, best_ask, crossed)
    return out


__all__ = ["BASE_ALIASES", "ConsolidatedTop", "KNOWN_QUOTES", "QUOTE_GROUPS", "VenueTop", "consolidated_top_of_book",
           "instrument"]
