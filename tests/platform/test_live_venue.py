"""spark serve's live session: its orders go to the replay exchange's order entry."""
from __future__ import annotations

import math
import time

import pytest

from spark_research.gates.audit import MemoryAudit
from spark_research.gates.demo import DEMO_VENUES, LIVE_THRESHOLDS
from spark_research.gates.gate import GateBook
from spark_research.gates.model import Order
from spark_research.gates.venue import ExchangeVenue
from spark_research.risk.venue import RiskGuardedVenue
from spark_research.gates.service import live_session
from spark_research.gates.session import stream_bar_callback
from spark_research.platform.components import DEMO_ORDERS
from spark_research.streams.orders import OrderConfig
from spark_research.streams.pipeline import StreamPipeline


def test_demo_order_configs_a_calm_venue_like_offline_and_a_drifting_one():
    btc, eth = (OrderConfig.parse(DEMO_ORDERS[s]) for s in ("BTCUSDT", "ETHUSDT"))
    for name in ("latency_ms", "latency_jitter_ms", "slippage_bps", "slippage_std_bps", "partial_fill_prob",
                 "reject_prob"):
        assert getattr(btc, name) == getattr(DEMO_VENUES["BTCUSDT"], name), name
    # the drifting venue: its mean slippage alone breaches the live session's rolling limit
    assert eth.slippage_bps > LIVE_THRESHOLDS.max_drift_bps + 5 > btc.slippage_bps + 5  # paper pays 5 bps too
    assert eth.slippage_bps >= DEMO_VENUES["ETHUSDT"].slippage_bps


def test_live_session_sends_its_orders_to_the_pipelines_exchange(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARK_VAR", str(tmp_path))
    orders = OrderConfig.parse(DEMO_ORDERS["BTCUSDT"])
    pipeline = StreamPipeline(rate=1_000, n=20_000, root=tmp_path / "ingest", orders=orders).start()
    try:
        session = live_session(GateBook(MemoryAudit()), pipeline, "BTCUSDT")
        pipeline.on_bar(stream_bar_callback(session, interval="1s", background=True))
        assert isinstance(session.venue, RiskGuardedVenue)  # the desk's limits stand before the exchange
        venue = session.venue.venue
        assert isinstance(venue, ExchangeVenue) and venue.base_url == pipeline.exchange.rest_url
        assert pipeline.exchange.status()["orders"]["config"]["slippage_bps"] == orders.slippage_bps
        fills = venue.submit(Order("probe-1", "sma_cross", "BTCUSDT", time.time_ns(), "buy", 0.01, 30_000.0))
        assert math.fsum(f.size for f in fills) == pytest.approx(0.01, abs=1e-12)
        assert fills[0].venue == "replay" and venue.reports[-1].status == "FILLED"
        assert pipeline.exchange.status()["orders"]["received"] == 1
        deadline = time.monotonic() + 30  # the 1 s bars of the stream reach the session
        while session.engine.bars_seen < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.engine.bars_seen >= 2
    finally:
        pipeline.stop()


def test_served_live_session_runs_a_user_strategy_named_on_the_command_line(tmp_path, monkeypatch):
    """``spark serve --strategy path/file.py:Class --param k=v``: the live session trades that class."""
    from spark_research.platform.components import ServeConfig

    monkeypatch.setenv("SPARK_VAR", str(tmp_path))
    path = tmp_path / "quick.py"
    path.write_text(
        "from spark_research.backtest import Param, Signals, Strategy\n"
        "class QuickFlip(Strategy):\n"
        "    window = Param(5, low=2, high=50)\n"
        "    def signals(self, bars, window):\n"
        "        up = bars['close'] > bars['close'].rolling(window).mean()\n"
        "        return Signals(entries=up & ~up.shift(1, fill_value=False), exits=~up & up.shift(1, fill_value=False))\n")
    cfg = ServeConfig(strategy=f"{path}:QuickFlip", strategy_params={"window": 3})
    cfg.check_strategy()
    with pytest.raises(ValueError, match="'window' = 1 outside"):
        ServeConfig(strategy=f"{path}:QuickFlip", strategy_params={"window": 1}).check_strategy()
    pipeline = StreamPipeline(rate=1_000, n=20_000, root=tmp_path / "ingest",
                              orders=OrderConfig.parse(DEMO_ORDERS["BTCUSDT"])).start()
    try:
        session = live_session(GateBook(MemoryAudit()), pipeline, "BTCUSDT", cfg.strategy, cfg.live_params)
        pipeline.on_bar(stream_bar_callback(session, interval="1s", background=True))
        assert session.engine.strategy_cls.__name__ == "QuickFlip" and session.engine.params == {"window": 3}
        assert session.gate.name.startswith("QuickFlip")
        deadline = time.monotonic() + 30
        while session.engine.bars_seen < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.engine.bars_seen >= 3
    finally:
        pipeline.stop()
