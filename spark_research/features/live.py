"""Live features: one new bar in, that bar's feature row out, with the same code as the store.

:class:`LiveFeatures` keeps the last ``lookback + 1`` bars in numpy ring buffers. On each bar it
calls every feature's own function on a window of exactly the bars that feature needs (its
lookback plus the new bar) and keeps the last value. The shipped features are window-local
(:mod:`spark_research.features.kernels`), so the row equals the batch/store row for that bar
bit for bit. Features declared with ``arrays=True`` receive a light window of numpy arrays
(``window["close"]``, ``window.index``, ``window.ts_ns``); others receive a DataFrame.

Trade-flow features (``trades=True``) also need each bar's trade flow: pass the bar's trades,
``update(bar, trades=<its trades>)`` (aggregated by the same kernel as the batch path,
:func:`spark_research.features.trades.bar_flow`), or the aggregates themselves as fields of the
bar (``buy_volume``, ... of :data:`~spark_research.features.registry.FLOW_FIELDS`). Bar-only
feature sets work exactly as before.

Example::

    >>> from spark_research.data import generate_bars
    >>> from spark_research.features import compute_features
    >>> bars = generate_bars("BTCUSDT", n=400, seed=3)
    >>> live = LiveFeatures(["ret_1", "rsi_14", "macd"])
    >>> live.warm(bars.iloc[:-1])
    >>> row = live.update(bars.iloc[-1])
    >>> batch = compute_features(bars, ["ret_1", "rsi_14", "macd"]).iloc[-1].to_numpy()
    >>> bool((row == batch).all()), live.columns
    (True, ['ret_1', 'rsi_14', 'macd_line', 'macd_hist'])
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from spark_research.features.registry import (BAR_FIELDS, FLOW_FIELDS, BarWindow, Feature, FeatureError, _to_frame,
                                              as_bars, missing_flow, needs_trades_error, resolve_features)


def _last_values(out: Any, width: int) -> np.ndarray:
    """The last row of a feature function's output (array, Series, DataFrame or mapping of arrays)."""
    if isinstance(out, pd.DataFrame):
        return out.to_numpy(dtype=np.float64)[-1]
    if isinstance(out, Mapping):
        return np.array([np.asarray(v, dtype=np.float64)[-1] for v in out.values()])
    arr = np.asarray(out, dtype=np.float64)
    return arr[-1:] if width == 1 else arr.reshape(len(arr), -1)[-1]


class LiveFeatures:
    """Incremental feature rows for one symbol: :meth:`warm` with history, then :meth:`update` per bar.

    ``universe`` names the symbols whose closes feed cross-asset features, in a fixed order;
    pass their closes for each bar as ``update(bar, universe={symbol: close})``. With trade-flow
    features, pass each bar's trades as ``update(bar, trades=...)`` and warm with bars that carry
    the flow or with their trades (``warm(bars, trades=...)``).

    Example (trade flow)::

        >>> from spark_research.data import generate_bars
        >>> from spark_research.features import compute_features
        >>> from spark_research.features.trades import synthetic_trades, with_trade_flow
        >>> bars = generate_bars("BTCUSDT", n=100, seed=3).set_index("timestamp")
        >>> trades = synthetic_trades(bars, per_bar=30)
        >>> flow_bars = with_trade_flow(bars, trades)
        >>> live = LiveFeatures(["ofi_20", "rsi_14"])
        >>> live.warm(flow_bars.iloc[:-1])
        >>> last = flow_bars.index[-1]
        >>> row = live.update(bars.iloc[-1], trades=trades[trades["ts"] >= last])
        >>> bool((row == compute_features(flow_bars, ["ofi_20", "rsi_14"]).iloc[-1].to_numpy()).all())
        True
    """

    def __init__(self, features: str | Feature | Iterable[str | Feature] | None = None,
                 universe: Sequence[str] | None = None, capacity: int | None = None):
        self.features = resolve_features(features)
        self.columns = [c for f in self.features for c in f.columns]
        self.lookback = max(f.lookback for f in self.features)
        self.universe = list(universe) if universe else []
        if any(f.universe for f in self.features) and not self.universe:
            names = [f.name for f in self.features if f.universe]
            raise FeatureError(f"features {names} are cross-asset: pass universe=[symbols] to LiveFeatures")
        self.trades = [f.name for f in self.features if f.trades]  # features needing each bar's trade flow
        window = self.lookback + 1
        self._cap = max(capacity or 0, 4 * window, 256)
        self._fields = (*BAR_FIELDS, *FLOW_FIELDS) if self.trades else BAR_FIELDS
        self._cols = {c: np.full(self._cap, np.nan) for c in self._fields}
        self._ts = np.zeros(self._cap, dtype=np.int64)
        self._uni = np.full((self._cap, max(1, len(self.universe))), np.nan)
        self._n = 0  # rows used in the buffers
        self._slices: list[tuple[Feature, int, int]] = []
        offset = 0
        for f in self.features:
            self._slices.append((f, offset, offset + len(f.columns)))
            offset += len(f.columns)
        self._row = np.full(offset, np.nan)

    @property
    def bars_seen(self) -> int:
        """Bars held (at most the buffer capacity; only the last ``lookback + 1`` matter)."""
        return self._n

    @property
    def last_time(self) -> pd.Timestamp | None:
        """Timestamp of the last bar taken."""
        return pd.Timestamp(int(self._ts[self._n - 1]), tz="UTC") if self._n else None

    def warm(self, bars: pd.DataFrame, universe: pd.DataFrame | None = None,
             trades: pd.DataFrame | None = None) -> None:
        """Load history (the last ``lookback`` bars are enough; any more are ignored).

        ``universe``: closes of the universe symbols on the bars' timestamps (columns = symbols).
        ``trades``: the bars' trades, for trade-flow features when the bars lack the flow columns.
        Example: ``live.warm(load_sample("BTCUSDT", n=live.lookback))``.
        """
        frame = as_bars(bars)
        if self.trades:
            if trades is not None:
                from spark_research.features.trades import with_trade_flow

                frame = with_trade_flow(frame, trades)
            elif missing := missing_flow(frame):
                raise needs_trades_error(self.trades, missing, "the bars given to warm()")
        frame = frame.iloc[-(self.lookback + 1):]
        uni = None
        if self.universe:
            if universe is None:
                raise FeatureError(f"universe: warm() needs the closes of {self.universe} for cross-asset features")
            uni = universe.reindex(columns=self.universe)
            idx = uni.index if isinstance(uni.index, pd.DatetimeIndex) else pd.DatetimeIndex(uni.index)
            idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
            uni = uni.set_axis(idx).reindex(frame.index).to_numpy(dtype=np.float64)
        self._n = 0
        ts = frame.index.asi8
        values = {c: frame[c].to_numpy() for c in self._fields}
        for i in range(len(frame)):
            self._push(int(ts[i]), {c: values[c][i] for c in self._fields}, None if uni is None else uni[i])

    def _push(self, ts: int, bar: Mapping[str, float], uni: np.ndarray | None) -> None:
        if self._n and ts <= self._ts[self._n - 1]:
            raise FeatureError(f"bar timestamp {pd.Timestamp(ts, tz='UTC')} is not after the last bar's "
                               f"{self.last_time}; live bars must arrive in time order")
        if self._n == self._cap:  # slide: keep the last lookback bars at the front
            keep = self.lookback
            for arr in (*self._cols.values(), self._ts, self._uni):
                arr[:keep] = arr[self._n - keep:self._n]
            self._n = keep
        i = self._n
        self._ts[i] = ts
        for c in self._fields:
            self._cols[c][i] = bar[c]
        if uni is not None:
            self._uni[i] = uni
        self._n = i + 1

    def update(self, bar: Mapping[str, Any] | pd.Series, universe: Mapping[str, float] | None = None,
               trades: pd.DataFrame | Mapping[str, Any] | None = None) -> np.ndarray:
        """Take one new bar (``timestamp``, OHLCV) and return its feature row (ordered as :attr:`columns`).

        ``trades``: the bar's trades (``ts, price, qty, side``; none is a quiet bar), for
        trade-flow features, unless the bar carries the flow fields itself.
        The returned array is reused by the next call: copy it to keep it.
        Example: ``row = live.update({"timestamp": ts, "open": o, "high": h, "low": l, "close": c, "volume": v})``.
        """
        ts = bar["timestamp"] if "timestamp" in bar else getattr(bar, "name", None)
        if ts is None:
            raise FeatureError("bar: needs a 'timestamp' (or a Series named by its timestamp)")
        ts_ns = ts if isinstance(ts, (int, np.integer)) else pd.Timestamp(ts).value
        try:
            values = {c: float(bar[c]) for c in BAR_FIELDS}
        except KeyError as exc:
            raise FeatureError(f"bar: missing field {exc.args[0]!r}; live bars carry {list(BAR_FIELDS)}") from None
        if self.trades:
            values.update(self._flow(bar, int(ts_ns), trades))
        uni = None
        if self.universe:
            if universe is None:
                raise FeatureError(f"universe: update() needs the closes of {self.universe} for this bar")
            uni = np.array([universe.get(s, np.nan) for s in self.universe], dtype=np.float64)
        self._push(int(ts_ns), values, uni)
        return self._compute()

    def _flow(self, bar: Mapping[str, Any] | pd.Series, ts_ns: int,
              trades: pd.DataFrame | Mapping[str, Any] | None) -> dict[str, float]:
        """The bar's trade flow: aggregated from its trades, or read from its own fields."""
        if trades is not None:
            from spark_research.features.trades import bar_flow

            end = None
            if self._n and ts_ns > self._ts[self._n - 1]:
                # the smallest spacing of the bars held bounds the interval from above: a trade that
                # far past the bar's open cannot be this bar's
                end = ts_ns + int(np.diff(np.append(self._ts[:self._n], ts_ns)).min())
            return dict(zip(FLOW_FIELDS, bar_flow(trades, ts_ns, end).tolist()))
        missing = [c for c in FLOW_FIELDS if c not in bar]
        if missing:
            raise needs_trades_error(self.trades, missing, "the bar given to update() (and no trades=)")
        return {c: float(bar[c]) for c in FLOW_FIELDS}

    def _compute(self) -> np.ndarray:
        end = self._n
        row = self._row
        for f, a, b in self._slices:
            start = max(0, end - f.lookback - 1)
            fields = self._fields if f.trades else BAR_FIELDS
            if f.arrays:
                win: Any = BarWindow({c: self._cols[c][start:end] for c in fields}, self._ts[start:end])
            else:
                idx = pd.DatetimeIndex(self._ts[start:end].astype("datetime64[ns]")).tz_localize("UTC")
                win = pd.DataFrame({c: self._cols[c][start:end] for c in fields}, index=idx.rename("timestamp"))
            if f.universe:
                uni: Any = self._uni[start:end]
                if not f.arrays:
                    uni = pd.DataFrame(uni, index=win.index, columns=self.universe)
                out = f.func(win, uni, **f.params)
            else:
                out = f.func(win, **f.params)
            if not f.arrays:
                out = _to_frame(f, out, win.index)
            row[a:b] = _last_values(out, b - a)
        return row

    def row(self) -> pd.Series:
        """The last computed row as a Series named by its bar time."""
        return pd.Series(self._row.copy(), index=self.columns, name=self.last_time)


__all__ = ["BarWindow", "LiveFeatures"]
