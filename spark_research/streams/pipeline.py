"""Replay exchange + ingest in one process: what ``spark serve`` and the stream monitor run.

The pipeline starts a :class:`~spark_research.streams.replay.ReplayExchange` on a free
loopback port (its order entry executing by ``orders``) and an :class:`~spark_research.streams.ingest.IngestClient` connected to it,
each on its own thread and event loop, persisting under ``root`` (default
``settings().var_dir / "ingest"``). The tape continues after the last stored trade id, so a
restart of the pipeline resumes the market where it stopped instead of replaying old ids.
To run them as separate processes instead, use ``spark stream replay`` and ``spark stream ingest``.

Example::

    >>> import tempfile
    >>> p = StreamPipeline(rate=2_000, n=2_000, root=tempfile.mkdtemp()).start()
    >>> p.client.wait_for_id(p.exchange.source_ids[-1], timeout=20)
    True
    >>> p.snapshot()["ingest"]["counters"]["gaps"] >= 0
    True
    >>> p.stop()
"""
from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from spark_research.data.synthetic import generate_trades
from spark_research.streams.bars import Bar
from spark_research.streams.ingest import IngestClient, IngestConfig
from spark_research.streams.journal import IngestJournal
from spark_research.streams.orders import OrderConfig
from spark_research.streams.replay import Faults, ReplayExchange


class StreamPipeline:
    """A replay exchange and an ingest of ``symbol`` wired together (see module docstring)."""

    def __init__(self, symbol: str = "BTCUSDT", rate: float = 200.0, n: int = 500_000, seed: int = 42,
                 faults: Faults | None = None, root: str | Path | None = None, keep_bars: int = 600,
                 orders: OrderConfig | None = None, exchange_port: int = 0, **ingest_options):
        self.symbol = symbol.upper()
        self.rate, self.n, self.seed, self.faults = rate, n, seed, faults or Faults()
        self.orders = orders or OrderConfig()
        self.exchange_port = exchange_port  # 0: any free port
        self.config = IngestConfig(symbol=self.symbol, root=root, **ingest_options)
        self.exchange: ReplayExchange | None = None
        self.client: IngestClient | None = None
        self.bars_1s: deque[Bar] = deque(maxlen=keep_bars)

    def start(self) -> "StreamPipeline":
        """Start the exchange, then the ingest; returns once the exchange listens."""
        path = self.config.root_dir / f"binance-{self.symbol}.sqlite"
        last = IngestJournal(path, "binance", self.symbol).last_id() if path.exists() else None
        first = (last or 0) + 1
        tape = generate_trades(self.symbol, n=self.n, seed=self.seed + first, first_seq=first)
        self.exchange = ReplayExchange(tape, rate=self.rate, faults=self.faults, seed=self.seed,
                                       orders=self.orders, port=self.exchange_port).start()
        cfg = IngestConfig(**{**self.config.__dict__, "ws_url": self.exchange.ws_url,
                              "rest_url": self.exchange.rest_url, "from_id": first})
        self.client = IngestClient(cfg)
        self.client.on_bar(self._keep_bar)
        self.client.start()
        return self

    def _keep_bar(self, bar: Bar) -> None:
        if bar.interval == "1s":
            self.bars_1s.append(bar)

    def on_bar(self, callback) -> None:
        """Forward every closed bar to ``callback`` (see :meth:`IngestClient.on_bar`)."""
        if self.client is None:
            raise RuntimeError("StreamPipeline.on_bar: start() the pipeline first")
        self.client.on_bar(callback)

    def snapshot(self) -> dict:
        """Ingest status plus recent gaps (ms) and exchange status, read consistently."""
        if self.client is None or self.exchange is None:
            raise RuntimeError("StreamPipeline.snapshot: the pipeline is not started")
        c = self.client
        ingest, gaps = c.call(lambda: (c.status(), list(c.gaps_ms)[-2000:]))
        return {"time": time.time(), "ingest": ingest, "gaps_ms": gaps, "exchange": self.exchange.status()}

    def stop(self) -> None:
        """Stop the ingest (flushing its last batch), then the exchange."""
        if self.client is not None:
            self.client.stop()
        if self.exchange is not None:
            self.exchange.stop()
