"""The shipped features: returns, realised volatility, oscillators, volume, autocorrelation,
fractional differentiation, calendar encodings and cross-asset returns.

Each is registered with :func:`~spark_research.features.registry.feature`, so each passed the
lookahead and lookback checks when this module was imported. All are window-local (see
:mod:`spark_research.features.kernels`): the store's incremental updates and the live
one-bar path reproduce a full recompute bit for bit. Functions read ``bars[field]`` as arrays
and ``bars.index`` only (``arrays=True``), so the live path hands them numpy windows.

=====================  ========================================================  ========
family                 features                                                  lookback
=====================  ========================================================  ========
returns                ``ret_1 ret_5 ret_20``, ``logret_1 logret_5 logret_20``     h
realised volatility    ``rv_cc_20`` (close-to-close), ``rv_parkinson_20``,         19-20
                       ``rv_gk_20`` (Garman-Klass)
oscillators            ``rsi_14``, ``macd`` (line, hist), ``bb_pos_20``            14-138
volume                 ``volume_z_50``, ``dollar_volume_z_50``                      49
autocorrelation        ``autocorr_50`` (lag-1, log returns)                        51
memory                 ``fracdiff_04`` (log close, d=0.4, fixed width)             281
calendar               ``time_of_day`` (sin, cos), ``day_of_week`` (sin, cos)       0
cross-asset            ``xs_ret_1``, ``xs_ret_20`` (return minus universe mean)     h
trade flow             ``ofi_20`` (order-flow imbalance), ``trade_count_z_50``,     19-50
(``trades=True``)      ``vwap_dev_20``, ``trade_size_z_50``, ``kyle_lambda_50``
=====================  ========================================================  ========

The trade-flow features read the bar's trades aggregated point in time
(:mod:`spark_research.features.trades`: buy/sell aggressor volume, count, notional, VWAP, mean
size); they are computed where trades are given (``compute_features(..., trades=...)``, bars
from ``with_trade_flow``, the store for symbols with stored trades, ``LiveFeatures.update(...,
trades=...)``) and raise a ``FeatureError`` naming them otherwise.

Example::

    >>> from spark_research.features import compute_features
    >>> from spark_research.data import generate_bars
    >>> out = compute_features(generate_bars("BTCUSDT", n=300, seed=1), ["logret_1", "fracdiff_04"])
    >>> bool(out["fracdiff_04"].iloc[:281].isna().all()), bool(out["fracdiff_04"].iloc[281:].notna().all())
    (True, True)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from spark_research.features import kernels as k
from spark_research.features.registry import feature, timestamps_ns

_NS_PER_DAY = 86_400 * 10**9
_LN2 = float(np.log(2.0))


def _col(bars: Any, name: str) -> np.ndarray:
    return np.asarray(bars[name], dtype=np.float64)


# -- returns ------------------------------------------------------------------------------------


@feature("ret_20", lookback=20, arrays=True, horizon=20)
@feature("ret_5", lookback=5, arrays=True, horizon=5)
@feature("ret_1", lookback=1, arrays=True, horizon=1)
def simple_return(bars: Any, horizon: int) -> np.ndarray:
    """Simple return of the close over ``horizon`` bars."""
    close = _col(bars, "close")
    out = np.full(len(close), np.nan)
    out[horizon:] = close[horizon:] / close[:-horizon] - 1.0
    return out


@feature("logret_20", lookback=20, arrays=True, horizon=20)
@feature("logret_5", lookback=5, arrays=True, horizon=5)
@feature("logret_1", lookback=1, arrays=True, horizon=1)
def log_return(bars: Any, horizon: int) -> np.ndarray:
    """Log return of the close over ``horizon`` bars."""
    return k.lag_diff(np.log(_col(bars, "close")), horizon)


# -- realised volatility ----------------------------------------------------------------------------


@feature("rv_cc_20", lookback=20, arrays=True, window=20)
def rv_close_to_close(bars: Any, window: int) -> np.ndarray:
    """Close-to-close realised volatility: std of 1-bar log returns over ``window`` bars."""
    return k.window_std(k.lag_diff(np.log(_col(bars, "close")), 1), window)


@feature("rv_parkinson_20", lookback=19, arrays=True, window=20)
def rv_parkinson(bars: Any, window: int) -> np.ndarray:
    """Parkinson high-low volatility: sqrt(mean(ln(H/L)^2) / (4 ln 2)) over ``window`` bars."""
    hl = np.log(_col(bars, "high") / _col(bars, "low"))
    return np.sqrt(k.window_mean(hl * hl, window) / (4.0 * _LN2))


@feature("rv_gk_20", lookback=19, arrays=True, window=20)
def rv_garman_klass(bars: Any, window: int) -> np.ndarray:
    """Garman-Klass volatility: sqrt(mean(0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2)), floored at 0."""
    hl = np.log(_col(bars, "high") / _col(bars, "low"))
    co = np.log(_col(bars, "close") / _col(bars, "open"))
    var = k.window_mean(0.5 * hl * hl - (2.0 * _LN2 - 1.0) * co * co, window)
    return np.sqrt(np.maximum(var, 0.0))


# -- oscillators --------------------------------------------------------------------------------------


@feature("rsi_14", lookback=14, arrays=True, window=14)
def rsi(bars: Any, window: int) -> np.ndarray:
    """Relative strength index (Cutler's, simple averages of gains and losses), 0-100."""
    return k.rsi(_col(bars, "close"), window)


@feature("macd", lookback=103 + 35, arrays=True, fast=12, slow=26, signal=9, width_spans=4)
def macd(bars: Any, fast: int, slow: int, signal: int, width_spans: int) -> dict[str, np.ndarray]:
    """MACD on EMAs truncated to ``width_spans`` spans: line = EMA_fast / EMA_slow - 1, hist = line - signal."""
    close = _col(bars, "close")
    line = (k.window_dot(close, k.ema_weights(fast, width_spans * fast))
            / k.window_dot(close, k.ema_weights(slow, width_spans * slow)) - 1.0)
    sig = k.window_dot(line, k.ema_weights(signal, width_spans * signal))
    return {"line": line, "hist": line - sig}


@feature("bb_pos_20", lookback=19, arrays=True, window=20, width=2.0)
def bollinger_position(bars: Any, window: int, width: float) -> np.ndarray:
    """Position in the Bollinger band: (close - mean) / (width * std) over ``window`` bars (+-1 at the bands)."""
    return k.window_zscore(_col(bars, "close"), window) / width


# -- volume ---------------------------------------------------------------------------------------------


@feature("volume_z_50", lookback=49, arrays=True, window=50)
def volume_zscore(bars: Any, window: int) -> np.ndarray:
    """Z-score of the bar's volume against the last ``window`` bars."""
    return k.window_zscore(_col(bars, "volume"), window)


@feature("dollar_volume_z_50", lookback=49, arrays=True, window=50)
def dollar_volume_zscore(bars: Any, window: int) -> np.ndarray:
    """Z-score of log(close * volume) against the last ``window`` bars (NaN for zero volume)."""
    with np.errstate(divide="ignore"):
        dv = np.log(_col(bars, "close") * _col(bars, "volume"))
    return k.window_zscore(np.where(np.isfinite(dv), dv, np.nan), window)


# -- autocorrelation and memory ---------------------------------------------------------------------------


@feature("autocorr_50", lookback=51, arrays=True, window=50, lag=1)
def return_autocorr(bars: Any, window: int, lag: int) -> np.ndarray:
    """Rolling autocorrelation of 1-bar log returns at ``lag`` over ``window`` bars."""
    return k.window_autocorr(k.lag_diff(np.log(_col(bars, "close")), 1), window, lag)


@feature("fracdiff_04", lookback=281, arrays=True, d=0.4, threshold=1e-4)
def fracdiff(bars: Any, d: float, threshold: float) -> np.ndarray:
    """Fixed-width fractionally differentiated log close (AFML ch. 5): weights until ``|w| < threshold``."""
    return k.window_dot(np.log(_col(bars, "close")), k.ffd_weights(d, threshold))


# -- calendar --------------------------------------------------------------------------------------------


@feature("time_of_day", lookback=0, arrays=True)
def time_of_day(bars: Any) -> dict[str, np.ndarray]:
    """Time of day (UTC) on the unit circle: sin and cos of 2 pi * seconds / 86400."""
    phase = (timestamps_ns(bars) % _NS_PER_DAY) * (2.0 * np.pi / _NS_PER_DAY)
    return {"sin": np.sin(phase), "cos": np.cos(phase)}


@feature("day_of_week", lookback=0, arrays=True)
def day_of_week(bars: Any) -> dict[str, np.ndarray]:
    """Day of week (UTC, Monday = 0) on the unit circle: sin and cos of 2 pi * day / 7."""
    dow = (timestamps_ns(bars) // _NS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday
    phase = np.arange(7) * (2.0 * np.pi / 7.0)
    return {"sin": np.sin(phase)[dow], "cos": np.cos(phase)[dow]}


# -- cross-asset ----------------------------------------------------------------------------------------------


@feature("xs_ret_20", lookback=20, arrays=True, universe=True, horizon=20)
@feature("xs_ret_1", lookback=1, arrays=True, universe=True, horizon=1)
def cross_sectional_return(bars: Any, universe: Any, horizon: int) -> np.ndarray:
    """The symbol's log return over ``horizon`` bars minus the mean over the universe (symbols with
    a bar at both ends of the horizon)."""
    own = k.lag_diff(np.log(_col(bars, "close")), horizon)
    closes = np.log(np.asarray(universe, dtype=np.float64))
    return own - k.cross_mean_change(closes.reshape(len(closes), -1), horizon)


# -- trade flow (the bar's trades, see spark_research.features.trades) -------------------------------------


@feature("ofi_20", lookback=19, arrays=True, trades=True, window=20)
def order_flow_imbalance(bars: Any, window: int) -> np.ndarray:
    """Order-flow imbalance over ``window`` bars: (buy - sell) / (buy + sell) aggressor volume, in [-1, 1]
    (NaN when the window has no trades)."""
    buy = k.window_mean(_col(bars, "buy_volume"), window)
    sell = k.window_mean(_col(bars, "sell_volume"), window)
    total = buy + sell
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0.0, (buy - sell) / total, np.nan)


@feature("trade_count_z_50", lookback=49, arrays=True, trades=True, window=50)
def trade_count_zscore(bars: Any, window: int) -> np.ndarray:
    """Z-score of the bar's number of trades against the last ``window`` bars."""
    return k.window_zscore(_col(bars, "trade_count"), window)


@feature("vwap_dev_20", lookback=19, arrays=True, trades=True, window=20)
def vwap_deviation(bars: Any, window: int) -> np.ndarray:
    """Close over the VWAP of the last ``window`` bars' trades, minus 1 (NaN when they have no trades)."""
    notional = k.window_mean(_col(bars, "notional"), window)
    volume = k.window_mean(_col(bars, "buy_volume") + _col(bars, "sell_volume"), window)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(volume > 0.0, _col(bars, "close") * volume / notional - 1.0, np.nan)


@feature("trade_size_z_50", lookback=49, arrays=True, trades=True, window=50)
def trade_size_zscore(bars: Any, window: int) -> np.ndarray:
    """Z-score of the log mean trade size of the bar against the last ``window`` bars (NaN while the
    window holds a bar without trades)."""
    return k.window_zscore(np.log(_col(bars, "mean_trade_size")), window)


@feature("kyle_lambda_50", lookback=50, arrays=True, trades=True, window=50)
def kyle_lambda(bars: Any, window: int) -> np.ndarray:
    """Kyle's lambda-like price impact: OLS slope of the 1-bar log return on the bar's signed aggressor
    volume (buy - sell, base units) over ``window`` bars."""
    signed = _col(bars, "buy_volume") - _col(bars, "sell_volume")
    return k.window_beta(k.lag_diff(np.log(_col(bars, "close")), 1), signed, window)
