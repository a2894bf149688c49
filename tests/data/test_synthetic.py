"""The seeded generator: deterministic, valid, regime-switching."""
import hashlib

import numpy as np
import pandas as pd

from spark_research.data.schema import validate_bars, validate_trades
from spark_research.data.synthetic import generate_bars, generate_trades


def _h(df):
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes()).hexdigest()


def test_same_seed_same_bytes_different_seed_different_path():
    a, b = generate_bars("BTCUSDT", n=5_000, seed=11), generate_bars("BTCUSDT", n=5_000, seed=11)
    assert _h(a) == _h(b)
    assert _h(a) != _h(generate_bars("BTCUSDT", n=5_000, seed=12))
    assert _h(a) != _h(generate_bars("ETHUSDT", n=5_000, seed=11))


def test_generated_bars_and_trades_are_valid():
    validate_bars(generate_bars("SOLUSDT", n=20_000, seed=1))
    validate_trades(generate_trades("SOLUSDT", n=5_000, seed=1))


def test_volatility_switches_between_regimes():
    bars = generate_bars("BTCUSDT", n=43_200, seed=42)
    r = np.log(bars["close"]).diff().dropna()
    hourly_vol = r.groupby(np.arange(len(r)) // 60).std()
    assert hourly_vol.max() / hourly_vol.min() > 2.5  # calm and turbulent hours both occur


def test_trade_ids_are_consecutive_and_times_increase():
    t = generate_trades("BTCUSDT", n=1_000, seed=3, first_seq=500)
    assert t["seq"].tolist() == list(range(500, 1_500))
    assert t["ts"].is_monotonic_increasing
