"""Trade flow on the bar grid: each bar's trades aggregated point in time, for trade-flow features.

**Convention.** The platform's bars are stamped at their open (the ingest's
:class:`~spark_research.streams.bars.BarAggregator` stamps a bar with its bucket start and puts a
trade in the bucket ``start <= ts < start + interval``). The flow of the bar stamped *t* is made
of the trades with ``t <= ts < t + interval``: like the bar's OHLCV it is known at the bar's
close, and a feature row stamped *t* uses nothing later. A trade at exactly ``t + interval``
belongs to the next bar. ``interval`` defaults to the smallest spacing of the bars.

**Fields** (:data:`~spark_research.features.registry.FLOW_FIELDS`), per bar:

====================  =========================================================================
``buy_volume``        quantity of trades whose aggressor bought (``side == "buy"``, lifted the offer)
``sell_volume``       quantity of trades whose aggressor sold (hit the bid)
``trade_count``       number of trades
``notional``          sum of price x quantity (quote volume)
``vwap``              notional / (buy_volume + sell_volume)
``mean_trade_size``   (buy_volume + sell_volume) / trade_count
====================  =========================================================================

A bar **without trades** has zero volumes, count and notional, and NaN ``vwap`` and
``mean_trade_size``. Bars that end at or before ``trades_from`` (default: the first trade's
time) are NaN in every field: before the trades' coverage nothing is known, which is not the
same as a quiet bar. Within a bar the trades are added in time order (stable, so in trade-id
order at equal times), by one numba kernel (:func:`aggregate_trades`) that the batch path, the
store and the live path all use: the same trades give the same bits everywhere.

The trade-flow features (``@feature(..., trades=True)``, in :mod:`spark_research.features.library`):
``ofi_20`` (order-flow imbalance), ``trade_count_z_50``, ``vwap_dev_20``, ``trade_size_z_50``,
``kyle_lambda_50``.

**Order book.** The ingest does not store order-book snapshots, so there are no book features
(spread, depth imbalance, microprice); they would need a book journal first.

Example::

    >>> import pandas as pd
    >>> bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 3.0},
    ...                     index=pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC"))
    >>> trades = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 00:00:10", "2024-01-01 00:00:50",
    ...                                              "2024-01-01 00:02:00"], utc=True),
    ...                        "price": [10.0, 11.0, 12.0], "qty": [1.0, 3.0, 2.0], "side": ["buy", "sell", "buy"]})
    >>> flow = trade_flow(bars, trades)
    >>> flow[["buy_volume", "sell_volume", "trade_count", "vwap"]].to_numpy().tolist()
    [[1.0, 3.0, 2.0, 10.75], [0.0, 0.0, 0.0, nan], [2.0, 0.0, 1.0, 12.0]]
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from numba import njit

from spark_research.features.registry import BAR_FIELDS, FLOW_FIELDS, FeatureError, as_bars


@njit(cache=True, nogil=True)
def _bin_trades(price: np.ndarray, qty: np.ndarray, is_buy: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                covered: np.ndarray, out: np.ndarray) -> None:
    """Row i of ``out`` (bins x FLOW_FIELDS) from trades ``lo[i] .. hi[i] - 1``, added in order."""
    for i in range(len(lo)):
        if not covered[i]:
            out[i, :] = np.nan
            continue
        buy = 0.0
        sell = 0.0
        notional = 0.0
        for j in range(lo[i], hi[i]):
            q = qty[j]
            if is_buy[j]:
                buy += q
            else:
                sell += q
            notional += price[j] * q
        count = hi[i] - lo[i]
        vol = buy + sell
        out[i, 0] = buy
        out[i, 1] = sell
        out[i, 2] = count
        out[i, 3] = notional
        out[i, 4] = notional / vol if count > 0 else np.nan
        out[i, 5] = vol / count if count > 0 else np.nan


def aggregate_trades(ts_ns: np.ndarray, price: np.ndarray, qty: np.ndarray, is_buy: np.ndarray,
                     starts_ns: np.ndarray, interval_ns: int, trades_from_ns: int | None = None) -> np.ndarray:
    """The flow of bins ``[starts_ns[i], starts_ns[i] + interval_ns)`` as a (bins x 6) float64 array
    (columns in :data:`FLOW_FIELDS` order) from trades sorted by time.

    Bins ending at or before ``trades_from_ns`` are NaN (None: every bin is covered).

    Example::

        >>> ts = np.array([0, 5, 10]); one = np.ones(3)
        >>> aggregate_trades(ts, one, one, np.array([True, False, True]), np.array([0, 10]), 10)[:, :3].tolist()
        [[1.0, 1.0, 2.0], [1.0, 0.0, 1.0]]
    """
    starts = np.ascontiguousarray(starts_ns, dtype=np.int64)
    lo = np.searchsorted(ts_ns, starts, side="left")
    hi = np.searchsorted(ts_ns, starts + np.int64(interval_ns), side="left")
    covered = (np.ones(len(starts), dtype=np.bool_) if trades_from_ns is None
               else starts + np.int64(interval_ns) > np.int64(trades_from_ns))
    out = np.empty((len(starts), len(FLOW_FIELDS)))
    _bin_trades(np.ascontiguousarray(price, dtype=np.float64), np.ascontiguousarray(qty, dtype=np.float64),
                np.ascontiguousarray(is_buy, dtype=np.bool_), lo, hi, covered, out)
    return out


def trade_arrays(trades: pd.DataFrame | Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ts_ns, price, qty, is_buy)`` of one symbol's trades (``ts, price, qty, side``), sorted by time
    (stable: trade-id order at equal times). Rejects a side other than buy/sell, NaN or non-positive
    price/qty, missing times and several symbols, naming the field and value.

    Example::

        >>> ts, price, qty, buy = trade_arrays({"ts": [2, 1], "price": [1.0, 2.0], "qty": [1.0, 1.0],
        ...                                     "side": ["sell", "buy"]})
        >>> ts.tolist(), buy.tolist()
        ([1, 2], [True, False])
    """
    cols = trades.columns if isinstance(trades, pd.DataFrame) else trades.keys()
    missing = [c for c in ("ts", "price", "qty", "side") if c not in cols]
    if missing:
        raise FeatureError(f"trades: missing column(s) {missing}; trades carry ts, price, qty, side (aggressor)")
    if "symbol" in cols:
        symbols = pd.unique(pd.Series(trades["symbol"]))
        if len(symbols) > 1:
            raise FeatureError(f"trades: one symbol at a time, got {sorted(map(str, symbols))}")
    ts = _ns(trades["ts"])
    price = np.asarray(trades["price"], dtype=np.float64)
    qty = np.asarray(trades["qty"], dtype=np.float64)
    side = pd.Series(trades["side"], copy=False)  # vectorised compares on Arrow strings
    is_buy = (side == "buy").to_numpy(dtype=np.bool_)
    for name, values, bad in (("side", side.to_numpy(), ~(is_buy | (side == "sell").to_numpy(dtype=np.bool_))),
                              ("price", price, ~(price > 0) | ~np.isfinite(price)),
                              ("qty", qty, ~(qty > 0) | ~np.isfinite(qty))):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            want = "'buy' or 'sell'" if name == "side" else "finite and > 0"
            value = values[i].item() if isinstance(values[i], np.generic) else values[i]
            raise FeatureError(f"trades: row {i}: field {name!r} = {value!r}; must be {want}")
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        order = np.argsort(ts, kind="stable")
        ts, price, qty, is_buy = ts[order], price[order], qty[order], is_buy[order]
    return ts, price, qty, is_buy


def _ns(values: Any) -> np.ndarray:
    """Times as int64 ns since the epoch (UTC; naive times are UTC; integers are taken as ns)."""
    if getattr(values, "dtype", None) is None or getattr(values.dtype, "kind", "") != "M":
        arr = np.asarray(values)
        if arr.dtype.kind in "iu":
            return arr.astype(np.int64)
    idx = pd.DatetimeIndex(values)  # straight from a datetime Series: no Timestamp objects
    if idx.hasnans:
        i = int(np.flatnonzero(idx.isna())[0])
        raise FeatureError(f"trades: row {i}: field 'ts' is missing")
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)


def bar_interval(index: pd.DatetimeIndex, interval: object = None) -> int:
    """The bar interval in ns: ``interval`` (anything ``pd.Timedelta`` takes), else the smallest spacing
    of the bars. An interval longer than a spacing would put a trade in two bars and is refused.

    Example::

        >>> bar_interval(pd.date_range("2024", periods=4, freq="5min").delete(2)) // 10**9
        300
    """
    index = pd.DatetimeIndex(index).as_unit("ns")
    gaps = np.diff(index.asi8)
    smallest = int(gaps.min()) if len(gaps) else None
    if interval is None:
        if smallest is None:
            raise FeatureError(f"interval: cannot infer the bar interval from {len(index)} bar(s); pass interval=")
        return smallest
    try:
        ns = int(pd.Timedelta(interval).value)
    except (ValueError, TypeError) as exc:
        raise FeatureError(f"interval: {interval!r} is not a duration: {exc}") from None
    if ns <= 0:
        raise FeatureError(f"interval must be a positive duration, got {interval!r}")
    if smallest is not None and ns > smallest:
        i = int(np.argmin(gaps))
        raise FeatureError(f"interval {pd.Timedelta(ns)} is longer than the {pd.Timedelta(smallest)} between bars "
                           f"{index[i]} and {index[i + 1]}: a trade would fall in two bars")
    return ns


def trade_flow(bars: pd.DataFrame, trades: pd.DataFrame, *, interval: object = None,
               trades_from: object = None, label: str = "open") -> pd.DataFrame:
    """The trade flow (:data:`FLOW_FIELDS`) of each bar of ``bars``: the trades with
    ``t <= ts < t + interval`` for the bar stamped *t* (see the module docstring).

    ``trades``: one symbol's trades (``ts, price, qty, side``; the trade schema of
    :mod:`spark_research.data.schema`). ``interval``: the bar length (default: the smallest
    spacing of the bars). ``trades_from``: from when ``trades`` holds every trade (default: its
    first trade); bars ending at or before it are NaN. Pass the bars' first time to declare the
    trades complete over all the bars. ``label="close"`` is for bars stamped at their end (the
    store's resampled bars): the bar stamped *t* then takes the trades ``t - interval <= ts < t``.

    Example::

        >>> from spark_research.data import generate_bars, generate_trades
        >>> bars = generate_bars("BTCUSDT", n=60, seed=1)
        >>> trades = generate_trades("BTCUSDT", n=5_000, seed=1, start="2024-01-01", rate_per_s=2.0)
        >>> flow = trade_flow(bars, trades)
        >>> int(flow["trade_count"].sum()) == int(((trades["ts"] >= bars["timestamp"].iloc[0])
        ...     & (trades["ts"] < bars["timestamp"].iloc[-1] + pd.Timedelta("1min"))).sum())
        True
    """
    if label not in ("open", "close"):
        raise FeatureError(f"label must be 'open' (bars stamped at their open) or 'close', got {label!r}")
    frame = as_bars(bars)
    step = bar_interval(frame.index, interval)
    ts, price, qty, is_buy = trade_arrays(trades)
    starts = frame.index.asi8 - (step if label == "close" else 0)
    values = aggregate_trades(ts, price, qty, is_buy, starts, step, _start_ns(trades_from, ts))
    return pd.DataFrame(values, index=frame.index, columns=list(FLOW_FIELDS))


def _start_ns(trades_from: object, ts: np.ndarray) -> int:
    if trades_from is not None:  # a time, or int ns since the epoch
        t = pd.Timestamp(trades_from)
        return int((t.tz_localize("UTC") if t.tzinfo is None else t).value)
    # no trades and no coverage given: nothing is known
    return int(ts[0]) if len(ts) else np.iinfo(np.int64).max


def with_trade_flow(bars: pd.DataFrame, trades: pd.DataFrame, *, interval: object = None,
                    trades_from: object = None, label: str = "open") -> pd.DataFrame:
    """``bars`` (normalised by :func:`~spark_research.features.registry.as_bars`) with the trade-flow
    columns of :func:`trade_flow` added: what trade-flow features read, batch, store and live.

    Example::

        >>> from spark_research.data import generate_bars, generate_trades
        >>> from spark_research.features import compute_features
        >>> bars = generate_bars("BTCUSDT", n=100, seed=1)
        >>> trades = generate_trades("BTCUSDT", n=20_000, seed=1, start="2024-01-01", rate_per_s=2.0)
        >>> x = compute_features(with_trade_flow(bars, trades), ["ofi_20", "vwap_dev_20"])
        >>> bool(x.iloc[19:].notna().all().all()), bool(x["ofi_20"].abs().max() <= 1)
        (True, True)
    """
    frame = as_bars(bars)
    flow = trade_flow(frame, trades, interval=interval, trades_from=trades_from, label=label)
    out = frame[list(BAR_FIELDS)].copy()
    for c in FLOW_FIELDS:
        out[c] = flow[c].to_numpy()
    return out


def bar_flow(trades: pd.DataFrame | Mapping[str, Any], start_ns: int, end_ns: int | None = None) -> np.ndarray:
    """The flow of one bar starting at ``start_ns`` from that bar's trades (the live path), through the
    same kernel as :func:`trade_flow`; a trade before the bar (or at/after ``end_ns``) is refused.

    Example::

        >>> bar_flow({"ts": [5, 7], "price": [10.0, 12.0], "qty": [1.0, 1.0], "side": ["buy", "buy"]}, 0).tolist()
        [2.0, 0.0, 2.0, 22.0, 11.0, 1.0]
    """
    ts, price, qty, is_buy = trade_arrays(trades)
    if len(ts) and ts[0] < start_ns:
        raise FeatureError(f"trades: a trade at {pd.Timestamp(int(ts[0]), tz='UTC')} is before its bar's "
                           f"{pd.Timestamp(int(start_ns), tz='UTC')}; pass the trades of that bar only")
    if len(ts) and end_ns is not None and ts[-1] >= end_ns:
        raise FeatureError(f"trades: a trade at {pd.Timestamp(int(ts[-1]), tz='UTC')} is after its bar's end "
                           f"{pd.Timestamp(int(end_ns), tz='UTC')}; pass the trades of that bar only")
    span = int(ts[-1]) - int(start_ns) + 1 if len(ts) else 1  # one bin holding every trade given
    return aggregate_trades(ts, price, qty, is_buy, np.array([start_ns], dtype=np.int64), span)[0]


def synthetic_trades(bars: pd.DataFrame, per_bar: int = 60, seed: int = 7,
                     quiet: tuple[int, int] | None = None) -> pd.DataFrame:
    """Seeded synthetic trades over ``bars`` (about ``per_bar`` a bar, Poisson arrivals, prices a random
    walk from the first close), none in bars ``quiet[0] .. quiet[1] - 1``: what the registration
    check and the tests feed trade-flow features.

    Example::

        >>> from spark_research.data import generate_bars
        >>> bars = generate_bars("BTCUSDT", n=30, seed=1)
        >>> flow = trade_flow(bars, synthetic_trades(bars, per_bar=20, quiet=(10, 12)))
        >>> flow["trade_count"].iloc[10:12].tolist(), bool((flow["trade_count"].iloc[:10] > 0).all())
        ([0.0, 0.0], True)
    """
    from spark_research.data.synthetic import generate_trades

    frame = as_bars(bars)
    step = bar_interval(frame.index)
    span_s = (frame.index[-1].value - frame.index[0].value + step) / 1e9
    rate = per_bar * 1e9 / step
    n = int(span_s * rate * 1.1) + 10  # overshoot the last bar, then cut at its end
    trades = generate_trades("SYNTH", n=n, seed=seed, start=frame.index[0].tz_localize(None) - pd.Timedelta(1, "us"),
                             rate_per_s=rate, price=float(frame["close"].iloc[0]))
    ts = _ns(trades["ts"])
    keep = ts < frame.index[-1].value + step
    if quiet is not None:
        lo, hi = frame.index[quiet[0]].value, frame.index[quiet[1] - 1].value + step
        keep &= (ts < lo) | (ts >= hi)
    return trades[keep].drop(columns="symbol").reset_index(drop=True)


__all__ = ["aggregate_trades", "bar_flow", "bar_interval", "synthetic_trades", "trade_arrays", "trade_flow",
           "with_trade_flow"]
