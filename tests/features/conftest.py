"""Fixtures of the feature tests: seeded bars of three symbols that cross a month boundary."""
from __future__ import annotations

import pandas as pd
import pytest

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
#: 2,600 one-minute bars from 2024-01-30 12:00 to 2024-02-01 07:19: two days, two months.
START = "2024-01-30 12:00"
N_BARS = 2_600


@pytest.fixture(scope="session")
def raw_bars() -> dict[str, pd.DataFrame]:
    """``{symbol: bars}`` as the bar store returns them (a ``timestamp`` column), seeded."""
    from spark_research.data.synthetic import generate_bars

    return {s: generate_bars(s, n=N_BARS, seed=11, start=START) for s in SYMBOLS}


@pytest.fixture(scope="session")
def bars(raw_bars) -> dict[str, pd.DataFrame]:
    """``{symbol: bars indexed by UTC timestamp}``."""
    from spark_research.features.registry import as_bars

    return {s: as_bars(b) for s, b in raw_bars.items()}


@pytest.fixture(scope="session")
def trades(bars) -> dict[str, pd.DataFrame]:
    """``{symbol: seeded synthetic trades over its bars}`` (about 60 a bar, none before the first bar)."""
    from spark_research.features.trades import synthetic_trades

    return {s: synthetic_trades(b, per_bar=60, seed=21 + i) for i, (s, b) in enumerate(bars.items())}


@pytest.fixture(scope="session")
def flow_bars(bars, trades) -> dict[str, pd.DataFrame]:
    """``{symbol: bars with the trade-flow columns of its trades}``: what trade-flow features read."""
    from spark_research.features.trades import with_trade_flow

    return {s: with_trade_flow(b, trades[s]) for s, b in bars.items()}


@pytest.fixture(scope="session")
def universe(bars) -> pd.DataFrame:
    """Closes of the three symbols, one column each."""
    return pd.DataFrame({s: b["close"] for s, b in bars.items()})


@pytest.fixture
def bar_store(tmp_path, raw_bars):
    """A fresh BarStore holding every symbol's bars."""
    from spark_research.data.store import BarStore

    store = BarStore(tmp_path / "store")
    for b in raw_bars.values():
        store.write_bars(b)
    return store


@pytest.fixture
def clean_registry():
    """Drop every feature a test registers (the shipped ones stay)."""
    from spark_research.features import registry

    registry.list_features()
    before = dict(registry._REGISTRY)
    yield registry
    with registry._LOCK:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(before)
