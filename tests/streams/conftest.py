"""Fixtures of the stream tests: a replay exchange and ingest clients, always stopped at teardown."""
from __future__ import annotations


import pytest

from spark_research.streams.ingest import IngestClient, IngestConfig
from spark_research.streams.replay import Faults, ReplayExchange

#: Fast but realistic settings for loopback tests.
FAST = dict(backoff_initial_s=0.02, backoff_max_s=0.5, idle_resync_s=0.5, status_interval_s=0.2)


@pytest.fixture
def exchange():
    """``exchange(n=..., rate=..., faults=Faults(...))`` → a started :class:`ReplayExchange`."""
    started: list[ReplayExchange] = []

    def make(n: int = 3_000, rate: float = 5_000, faults: Faults | None = None, **kw) -> ReplayExchange:
        kw.setdefault("depth_every", 20)
        ex = ReplayExchange(n=n, rate=rate, faults=faults, **kw).start()
        started.append(ex)
        return ex

    yield make
    for ex in started:
        ex.stop()


@pytest.fixture
def ingest(tmp_path):
    """``ingest(exchange, **config)`` → a started :class:`IngestClient` persisting under ``tmp_path``."""
    started: list[IngestClient] = []

    def make(ex: ReplayExchange, **kw) -> IngestClient:
        cfg = IngestConfig(ws_url=ex.ws_url, rest_url=ex.rest_url, root=kw.pop("root", tmp_path / "ingest"),
                           from_id=int(ex.source_ids[0]), **{**FAST, **kw})
        client = IngestClient(cfg).start()
        started.append(client)
        return client

    yield make
    for c in started:
        c.stop()
        c.journal.close()
