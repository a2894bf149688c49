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
from collections.abc import Iterator

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


# ------------------------------------------------------------------ universe scale
def _universe_price(rng: np.random.Generator, symbol: str) -> tuple[float, float]:
    """Starting price and tick of ``symbol``: the sample's if known, else drawn (0.1 .. 30k)."""
    if symbol in SYMBOLS:
        return SYMBOLS[symbol]
    p0 = float(10 ** rng.uniform(-1.0, 4.5))
    tick = float(10 ** (np.floor(np.log10(p0)) - 4))
    return float(np.round(p0 / tick) * tick), tick


def _regime_runs(rng: np.random.Generator, n: int, state: int) -> tuple[np.ndarray, int]:
    """A regime path of ``n`` steps drawn run by run (geometric holding times, then a jump to
    another regime in proportion to :data:`TRANSITIONS`): the same chain as ``_regime_path``
    but a few hundred draws a month instead of a Python step per bar."""
    states = np.empty(n, dtype=np.int8)
    pos = 0
    while pos < n:  # bounded: every pass fills at least one bar
        run = int(rng.geometric(1.0 - TRANSITIONS[state, state]))
        states[pos:pos + run] = state
        pos += run
        jump = TRANSITIONS[state].copy()
        jump[state] = 0.0
        state = int(rng.choice(4, p=jump / jump.sum()))
    return states, state


def generate_bars_monthly(
    symbol: str,
    start: str | pd.Timestamp = "2024-01-01",
    end: str | pd.Timestamp = "2025-01-01",
    seed: int = 42,
    freq: str = "1min",
) -> Iterator[pd.DataFrame]:
    """Yield seeded bars of ``symbol`` for ``start <= timestamp < end``, one calendar month per frame.

    Memory stays at one month whatever the span, so a universe of years streams to the store.
    The path continues across months (price, regime and random stream carry over); the same
    ``seed``, symbol and ``start`` give the same bytes, and a longer ``end`` only appends months.
    It is a different stream from :func:`generate_bars` (whose outputs golden files pin).

    Example::

        >>> frames = list(generate_bars_monthly("U000USDT", "2024-01-30", "2024-02-02", seed=1))
        >>> [len(f) for f in frames], frames[1]["timestamp"].iloc[0].month
        ([2880, 1440], 2)
    """
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    t1 = t1.tz_localize("UTC") if t1.tzinfo is None else t1.tz_convert("UTC")
    if t1 <= t0:
        raise ValueError(f"end must be after start, got start={t0} end={t1}")
    rng = _rng(seed, symbol + "/universe")
    p0, tick = _universe_price(rng, symbol)
    base_volume = 1_000_000.0 / p0  # about $1M per minute
    prev_close, state = float(np.round(p0 / tick) * tick), 0
    month = t0.tz_localize(None).to_period("M")
    while True:  # bounded by the months between start and end
        lo = max(t0, month.start_time.tz_localize("UTC"))
        hi = min(t1, (month + 1).start_time.tz_localize("UTC"))
        if lo >= t1:
            return
        ts = pd.date_range(lo, hi, freq=freq, inclusive="left")
        month += 1
        n = len(ts)
        if n == 0:
            continue
        states, state = _regime_runs(rng, n, state)
        drift, vol = REGIMES[states, 0], REGIMES[states, 1]
        rets = drift + vol * rng.standard_normal(n)
        close = np.maximum(np.round(prev_close * np.cumprod(1.0 + rets) / tick) * tick, tick)
        open_ = np.empty(n)
        open_[0] = prev_close
        open_[1:] = close[:-1]
        prev_close = float(close[-1])
        body_hi, body_lo = np.maximum(open_, close), np.minimum(open_, close)
        wicks = np.abs(rng.standard_normal((2, n))) * vol * 0.5 * close
        high = np.maximum(np.round((body_hi + wicks[0]) / tick) * tick, body_hi)
        low = np.minimum(np.maximum(np.round((body_lo - wicks[1]) / tick) * tick, tick), body_lo)
        minute_of_day = (ts.hour * 60 + ts.minute).to_numpy()
        seasonal = 1.0 + 0.6 * np.cos(2 * np.pi * minute_of_day / 1440.0) ** 2
        volume = np.round(base_volume * seasonal * (1.0 + 40.0 * np.abs(rets)) * rng.lognormal(0.0, 0.4, n), 6)
        yield pd.DataFrame({
            "timestamp": ts.astype(TS_DTYPE),
            "open": open_, "high": high, "low": low, "close": close,
            "volume": volume, "symbol": symbol,
        })
