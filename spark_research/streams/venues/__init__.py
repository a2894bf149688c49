"""Native stream adapters beyond Binance: one module per venue, client and replay side together.

* :mod:`~spark_research.streams.venues.base` — ``VenueProtocol`` interface, ``VenueBook``, ``BookMsg``
* :mod:`~spark_research.streams.venues.coinbase` — Advanced Trade ``market_trades`` + ``level2`` (``sequence_num``)
* :mod:`~spark_research.streams.venues.kraken` — WebSocket v2 ``trade`` + ``book`` (CRC32 of the top 10)
* :mod:`~spark_research.streams.venues.okx` — v5 ``trades`` + ``books`` (``seqId``/``prevSeqId``, CRC32 of 25)
* :mod:`~spark_research.streams.venues.bybit` — v5 spot ``publicTrade`` + ``orderbook.50`` (``u`` chain)
* :mod:`~spark_research.streams.venues.feed` — ``VenueFeed``: one connection, many symbols, per-symbol integrity
* :mod:`~spark_research.streams.venues.replay` — ``VenueReplay``: each venue's protocol on 127.0.0.1

Example::

    >>> get_venue("kraken").native("BTCUSD")
    'BTC/USD'
"""
from __future__ import annotations

VENUES = ("coinbase", "kraken", "okx", "bybit")


def get_venue(name: str):
    """A fresh :class:`~spark_research.streams.venues.base.VenueProtocol` for venue ``name``."""
    if name == "coinbase":
        from spark_research.streams.venues.coinbase import CoinbaseProtocol as cls
    elif name == "kraken":
        from spark_research.streams.venues.kraken import KrakenProtocol as cls
    elif name == "okx":
        from spark_research.streams.venues.okx import OkxProtocol as cls
    elif name == "bybit":
        from spark_research.streams.venues.bybit import BybitProtocol as cls
    else:
        raise ValueError(f"venue {name!r} has no native stream adapter; known: {list(VENUES)} and 'binance'")
    return cls()
