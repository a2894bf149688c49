"""Local order book from a diff-depth stream, following Binance's documented algorithm.

1. Open the diff stream and buffer events; 2. fetch a snapshot; 3. if the snapshot's
``lastUpdateId`` is older than the first buffered event's ``U``, fetch again; 4. drop buffered
events with ``u <= lastUpdateId``; 5. apply the rest: an event with ``u`` below the book's id is
stale (ignored), one with ``U > id + 1`` breaks the chain → resync from a new snapshot.

Example::

    >>> from spark_research.streams.adapters import BookSnapshot, DepthUpdate
    >>> book = LocalBook("BTCUSDT")
    >>> book.load(BookSnapshot("BTCUSDT", 10, ((99.0, 1.0),), ((101.0, 2.0),)))
    >>> book.apply(DepthUpdate("BTCUSDT", 11, 12, 0, ((99.0, 0.0),), ((100.5, 1.0),)))
    'applied'
    >>> book.best_bid(), book.best_ask()
    (None, 100.5)
"""
from __future__ import annotations

from spark_research.streams.adapters import BookSnapshot, DepthUpdate


class LocalBook:
    """Price → quantity per side, valid as of :attr:`last_update_id` (None before a snapshot)."""

    def __init__(self, symbol: str):
        self.symbol = symbol
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.last_update_id: int | None = None

    @property
    def synced(self) -> bool:
        """True once a snapshot is loaded and the chain is unbroken."""
        return self.last_update_id is not None

    def reset(self) -> None:
        """Forget everything (before a resync)."""
        self.bids.clear()
        self.asks.clear()
        self.last_update_id = None

    def load(self, snap: BookSnapshot) -> None:
        """Replace the book by ``snap``."""
        self.bids = {p: q for p, q in snap.bids if q > 0}
        self.asks = {p: q for p, q in snap.asks if q > 0}
        self.last_update_id = snap.last_update_id

    def apply(self, upd: DepthUpdate) -> str:
        """Apply one diff: returns ``applied``, ``stale`` (already included) or ``gap`` (resync needed).

        A ``gap`` leaves the book untouched; the caller resyncs from a snapshot.
        """
        if self.last_update_id is None:
            return "gap"
        if upd.last_id <= self.last_update_id:
            return "stale"
        if upd.first_id > self.last_update_id + 1:
            return "gap"
        for side, levels in ((self.bids, upd.bids), (self.asks, upd.asks)):
            for p, q in levels:
                if q == 0.0:
                    side.pop(p, None)
                else:
                    side[p] = q
        self.last_update_id = upd.last_id
        return "applied"

    def best_bid(self) -> float | None:
        """Highest bid price, None if the side is empty."""
        return max(self.bids) if self.bids else None

    def best_ask(self) -> float | None:
        """Lowest ask price, None if the side is empty."""
        return min(self.asks) if self.asks else None
