"""Deliberately leaky strategies (realistic mistakes) and clean ones, for the lookahead check.

Every leaky class says in its docstring what the leak is, and carries:

* ``expected_series``: the series ``check_lookahead`` must name (``indicator:<name>`` or
  ``signal:<name>``);
* ``needs``: the kind of cut that exposes it: ``"any"`` when evenly spaced cuts already do
  (dense leaks), else ``"warmup"``, ``"special"`` or ``"signal"``: the leak only shows on a
  cut through the warm-up, right at a special bar (time gap, day boundary, empty bar), or
  right at a signal bar.

Leaks at ``"special"`` bars need bars with time gaps and zero-volume bars (see
``gappy_bars`` in ``test_lookahead_leaks.py``).
"""
from __future__ import annotations

from typing import ClassVar

import pandas as pd
import vectorbt as vbt

from spark_research.backtest.strategy import Param, Signals, Strategy


def _cross(a: pd.Series | float, b: pd.Series | float) -> pd.Series:
    """``a`` crosses above ``b`` at this bar (uses this bar and the previous one only); either
    side may be a constant level."""
    if not isinstance(a, pd.Series):
        a = pd.Series(float(a), index=b.index)
    if not isinstance(b, pd.Series):
        b = pd.Series(float(b), index=a.index)
    return ((a > b) & (a.shift(1) <= b.shift(1))).fillna(False).astype(bool)


def _flag(s: pd.Series) -> pd.Series:
    return s.fillna(False).astype(bool)


class Leaky(Strategy):
    """Base of the leaky strategies: where the check must catch them."""

    expected_series: ClassVar[str] = ""
    needs: ClassVar[str] = "any"


# -- dense leaks: any cut shows them ---------------------------------------------------------


class FutureReturnFilter(Leaky):
    """SMA crossover that only keeps the crosses "that worked": the entry filter reads the
    return of the next ``horizon`` bars (any cut within ``horizon`` bars after an entry, and
    every signal cut, shows it)."""

    expected_series = "signal:entries"
    fast = Param(10, low=2, high=50)
    slow = Param(40, low=5, high=200)
    horizon = Param(5, low=1, high=50)

    def signals(self, bars, fast, slow, horizon):
        close = bars["close"]
        f, s = close.rolling(fast).mean(), close.rolling(slow).mean()
        worked = close.shift(-horizon) > close
        return Signals(entries=_cross(f, s) & _flag(worked), exits=_cross(s, f))


class PctChangeBackwards(Leaky):
    """Momentum on ``pct_change(-1)``, meant as "the last return": it is the change from this
    bar to the next one."""

    expected_series = "indicator:ret"
    threshold_bp = Param(5, low=1, high=100)

    def indicators(self, bars, threshold_bp):
        return {"ret": bars["close"].pct_change(-1).rename("ret")}

    def signals(self, bars, threshold_bp):
        ret = self.indicators(bars, threshold_bp)["ret"]
        return Signals(entries=_flag(ret > threshold_bp / 1e4), exits=_flag(ret < -threshold_bp / 1e4))


class CentredBollinger(Leaky):
    """Bollinger bands on a centred rolling window (``center=True``): each band averages the
    next ``window // 2`` bars too."""

    expected_series = "indicator:mid"
    window = Param(20, low=5, high=100)
    width = Param(2.0, low=0.5, high=4.0, step=0.5)

    def indicators(self, bars, window, width):
        roll = bars["close"].rolling(window, center=True)
        mid, sd = roll.mean(), roll.std()
        return {"mid": mid.rename("mid"), "lower": (mid - width * sd).rename("lower")}

    def signals(self, bars, window, width):
        ind, close = self.indicators(bars, window, width), bars["close"]
        return Signals(entries=_cross(ind["lower"], close), exits=_cross(close, ind["mid"]))


class FullSampleZScore(Leaky):
    """Z-score of the close with the mean and standard deviation of the whole sample."""

    expected_series = "indicator:z"
    entry_z = Param(1.5, low=0.5, high=3.0, step=0.5)

    def indicators(self, bars, entry_z):
        close = bars["close"]
        return {"z": ((close - close.mean()) / close.std()).rename("z")}

    def signals(self, bars, entry_z):
        z = self.indicators(bars, entry_z)["z"]
        return Signals(entries=_cross(-z, entry_z), exits=_cross(z, 0.0))


class WholeSeriesRange(Leaky):
    """Position of the close within the min-max range of the whole series."""

    expected_series = "indicator:range_pos"
    low_pct = Param(20, low=5, high=50, step=5)

    def indicators(self, bars, low_pct):
        close = bars["close"]
        return {"range_pos": ((close - close.min()) / (close.max() - close.min())).rename("range_pos")}

    def signals(self, bars, low_pct):
        pos = self.indicators(bars, low_pct)["range_pos"]
        return Signals(entries=_cross(low_pct / 100, pos), exits=_cross(pos, 0.5))


class HourlyResampleMisaligned(Leaky):
    """Hourly close from ``resample('1h', label='left', closed='right')`` forward-filled onto
    minute bars: the bin ``(10:00, 11:00]`` is labelled 10:00, so from 10:00 on every minute
    bar sees the 11:00 close."""

    expected_series = "indicator:hourly_close"
    window = Param(3, low=1, high=24)

    def indicators(self, bars, window):
        close = bars["close"]
        hourly = close.resample("1h", label="left", closed="right").last().rolling(window).mean()
        return {"hourly_close": hourly.reindex(close.index, method="ffill").rename("hourly_close")}

    def signals(self, bars, window):
        h, close = self.indicators(bars, window)["hourly_close"], bars["close"]
        return Signals(entries=_cross(close, h), exits=_cross(h, close))


class DailyHighGroupby(Leaky):
    """Breakout against "today's high" from ``groupby(date).transform('max')``: every bar of
    the day sees the high of bars later that day."""

    expected_series = "indicator:day_high"
    tolerance_bp = Param(5, low=0, high=50)

    def indicators(self, bars, tolerance_bp):
        high = bars["high"]
        return {"day_high": high.groupby(bars.index.date).transform("max").rename("day_high")}

    def signals(self, bars, tolerance_bp):
        day_high, close = self.indicators(bars, tolerance_bp)["day_high"], bars["close"]
        near = close >= day_high * (1 - tolerance_bp / 1e4)
        return Signals(entries=near & ~near.shift(1, fill_value=False), exits=close < close.rolling(30).mean())


class ReversedEma(Leaky):
    """An EMA with ``adjust=True`` computed on the reversed series (to "align it to the end"):
    each value is a weighted mean of the bars *after* it."""

    expected_series = "indicator:ema"
    span = Param(20, low=2, high=200)

    def indicators(self, bars, span):
        close = bars["close"]
        return {"ema": close[::-1].ewm(span=span, adjust=True).mean()[::-1].rename("ema")}

    def signals(self, bars, span):
        ema, close = self.indicators(bars, span)["ema"], bars["close"]
        return Signals(entries=_cross(close, ema), exits=_cross(ema, close))


class ForwardWindowHigh(Leaky):
    """Breakout level from a window shifted the wrong way: ``rolling(w).max().shift(-w)`` is
    the high of the *next* ``w`` bars."""

    expected_series = "indicator:level"
    window = Param(20, low=2, high=200)

    def indicators(self, bars, window):
        return {"level": bars["high"].rolling(window).max().shift(-window).rename("level")}

    def signals(self, bars, window):
        level, close = self.indicators(bars, window)["level"], bars["close"]
        return Signals(entries=_flag(close * 1.001 > level), exits=_flag(close < level * 0.995))


class NormaliseByLastPrice(Leaky):
    """Prices normalised by the last close of the loaded data (``close / close.iloc[-1]``),
    then compared with a fixed band: the last close is a future bar for every other bar."""

    expected_series = "indicator:norm"
    band_pct = Param(1, low=1, high=10)

    def indicators(self, bars, band_pct):
        close = bars["close"]
        return {"norm": (close / close.iloc[-1]).rename("norm")}

    def signals(self, bars, band_pct):
        norm = self.indicators(bars, band_pct)["norm"]
        return Signals(entries=_cross(1 - band_pct / 100, norm), exits=_cross(norm, 1.0))


class WarmupFilledWithSampleMean(Leaky):
    """SMA whose warm-up NaNs are filled with the mean close of the whole sample."""

    expected_series = "indicator:ma"
    window = Param(50, low=5, high=200)

    def indicators(self, bars, window):
        close = bars["close"]
        return {"ma": close.rolling(window).mean().fillna(close.mean()).rename("ma")}

    def signals(self, bars, window):
        ma, close = self.indicators(bars, window)["ma"], bars["close"]
        return Signals(entries=_cross(close, ma), exits=_cross(ma, close))


# -- leaks only in the warm-up: only early cuts show them ----------------------------------


class BfillWarmup(Leaky):
    """SMA crossover whose slow SMA is ``bfill()``-ed "so the first bars have a value": the
    warm-up holds the first complete average, computed from later bars."""

    expected_series = "indicator:slow_ma"
    needs = "warmup"
    fast = Param(10, low=2, high=50)
    slow = Param(60, low=5, high=200)

    def indicators(self, bars, fast, slow):
        close = bars["close"]
        return {"fast_ma": close.rolling(fast).mean().rename("fast_ma"),
                "slow_ma": close.rolling(slow).mean().bfill().rename("slow_ma")}

    def signals(self, bars, fast, slow):
        ind = self.indicators(bars, fast, slow)
        return Signals(entries=_cross(ind["fast_ma"], ind["slow_ma"]), exits=_cross(ind["slow_ma"], ind["fast_ma"]))


class WarmupFilledWithEarlyVolatility(Leaky):
    """Volatility breakout whose warm-up is filled with the average volatility of the first
    ``4 * window`` bars: only a cut inside those bars sees a different fill."""

    expected_series = "indicator:vol"
    needs = "warmup"
    window = Param(30, low=5, high=100)
    k = Param(3.0, low=1.0, high=5.0, step=0.5)

    def indicators(self, bars, window, k):
        ret = bars["close"].pct_change()
        vol = ret.rolling(window).std()
        return {"vol": vol.fillna(vol.iloc[: 4 * window].mean()).rename("vol")}

    def signals(self, bars, window, k):
        vol, ret = self.indicators(bars, window, k)["vol"], bars["close"].pct_change()
        return Signals(entries=_flag(ret > k * vol), exits=_flag(ret < -k * vol))


# -- sparse leaks: only a cut right at a special bar or a signal bar shows them -------------


class GapRepair(Leaky):
    """The last bar before a time gap often prints a bad close, so it is "repaired" with the
    open of the bar after the gap. Detecting the gap needs the next timestamp, which a live
    feed does not have yet."""

    expected_series = "indicator:clean_close"
    needs = "special"
    window = Param(20, low=2, high=200)

    def indicators(self, bars, window):
        ts = bars.index.to_series()
        step = ts.diff()
        before_gap = (ts.shift(-1) - ts) > step.median()
        clean = bars["close"].where(~before_gap, bars["open"].shift(-1))
        return {"clean_close": clean.rename("clean_close"), "ma": clean.rolling(window).mean().rename("ma")}

    def signals(self, bars, window):
        ind = self.indicators(bars, window)
        return Signals(entries=_cross(ind["clean_close"], ind["ma"]), exits=_cross(ind["ma"], ind["clean_close"]))


class DayBoundarySettle(Leaky):
    """Settles each day's last bar at the next session's opening print (a futures-style
    settlement): the last bar of the day reads the first bar of the next."""

    expected_series = "indicator:settle"
    needs = "special"
    window = Param(30, low=2, high=200)

    def indicators(self, bars, window):
        day = pd.Series(bars.index.normalize(), index=bars.index)
        last_of_day = day.shift(-1) > day
        return {"settle": bars["close"].where(~last_of_day, bars["open"].shift(-1)).rename("settle")}

    def signals(self, bars, window):
        settle = self.indicators(bars, window)["settle"]
        ma = settle.rolling(window).mean()
        return Signals(entries=_cross(settle, ma), exits=_cross(ma, settle))


class InterpolateMissingCloses(Leaky):
    """Zero-volume bars carry a stale close, so it is set missing and ``interpolate()``-d:
    the linear fill runs to the next bar's close."""

    expected_series = "indicator:clean_close"
    needs = "special"
    window = Param(20, low=2, high=200)

    def indicators(self, bars, window):
        clean = bars["close"].where(bars["volume"] > 0).interpolate()
        return {"clean_close": clean.rename("clean_close")}

    def signals(self, bars, window):
        clean = self.indicators(bars, window)["clean_close"]
        ma = clean.rolling(window).mean()
        return Signals(entries=_cross(clean, ma), exits=_cross(ma, clean))


class RareSpikeConfirm(Leaky):
    """Volume-spike entries "confirmed" by the next bar closing higher: a one-bar peek on a
    rare condition, visible only when the data ends at the spike."""

    expected_series = "signal:entries"
    needs = "signal"
    lookback = Param(300, low=50, high=2_000)
    quantile = Param(0.99, low=0.9, high=0.999, step=0.001)

    def signals(self, bars, lookback, quantile):
        volume, close = bars["volume"], bars["close"]
        spike = volume > volume.rolling(lookback, min_periods=50).quantile(quantile).shift(1)
        confirmed = close.shift(-1) > close
        ma = close.rolling(30).mean()
        return Signals(entries=_flag(spike & confirmed), exits=_cross(ma, close))


class ShortOnlyLeak(Leaky):
    """Clean SMA crossover on the long side; the short entry waits for the next bar to close
    lower than the signal bar. Only the short signals leak."""

    expected_series = "signal:short_entries"
    needs = "signal"
    fast = Param(10, low=2, high=50)
    slow = Param(40, low=5, high=200)

    def signals(self, bars, fast, slow):
        close = bars["close"]
        f, s = close.rolling(fast).mean(), close.rolling(slow).mean()
        up, down = _cross(f, s), _cross(s, f)
        return Signals(entries=up, exits=down, short_entries=down & _flag(close.shift(-1) < close),
                       short_exits=up)


LEAKY: list[type[Leaky]] = [
    FutureReturnFilter, PctChangeBackwards, CentredBollinger, FullSampleZScore, WholeSeriesRange,
    HourlyResampleMisaligned, DailyHighGroupby, ReversedEma, ForwardWindowHigh, NormaliseByLastPrice,
    WarmupFilledWithSampleMean, BfillWarmup, WarmupFilledWithEarlyVolatility, GapRepair, DayBoundarySettle,
    InterpolateMissingCloses, RareSpikeConfirm, ShortOnlyLeak,
]


# -- clean user strategies: must pass ------------------------------------------------------


class BollingerReversion(Strategy):
    """Buy a close back inside the lower Bollinger band; sell at the middle band."""

    window = Param(20, low=5, high=200)
    width = Param(2.0, low=0.5, high=4.0, step=0.5)

    def indicators(self, bars, window, width):
        roll = bars["close"].rolling(window)
        mid, sd = roll.mean(), roll.std()
        return {"mid": mid.rename("mid"), "lower": (mid - width * sd).rename("lower")}

    def signals(self, bars, window, width):
        ind, close = self.indicators(bars, window, width), bars["close"]
        return Signals(entries=_cross(close, ind["lower"]), exits=_cross(close, ind["mid"]))


class EmaMomentumLongShort(Strategy):
    """Long above, short below: fast EMA against slow EMA (``ewm(adjust=False)`` and vbt's)."""

    fast = Param(12, low=2, high=100)
    slow = Param(48, low=5, high=400)

    def indicators(self, bars, fast, slow):
        close = bars["close"]
        return {"fast_ema": close.ewm(span=fast, adjust=False).mean().rename("fast_ema"),
                "slow_ema": vbt.MA.run(close, slow, ewm=True).ma.rename("slow_ema")}

    def signals(self, bars, fast, slow):
        ind = self.indicators(bars, fast, slow)
        up, down = _cross(ind["fast_ema"], ind["slow_ema"]), _cross(ind["slow_ema"], ind["fast_ema"])
        return Signals(entries=up, exits=down, short_entries=down, short_exits=up)


class VolumeBreakout(Strategy):
    """Sparse entries: a close above the prior ``window``-bar high on volume above the prior
    ``lookback``-bar 99th percentile; exit below the prior ``exit_window``-bar low."""

    window = Param(60, low=5, high=500)
    exit_window = Param(20, low=2, high=250)
    lookback = Param(300, low=50, high=2_000)

    def indicators(self, bars, window, exit_window, lookback):
        return {"upper": bars["high"].rolling(window).max().shift(1).rename("upper"),
                "lower": bars["low"].rolling(exit_window).min().shift(1).rename("lower"),
                "vol_q": bars["volume"].rolling(lookback, min_periods=50).quantile(0.99).shift(1).rename("vol_q")}

    def signals(self, bars, window, exit_window, lookback):
        ind, close = self.indicators(bars, window, exit_window, lookback), bars["close"]
        return Signals(entries=_flag((close > ind["upper"]) & (bars["volume"] > ind["vol_q"])),
                       exits=_flag(close < ind["lower"]))


class SessionVwapReversion(Strategy):
    """Buy below the session VWAP, sell above it; the session restarts each UTC day and after
    any time gap (both known at the bar itself: they compare with the *previous* timestamp)."""

    band_bp = Param(20, low=1, high=200)

    def indicators(self, bars, band_bp):
        ts = bars.index.to_series()
        new_day = ts.dt.normalize() != ts.shift(1).dt.normalize()
        gap = ts.diff() > ts.diff().median()
        session = (new_day | gap).cumsum()
        typical = (bars["high"] + bars["low"] + bars["close"]) / 3
        pv = (typical * bars["volume"]).groupby(session).cumsum()
        vwap = pv / bars["volume"].groupby(session).cumsum()
        return {"vwap": vwap.rename("vwap")}

    def signals(self, bars, band_bp):
        vwap, close = self.indicators(bars, band_bp)["vwap"], bars["close"]
        below = vwap * (1 - band_bp / 1e4)
        return Signals(entries=_cross(below, close), exits=_cross(close, vwap))


CLEAN: list[type[Strategy]] = [BollingerReversion, EmaMomentumLongShort, VolumeBreakout, SessionVwapReversion]
