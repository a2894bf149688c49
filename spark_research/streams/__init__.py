"""Live market data: exchange adapters, an embedded replay exchange, and the ingest client.

Modules (import what you need; this package imports nothing heavy by itself):

* :mod:`~spark_research.streams.adapters` — ``ExchangeAdapter`` interface, ``BinanceAdapter``
* :mod:`~spark_research.streams.replay` — ``ReplayExchange`` (WebSocket + REST on 127.0.0.1), ``Faults``
* :mod:`~spark_research.streams.orders` — the replay exchange's order entry (Binance ``/api/v3/order``), ``OrderConfig``
* :mod:`~spark_research.streams.ingest` — ``IngestClient``, ``IngestConfig``, ``run_ingest``, ``read_status``
* :mod:`~spark_research.streams.pipeline` — ``StreamPipeline``: replay exchange + ingest in one process
* :mod:`~spark_research.streams.book`, :mod:`~spark_research.streams.bars`,
  :mod:`~spark_research.streams.journal` — local order book, bar aggregation, durable store
* :mod:`~spark_research.streams.venues` — native Coinbase, Kraken, OKX and Bybit streams (one
  connection per venue, many symbols, each venue's sequence/checksum rules) and their replay
* :mod:`~spark_research.streams.multi` — ``build_multi_ingest(["binance:BTCUSDT", "kraken:BTC/USD"])``:
  many venues and symbols in one ingest
* :mod:`~spark_research.streams.timeunits` — venue time units (s, ms, µs, ns) checked by magnitude

Example::

    >>> from spark_research.streams.replay import ReplayExchange
    >>> from spark_research.streams.ingest import IngestClient, IngestConfig
    >>> import tempfile
    >>> ex = ReplayExchange(n=300, rate=5_000).start()
    >>> client = IngestClient(IngestConfig(ws_url=ex.ws_url, rest_url=ex.rest_url,
    ...                                    root=tempfile.mkdtemp(), from_id=1)).start()
    >>> client.wait_for_id(300, timeout=20)
    True
    >>> client.stop(); ex.stop()

Live bars for other capabilities (e.g. the gates' paper engine): ``client.on_bar(callback)``
calls ``callback(bar)`` with every closed 1 s and 1 min :class:`~spark_research.streams.bars.Bar`
once it is durable (see :mod:`~spark_research.streams.ingest`).
"""
