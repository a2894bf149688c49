"""Seeded synthetic market data: regime-switching 1-minute bars and trade prints.

The price follows a random walk whose drift and volatility switch between four regimes
(calm, bull trend, bear trend, turbulent) by a Markov chain, so strategies meet trends,
ranges and volatility bursts. Volume follows an intraday U-shape and rises with |return|.
The same ``seed`` and symbol give the same bytes on every run and machine: each symbol
draws from its own ``numpy.random.Generator`` seeded with ``(seed, crc32(symbol))``.

Example::

    >>> from spark_research.data import generate_bars
    >>> bars = generate_bars("BTCUSDT", n=1_000, seed=7)
    >>> list(bars.columns)
    ['timestamp', 'open', 'high', 'low', 'close', 'volume', 'symbol']
    >>> bool((generate_bars("BTCUSDT", n=1_000, seed=7) == bars).all().all())
    True
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from spark_research.data.schema import TS_DTYPE

#: Starting prices and tick sizes of the sample symbols.
SYMBOLS: dict[str, tuple[float, float]] = {
    "BTCUSDT": (30_000.0, 0.01),
    "ETHUSDT": (2_000.0, 0.01),
    "SOLUSDT": (100.0, 0.001),
}
#: Regimes: (drift per minute, volatility per minute).
REGIMES = np.array([
    [0.0, 0.0006],      # calm range
    [0.00004, 0.0009],  # bull trend
    [-0.00004, 0.0009], # bear trend
    [0.0, 0.0025],      # turbulent
])
#: Regime transition matrix (rows sum to 1): regimes last hours, not minutes.
TRANSITIONS = np.array([
    [0.9985, 0.0006, 0.0006, 0.0003],
    [0.0010, 0.9985, 0.0002, 0.0003],
    [0.0010, 0.0002, 0.9985, 0.0003],
    [0.0030, 0.0010, 0.0010, 0.9950],
])


def _rng(seed: int, symbol: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(symbol.encode())])


def _regime_path(rng: np.random.Generator, n: int) -> np.ndarray:
    cum = np.cumsum(TRANSITIONS, axis=1)
    u = rng.random(n)
    states = np.empty(n, dtype=np.int8)
    s = 0
    for i in range(n):
        s = int(np.searchsorted(cum[s], u[i], side="right"))
        s = min(s, 3)
        states[i] = s
    return states


def generate_bars(
    symbol: str,
    n: int = 43_200,
    seed: int = 42,
    start: str | pd.Timestamp = "2024-01-01",
    freq: str = "1min",
    price: float | None = None,
) -> pd.DataFrame:
    """Generate ``n`` OHLCV bars for ``symbol`` (valid by :func:`validate_bars`).

    ``price`` overrides the starting price (default from :data:`SYMBOLS`, else 100).
    """
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n!r}")
    p0, tick = SYMBOLS.get(symbol, (100.0, 0.01))
    p0 = price or p0
    rng = _rng(seed, symbol)
    states = _regime_path(rng, n)
    drift, vol = REGIMES[states, 0], REGIMES[states, 1]
    rets = drift + vol * rng.standard_normal(n)
    # cumprod of (1 + r) keeps the path to IEEE multiplications: identical on every machine
    close = p0 * np.cumprod(1.0 + rets)
    close = np.maximum(np.round(close / tick) * tick, tick)
    open_ = np.empty(n)
    open_[0] = np.round(p0 / tick) * tick
    open_[1:] = close[:-1]
    body_hi, body_lo = np.maximum(open_, close), np.minimum(open_, close)
    wick_hi = np.abs(rng.standard_normal(n)) * vol * 0.5 * close
    wick_lo = np.abs(rng.standard_normal(n)) * vol * 0.5 * close
    high = np.round((body_hi + wick_hi) / tick) * tick
    low = np.maximum(np.round((body_lo - wick_lo) / tick) * tick, tick)
    high, low = np.maximum(high, body_hi), np.minimum(low, body_lo)
    ts = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=n, freq=freq)
    minute_of_day = (ts.hour * 60 + ts.minute).to_numpy()
    seasonal = 1.0 + 0.6 * np.cos(2 * np.pi * minute_of_day / 1440.0) ** 2
    base_volume = 1_000_000.0 / p0  # about $1M per minute
    volume = base_volume * seasonal * (1.0 + 40.0 * np.abs(rets)) * rng.lognormal(0.0, 0.4, n)
    volume = np.round(volume, 6)
    return pd.DataFrame({
        "timestamp": ts.astype(TS_DTYPE),
        "open": open_, "high": high, "low": low, "close": close,
        "volume": volume, "symbol": symbol,
    })


def generate_trades(
    symbol: str,
    n: int = 10_000,
    seed: int = 42,
    start: str | pd.Timestamp = "2024-01-01",
    rate_per_s: float = 50.0,
    first_seq: int = 1,
    price: float | None = None,
) -> pd.DataFrame:
    """Generate ``n`` trade prints (``seq, ts, price, qty, side, symbol``) with Poisson arrivals."""
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n!r}")
    p0, tick = SYMBOLS.get(symbol, (100.0, 0.01))
    p0 = price or p0
    rng = _rng(seed, symbol + "/trades")
    gaps_ns = np.maximum(rng.exponential(1e9 / rate_per_s, n).astype("int64"), 1_000)
    ts = pd.Timestamp(start, tz="UTC").value + np.cumsum(gaps_ns)
    side_buy = rng.random(n) < 0.5
    steps = rng.standard_normal(n) * 0.00008 + np.where(side_buy, 0.00001, -0.00001)
    price_path = np.maximum(np.round(p0 * np.cumprod(1.0 + steps) / tick) * tick, tick)
    qty = np.round(rng.lognormal(np.log(500.0 / p0), 1.0, n), 6)
    qty = np.maximum(qty, 1e-6)
    return pd.DataFrame({
        "seq": np.arange(first_seq, first_seq + n, dtype="int64"),
        "ts": pd.to_datetime(ts, utc=True).astype(TS_DTYPE),
        "price": price_path,
        "qty": qty,
        "side": np.where(side_buy, "buy", "sell"),
        "symbol": symbol,
    })
