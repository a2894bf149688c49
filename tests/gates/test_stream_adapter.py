"""The paper session on the streams package's live bars (real replay exchange on 127.0.0.1)."""
from __future__ import annotations

import time

import pandas as pd

import numpy as np

from spark_research.backtest import Signals, Strategy
from spark_research.gates.audit import MemoryAudit
from spark_research.gates.gate import GateBook
from spark_research.gates.paper import PaperEngine
from spark_research.gates.session import PaperLiveSession, stream_bar_callback
from tests.gates.test_session import MirrorVenue


class EveryOtherBar(Strategy):
    """Enters on even bars, exits on odd ones: trades on any prices (the replay stamps wall-clock time)."""

    name = "every_other_bar"

    def signals(self, bars):
        even = pd.Series(np.arange(len(bars)) % 2 == 0, index=bars.index)
        return Signals(entries=even, exits=~even)


def test_session_trades_on_closed_bars_from_the_ingest_client(tmp_path):
    from spark_research.streams.ingest import IngestClient, IngestConfig
    from spark_research.streams.replay import ReplayExchange

    session = PaperLiveSession.create(EveryOtherBar, "BTCUSDT", GateBook(MemoryAudit()), MirrorVenue())
    seen: list[dict] = []
    feed = stream_bar_callback(session, interval="1s")
    ex = ReplayExchange(n=1_400, rate=200, seed=3).start()  # ~7 s of wall-clock 1 s bars
    client = IngestClient(IngestConfig(ws_url=ex.ws_url, rest_url=ex.rest_url, root=tmp_path / "ingest", from_id=1, depth=False,
                                       backoff_initial_s=0.02, backoff_max_s=0.5, idle_resync_s=0.5))

    @client.on_bar
    def _keep(bar):
        if bar.interval == "1s":
            seen.append(bar.as_row())

    client.on_bar(feed)
    client.start()
    try:
        assert client.wait_for_id(1_400, timeout=30), (ex.published, client.counters)
        deadline = time.monotonic() + 10
        while len(seen) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.stop()
        ex.stop()
    assert len(seen) >= 5
    assert session.engine.bars_seen == len(seen)
    # the same bars replayed offline give the same paper fills: one code path
    offline = PaperEngine(EveryOtherBar, symbol="BTCUSDT").run(pd.DataFrame(seen))
    assert len(offline) >= 2
    pd.testing.assert_frame_equal(session.paper_frame(), offline)
    # every live order went out when its signal formed; the last one may still wait for its paper fill
    assert {f.order_id for f in session.live_fills} == \
        {f.order_id for f in session.paper_fills} | {f.order_id for f in session.awaiting_fills}
    assert session.gate.state.name == "OPEN"
