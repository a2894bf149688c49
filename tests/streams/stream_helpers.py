"""Helpers of the stream tests (imported by name: tests have no packages)."""
from __future__ import annotations

import time

from spark_research.streams.ingest import IngestClient
from spark_research.streams.replay import ReplayExchange


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_book_matches(ex: ReplayExchange, client: IngestClient, timeout: float = 10.0) -> int:
    """Pause the exchange, wait for the client to reach its update id, compare both books exactly."""
    ex.pause()
    try:
        uid = ex.book()[0]
        wait_until(lambda: client.book_copy()[0] == uid, timeout, f"local book to reach update id {uid}")
        ex_uid, ex_bids, ex_asks = ex.book()
        uid2, bids, asks = client.book_copy()
        assert uid2 == ex_uid
        assert bids == ex_bids, "bid side differs from the exchange's book"
        assert asks == ex_asks, "ask side differs from the exchange's book"
        assert ex_bids and ex_asks, "checkpoint on an empty book proves nothing"
        return uid
    finally:
        ex.resume()
