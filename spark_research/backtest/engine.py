"""``run_backtest``: a strategy's signals through vectorbt's ``Portfolio.from_signals``.

Execution timing is explicit. With ``fill="next_open"`` (the default) a signal computed
from bar *t*'s close fills at bar *t+1*'s open: no same-bar lookahead. ``fill="close"``
fills at the signal bar's close, which is optimistic; the result records which was used.

Example::

    >>> from spark_research.backtest import run_backtest
    >>> from spark_research.data import generate_bars
    >>> res = run_backtest("sma_cross", generate_bars("BTCUSDT", n=5_000, seed=1), {"fast": 10, "slow": 40})
    >>> res.fill, res.stats["trades"] > 0
    ('next_open', True)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Mapping

import numpy as np
import pandas as pd
import vectorbt as vbt
from vectorbt.portfolio.enums import OrderSide, TradeDirection, TradeStatus

from spark_research import metrics
from spark_research.backtest.strategies import get_strategy
from spark_research.backtest.strategy import Signals, Strategy

Fill = Literal["next_open", "close"]
Direction = Literal["longonly", "shortonly", "both"]
FILLS = ("next_open", "close")
DIRECTIONS = ("longonly", "shortonly", "both")


def _cache_from_signals_kernel() -> None:
    """Keep vectorbt's ``simulate_from_signals_nb`` in numba's disk cache, like its other kernels.

    vectorbt 1.2 declares it ``@njit`` without ``cache=True``, like its sibling
    ``simulate_from_signal_func_nb``, which takes callbacks and so cannot be cached; this one
    takes only arrays and scalars. Uncached, every process compiled it again for each of the
    four signatures ``run_backtest`` produces (one symbol or several x direction or long/short
    signals): 2.5-5 s apiece, most of ``spark warm`` and of a test run's first backtests.
    """
    from numba.core.caching import NullCache
    from vectorbt.portfolio import nb

    if isinstance(getattr(nb.simulate_from_signals_nb, "_cache", None), NullCache):
        nb.simulate_from_signals_nb.enable_caching()


_cache_from_signals_kernel()

#: Stats every result reports, in display order.
STAT_FIELDS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "win_rate", "trades", "final_equity")


def to_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars indexed by timestamp (accepts a ``timestamp`` column or a DatetimeIndex).

    The index is UTC without a zone attribute: vectorbt (indicators and portfolio alike)
    converts a tz-aware index to Python objects on most calls, which under pandas 3 costs
    seconds per call at 1M bars. Results are given their UTC zone back.
    """
    if "timestamp" in bars.columns:
        bars = bars.set_index("timestamp")
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError("bars need a 'timestamp' column or a DatetimeIndex")
    missing = [c for c in ("open", "high", "low", "close") if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {missing}")
    if bars.index.tz is not None:
        bars = bars.set_axis(bars.index.tz_convert("UTC").tz_localize(None))
    return bars


def check_options(*, fees: float, slippage: float, init_cash: float, direction: str, fill: str) -> None:
    """Raise ``ValueError`` naming the first engine option (of ``run_backtest`` and the sweep paths) that is invalid."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    for name, value in (("fees", fees), ("slippage", slippage)):
        if not (np.isfinite(value) and 0 <= value < 1):
            raise ValueError(f"{name} must be a fraction in [0, 1), got {value!r}")
    if not (np.isfinite(init_cash) and init_cash > 0):
        raise ValueError(f"init_cash must be > 0, got {init_cash!r}")


def _is_utc_aware(bars: pd.DataFrame | Mapping[str, pd.DataFrame]) -> bool:
    frame = next(iter(bars.values())) if isinstance(bars, Mapping) else bars
    ts = frame["timestamp"] if "timestamp" in frame.columns else frame.index
    return getattr(getattr(ts, "dt", ts), "tz", None) is not None


def split_symbols(bars: pd.DataFrame | Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``{symbol: bars}`` from a dict, a single-symbol frame or a long multi-symbol frame."""
    if isinstance(bars, Mapping):
        return {str(k): to_frame(v) for k, v in bars.items()}
    if "symbol" in bars.columns and bars["symbol"].nunique() > 1:
        return {str(s): to_frame(g.drop(columns="symbol")) for s, g in bars.groupby("symbol", sort=True)}
    symbol = str(bars["symbol"].iloc[0]) if "symbol" in bars.columns and len(bars) else "asset"
    return {symbol: to_frame(bars)}


def _infer_freq(index: pd.DatetimeIndex) -> pd.Timedelta | None:
    if len(index) < 2:
        return None
    return pd.Timedelta(int(np.median(np.diff(index.asi8[: min(len(index), 1000)]))), "ns")


def _utc_naive(s: pd.Series | None) -> pd.Series | None:
    """``s`` on a timezone-naive UTC index.

    vectorbt converts a timezone-aware index to Python objects on most calls, which under
    pandas 3 costs seconds per call on 100k+ bars (a 240k-bar run: 4.5 s vs 0.01 s). Bars are
    UTC by schema, so the simulation runs naive and results get their UTC zone back.
    """
    if s is None or not isinstance(s.index, pd.DatetimeIndex) or s.index.tz is None:
        return s
    return s.set_axis(s.index.tz_convert("UTC").tz_localize(None))


def _as_utc(values: pd.Series | pd.Index, utc: bool):
    if not utc:
        return values
    if isinstance(values, pd.Index):
        return values.tz_localize("UTC") if values.tz is None else values
    return values.dt.tz_localize("UTC") if values.dt.tz is None else values


def _enum_names(enum: Any, codes: np.ndarray) -> pd.Series:
    """Lower-case names of a vectorbt enum's ``codes`` (``TradeDirection``: 0 -> "long", 1 -> "short")."""
    names = np.empty(max(enum) + 1, dtype=object)
    for name, code in zip(enum._fields, enum):
        names[code] = name.lower()
    return pd.Series(names[codes], dtype=object).astype(str)


def _shift(s: pd.Series | None) -> pd.Series | None:
    return None if s is None else s.shift(1, fill_value=False).astype(bool)


def strategy_signals(strategy: type[Strategy], frame: pd.DataFrame, params: dict[str, Any],
                     direction: Direction, fill: Fill) -> tuple[Signals, pd.Series]:
    """Signals of ``strategy`` placed on the bar where they fill, and the fill price series."""
    sig = strategy().signals(frame, **params)
    if direction == "both" and sig.short_entries is None:
        sig = Signals(sig.entries, sig.exits, sig.exits, sig.entries)
    if fill == "next_open":
        sig = Signals(_shift(sig.entries), _shift(sig.exits), _shift(sig.short_entries), _shift(sig.short_exits))
        return sig, frame["open"]
    return sig, frame["close"]


@dataclass
class BacktestResult:
    """What one backtest produced. Heavy views (stats, trades) are computed on first access."""

    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    fill: str
    direction: str
    fees: float
    slippage: float
    init_cash: float
    portfolio: vbt.Portfolio = field(repr=False)
    runtime_ms: float = 0.0
    #: the bars were UTC-aware; ``portfolio`` runs on the same times without a zone
    utc: bool = True
    #: with ``run_backtest(..., risk=...)``: what the risk limits did (a ``spark_research.risk.backtest.BacktestRisk``)
    risk: Any = None

    @cached_property
    def stats(self) -> dict[str, float]:
        """Total return, CAGR, Sharpe, Sortino, max drawdown, win rate, trades, final equity."""
        pf, trades = self.portfolio, self.portfolio.trades
        win_rate = trades.win_rate()
        out = {
            "total_return": pf.total_return(),
            "cagr": pf.annualized_return(),
            "sharpe": pf.sharpe_ratio(),
            "sortino": pf.sortino_ratio(),
            "max_drawdown": pf.max_drawdown(),
            "win_rate": win_rate,
            "trades": trades.count(),
            "final_equity": pf.final_value(),
        }
        return {k: (int(v) if k == "trades" else float(v)) for k, v in out.items()}

    @cached_property
    def equity(self) -> pd.Series:
        """Portfolio value per bar (all symbols together for a multi-symbol run)."""
        eq = self.portfolio.value().rename("equity")
        return eq.set_axis(_as_utc(eq.index, self.utc))

    @cached_property
    def drawdown(self) -> pd.Series:
        """Drawdown from the running peak, as a negative fraction."""
        eq = self.equity
        return (eq / eq.cummax() - 1.0).rename("drawdown")

    @cached_property
    def trades(self) -> pd.DataFrame:
        """One row per round trip: symbol, times, side, size, prices, fees, PnL, return, status."""
        rec = self.portfolio.trades.values
        df = pd.DataFrame({
            "symbol": self._record_symbols(rec), "entry_time": self._record_times(rec["entry_idx"]),
            "exit_time": self._record_times(rec["exit_idx"]), "side": _enum_names(TradeDirection, rec["direction"]),
            "size": rec["size"], "entry_price": rec["entry_price"], "exit_price": rec["exit_price"],
            "entry_fees": rec["entry_fees"], "exit_fees": rec["exit_fees"], "pnl": rec["pnl"],
            "return": rec["return"], "status": _enum_names(TradeStatus, rec["status"]),
        })
        if len(self.symbols) == 1:
            df["symbol"] = self.symbols[0]
        return df

    @cached_property
    def orders(self) -> pd.DataFrame:
        """Every simulated fill: symbol, timestamp, side, size, price, fees."""
        rec = self.portfolio.orders.values
        df = pd.DataFrame({
            "symbol": self._record_symbols(rec), "timestamp": self._record_times(rec["idx"]),
            "side": _enum_names(OrderSide, rec["side"]), "size": rec["size"], "price": rec["price"],
            "fees": rec["fees"],
        })
        if len(self.symbols) == 1:
            df["symbol"] = self.symbols[0]
        return df

    # Built from the record arrays: vectorbt's ``records_readable`` gives the same frames but maps
    # bar positions to times through a dict of the whole index (~1 s for 50k trades on 240k bars).
    def _record_symbols(self, rec: np.ndarray) -> pd.Series:
        return pd.Series(np.asarray(self.portfolio.wrapper.columns, dtype=object)[rec["col"]], dtype=object)

    def _record_times(self, bar: np.ndarray) -> pd.Series:
        return _as_utc(pd.Series(self.portfolio.wrapper.index[bar]), self.utc)

    def stats_frame(self) -> pd.DataFrame:
        """Stats as a one-column table for display."""
        return pd.DataFrame({"value": self.stats}).rename_axis("stat")


def run_backtest(
    strategy: str | type[Strategy] | Strategy,
    bars: pd.DataFrame | Mapping[str, pd.DataFrame],
    params: Mapping[str, Any] | None = None,
    *,
    fees: float = 0.001,
    slippage: float = 0.0005,
    size: float | None = None,
    init_cash: float = 10_000.0,
    direction: Direction = "longonly",
    fill: Fill = "next_open",
    risk: Any = None,
) -> BacktestResult:
    """Backtest ``strategy`` on ``bars`` and return a :class:`BacktestResult`.

    ``bars``: one symbol's bars, a long frame of several symbols, or ``{symbol: bars}``;
    several symbols share one cash pool. ``fees`` and ``slippage`` are fractions of the
    traded value (0.001 = 10 bps). ``size``: the value per entry in quote currency; the
    default is all available cash for one symbol and ``init_cash / n_symbols`` for several.
    ``risk``: a ``RiskConfig``, a ``risk.yml`` path or a ``RiskEngine``: every signal goes through
    the pre-trade risk engine first (long only); ``result.risk`` shows the denials and states
    (:mod:`spark_research.risk.backtest`). None (the default) leaves the run untouched.

    Example::

        >>> from spark_research.data import generate_bars
        >>> res = run_backtest("rsi_reversion", generate_bars("ETHUSDT", n=3_000, seed=3))
        >>> sorted(res.stats) == sorted(STAT_FIELDS)
        True
    """
    t0 = time.perf_counter()
    strat = get_strategy(strategy)
    check_options(fees=fees, slippage=slippage, init_cash=init_cash, direction=direction, fill=fill)
    # plain floats: an int here would make numba compile a second from_signals kernel
    fees, slippage, init_cash = float(fees), float(slippage), float(init_cash)
    resolved = strat.resolve(dict(params or {}))
    frames = split_symbols(bars)
    symbols = sorted(frames)

    closes, prices, sigs = {}, {}, {"entries": {}, "exits": {}, "short_entries": {}, "short_exits": {}}
    for sym in symbols:
        frame = frames[sym]
        sig, price = strategy_signals(strat, frame, resolved, direction, fill)
        closes[sym], prices[sym] = _utc_naive(frame["close"]), _utc_naive(price)
        for key in sigs:
            value = getattr(sig, key)
            if value is not None:
                sigs[key][sym] = _utc_naive(value)
    multi = len(symbols) > 1
    if multi:
        close, price = pd.DataFrame(closes), pd.DataFrame(prices)
        kw = {k: pd.DataFrame(v).reindex(close.index).fillna(False).astype(bool) for k, v in sigs.items() if v}
        close, price = close.ffill(), price.fillna(close)
        order_size, size_type = (size or init_cash / len(symbols)), "value"
    else:
        close, price = closes[symbols[0]], prices[symbols[0]]
        kw = {k: v[symbols[0]] for k, v in sigs.items() if v}
        order_size, size_type = ((size, "value") if size else (np.inf, "amount"))
    if "short_entries" not in kw:  # with explicit short signals vectorbt infers the direction
        kw["direction"] = direction
    risk_report = None
    if risk is not None:  # only the signals the risk engine approves trade
        from spark_research.risk.backtest import apply_risk

        kw, order_size, size_type, risk_report = apply_risk(
            risk, strat.name, close, price, kw, symbols=symbols, fees=fees, slippage=slippage, init_cash=init_cash,
            order_size=order_size, size_type=size_type)
    pf = vbt.Portfolio.from_signals(
        close, price=price, fees=fees, slippage=slippage, size=order_size, size_type=size_type,
        init_cash=init_cash, freq=_infer_freq(close.index),
        group_by=True if multi else None, cash_sharing=multi, **kw,
    )
    runtime_ms = (time.perf_counter() - t0) * 1e3
    metrics.BACKTEST_RUNTIME_MS.labels(strategy=strat.name).observe(runtime_ms)
    metrics.SIM_FILLS.labels(strategy=strat.name).inc(len(pf.orders.values))
    utc = _is_utc_aware(bars)
    return BacktestResult(strategy=strat.name, params=resolved, symbols=symbols, fill=fill, direction=direction,
                          fees=fees, slippage=slippage, init_cash=init_cash, portfolio=pf, runtime_ms=runtime_ms,
                          utc=utc, risk=risk_report)
