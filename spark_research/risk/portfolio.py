"""The live portfolio: positions, average prices, PnL, exposure, equity, drawdown, VaR and ES.

Fills move positions (average price on additions, realised PnL on reductions, a flip closes
then reopens at the fill price); prices mark them (live trades, or bar closes offline). Each
:meth:`Portfolio.end_bar` appends the equity to the curve and recomputes, over a rolling
window of per-bar portfolio returns:

* historical VaR and expected shortfall at 95 % and 99 % (empirical quantile; ES = mean of
  the returns at or below it);
* parametric Cornish-Fisher VaR (the normal quantile corrected for the sample's skew and excess
  kurtosis) and its ES (the mean of the Cornish-Fisher quantile over the tail probabilities).

VaR and ES are positive fractions of equity (0.02 = a 2 % one-bar loss). Pure Python and
NumPy: no pandas on the update path.

Example::

    >>> p = Portfolio(cash=10_000.0, var_window=20)
    >>> p.apply_fill("BTCUSDT", "buy", 0.1, 30_000.0, fee=3.0)   # realised PnL is net of fees
    -3.0
    >>> p.mark("BTCUSDT", 31_000.0); round(p.equity, 2), round(p.unrealised, 2)
    (10097.0, 100.0)
    >>> p.apply_fill("BTCUSDT", "sell", 0.1, 31_000.0, fee=3.1)
    96.9
    >>> p.position("BTCUSDT").qty, round(p.realised, 2)
    (0.0, 93.9)
"""
from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from spark_research import metrics

LEVELS = (0.95, 0.99)
_EPS = 1e-12
_TAIL_POINTS = 64


@dataclass(slots=True)
class Position:
    """One instrument's position: signed ``qty`` (base units), ``avg_price`` of the open part, realised PnL."""

    symbol: str
    qty: float = 0.0
    avg_price: float = 0.0
    realised: float = 0.0  #: closed PnL net of fees, quote currency


@dataclass(frozen=True, slots=True)
class RiskFigures:
    """VaR and ES at one confidence level by both methods (positive fractions of equity)."""

    level: float
    var_historical: float
    es_historical: float
    var_cornish_fisher: float
    es_cornish_fisher: float


def _cf(z: np.ndarray | float, s: float, k: float):
    """Cornish-Fisher quantile of a standardised return with skew ``s`` and excess kurtosis ``k``."""
    return z + (z * z - 1) * s / 6 + (z ** 3 - 3 * z) * k / 24 - (2 * z ** 3 - 5 * z) * s * s / 36


_Z = {lv: NormalDist().inv_cdf(1 - lv) for lv in LEVELS}
# the Cornish-Fisher ES is the mean of the CF quantile over the tail; the CF quantile is a cubic in z,
# so its mean only needs the means of z, z^2 and z^3 over the tail probabilities (precomputed)
_ZTAIL = {}
for _lv in LEVELS:
    _zs = [NormalDist().inv_cdf((i + 0.5) / _TAIL_POINTS * (1 - _lv)) for i in range(_TAIL_POINTS)]
    _ZTAIL[_lv] = tuple(math.fsum(z ** k for z in _zs) / _TAIL_POINTS for k in (1, 2, 3))


def _figures(r: np.ndarray, levels: tuple[float, ...]) -> dict[float, RiskFigures]:
    n = r.size
    if n < 20:
        nan = math.nan
        return {lv: RiskFigures(lv, nan, nan, nan, nan) for lv in levels}
    s = np.sort(r)
    cs = np.cumsum(s)
    mu = float(cs[-1]) / n
    d = s - mu
    d2 = d * d
    m2 = float(d2.sum()) / n
    sd = math.sqrt(m2)
    if sd > _EPS:
        sk = float((d2 * d).sum()) / n / sd ** 3
        ku = float((d2 * d2).sum()) / n / (m2 * m2) - 3.0
    else:
        sk = ku = 0.0
    out = {}
    for lv in levels:
        pos = (n - 1) * (1 - lv)  # numpy's default (linear) quantile
        lo = int(pos)
        q = float(s[lo]) if lo + 1 >= n else float(s[lo] + (s[lo + 1] - s[lo]) * (pos - lo))
        k = int(np.searchsorted(s, q, "right"))
        z = _Z[lv]
        var_cf = -(mu + sd * _cf(z, sk, ku))
        e1, e2, e3 = _ZTAIL[lv]
        mean_cf = e1 + (e2 - 1) * sk / 6 + (e3 - 3 * e1) * ku / 24 - (2 * e3 - 5 * e1) * sk * sk / 36
        es_cf = -(mu + sd * mean_cf)
        out[lv] = RiskFigures(lv, -q, -float(cs[k - 1]) / k, var_cf, max(es_cf, var_cf))
    return out


def var_es(returns: np.ndarray, level: float = 0.99) -> RiskFigures:
    """Historical and Cornish-Fisher VaR/ES of ``returns`` at ``level`` (0.95 or 0.99); NaN under 20 returns.

    Example::

        >>> r = np.random.default_rng(0).normal(0, 0.01, 1000)
        >>> f = var_es(r, 0.99)
        >>> 0.02 < f.var_historical < 0.03, 0.02 < f.var_cornish_fisher < 0.03, f.es_historical > f.var_historical
        (True, True, True)
    """
    if level not in _Z:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return _figures(np.asarray(returns, dtype=float), (level,))[level]


@functools.cache
def _risk_gauges(level: float) -> tuple:
    label = f"{level:.2f}"
    return (metrics.PORTFOLIO_VAR.labels(level=label, method="historical"),
            metrics.PORTFOLIO_VAR.labels(level=label, method="cornish_fisher"),
            metrics.PORTFOLIO_ES.labels(level=label, method="historical"),
            metrics.PORTFOLIO_ES.labels(level=label, method="cornish_fisher"))


class Portfolio:
    """Positions, cash, marks, equity curve and risk figures of one book.

    ``publish=True`` sets the ``portfolio_*`` gauges at every :meth:`end_bar`.
    """

    def __init__(self, cash: float = 100_000.0, *, var_window: int = 250, curve_len: int = 100_000,
                 publish: bool = False):
        if not (isinstance(cash, (int, float)) and math.isfinite(cash)):
            raise ValueError(f"cash must be a finite number, got {cash!r}")
        if not (isinstance(var_window, int) and var_window >= 20):
            raise ValueError(f"var_window must be an integer >= 20, got {var_window!r}")
        self.start_cash = self.cash = float(cash)
        self.positions: dict[str, Position] = {}
        self.marks: dict[str, float] = {}
        self.exposures: dict[str, float] = {}  #: signed qty x mark per symbol
        self.realised = 0.0
        self.fees = 0.0
        self.var_window = var_window
        self._returns = np.zeros(var_window)
        self._n_returns = 0
        self.curve: deque[tuple[int, float]] = deque(maxlen=curve_len)  #: (ts, equity) per bar
        self.peak = self.cash
        self.last_equity: float | None = None
        self.figures: dict[float, RiskFigures] = {}
        self.publish = publish
        self._m_exposure: dict[str, object] = {}

    # ------------------------------------------------------------------ fills and prices
    def position(self, symbol: str) -> Position:
        """The position in ``symbol`` (a flat one if never traded)."""
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol)
        return pos

    def apply_fill(self, symbol: str, side: str, qty: float, price: float, fee: float = 0.0) -> float:
        """Book one fill; returns the PnL it realised (net of its fee)."""
        if side == "buy":
            signed = qty
        elif side == "sell":
            signed = -qty
        else:
            raise ValueError(f"fill side must be 'buy' or 'sell', got {side!r}")
        if not (qty > 0 and math.isfinite(qty)):
            raise ValueError(f"fill qty must be a finite number > 0, got {qty!r}")
        if not (price > 0 and math.isfinite(price)):
            raise ValueError(f"fill price must be a finite number > 0, got {price!r}")
        pos = self.position(symbol)
        old = pos.qty
        realised = -fee
        if old == 0.0 or (old > 0) == (signed > 0):  # open or add: new average price
            new = old + signed
            pos.avg_price = (old * pos.avg_price + signed * price) / new
        else:
            closed = min(abs(old), qty)
            realised += closed * (price - pos.avg_price) * (1.0 if old > 0 else -1.0)
            new = old + signed
            if abs(new) <= _EPS * max(1.0, abs(old)):
                new, pos.avg_price = 0.0, 0.0
            elif (new > 0) != (old > 0):  # flipped: the rest opens at the fill price
                pos.avg_price = price
        pos.qty = new
        pos.realised += realised
        self.realised += realised
        self.fees += fee
        self.cash -= signed * price + fee
        mark = self.marks.get(symbol)
        if mark is None:
            self.marks[symbol] = mark = price
        self.exposures[symbol] = new * mark
        return realised

    def mark(self, symbol: str, price: float) -> None:
        """Mark ``symbol`` at ``price`` (last trade, mark price or bar close)."""
        self.marks[symbol] = price
        pos = self.positions.get(symbol)
        if pos is not None:
            self.exposures[symbol] = pos.qty * price

    def mark_many(self, prices: dict[str, float]) -> None:
        """Mark several symbols at once (a bar's closes)."""
        marks, exps, positions = self.marks, self.exposures, self.positions
        for symbol, price in prices.items():
            marks[symbol] = price
            pos = positions.get(symbol)
            if pos is not None:
                exps[symbol] = pos.qty * price

    # ------------------------------------------------------------------ views
    @property
    def equity(self) -> float:
        """Cash plus positions at their marks."""
        return self.cash + math.fsum(self.exposures.values())

    @property
    def unrealised(self) -> float:
        """PnL of the open positions at their marks."""
        return math.fsum(p.qty * (self.marks.get(s, p.avg_price) - p.avg_price) for s, p in self.positions.items())

    @property
    def gross_exposure(self) -> float:
        return math.fsum(abs(e) for e in self.exposures.values())

    @property
    def net_exposure(self) -> float:
        return math.fsum(self.exposures.values())

    @property
    def drawdown(self) -> float:
        """Drawdown of the last bar's equity from the curve's peak (positive fraction)."""
        eq = self.last_equity
        return 0.0 if eq is None or self.peak <= 0 else max(0.0, 1.0 - eq / self.peak)

    def returns(self) -> np.ndarray:
        """The per-bar returns in the VaR window, oldest first."""
        n, w = self._n_returns, self.var_window
        if n < w:
            return self._returns[:n].copy()
        i = n % w
        return np.concatenate((self._returns[i:], self._returns[:i]))

    # ------------------------------------------------------------------ bars
    def end_bar(self, ts: int = 0) -> dict[float, RiskFigures]:
        """Close a bar: record equity, its return, drawdown, and recompute VaR/ES at 95 and 99 %."""
        eq = self.equity
        prev = self.last_equity
        if prev is not None and prev > 0:
            self._returns[self._n_returns % self.var_window] = eq / prev - 1.0
            self._n_returns += 1
        self.last_equity = eq
        if eq > self.peak:
            self.peak = eq
        self.curve.append((ts, eq))
        r = self._returns if self._n_returns >= self.var_window else self._returns[:self._n_returns]
        self.figures = _figures(r, LEVELS)
        if self.publish:
            self._publish()
        return self.figures

    def _publish(self) -> None:
        metrics.PORTFOLIO_EQUITY.set(self.last_equity)
        metrics.PORTFOLIO_DRAWDOWN.set(self.drawdown)
        for f in self.figures.values():
            g = _risk_gauges(f.level)
            g[0].set(f.var_historical)
            g[1].set(f.var_cornish_fisher)
            g[2].set(f.es_historical)
            g[3].set(f.es_cornish_fisher)
        gauges = self._m_exposure
        for symbol, e in self.exposures.items():
            g = gauges.get(symbol)
            if g is None:
                g = gauges[symbol] = metrics.PORTFOLIO_EXPOSURE.labels(symbol=symbol)
            g.set(e)

    def snapshot(self) -> dict:
        """Cash, realised PnL, fees, peak and positions as plain data (persisted by the engine)."""
        return {"cash": self.cash, "realised": self.realised, "fees": self.fees, "peak": self.peak,
                "last_equity": self.last_equity, "marks": dict(self.marks),
                "positions": {s: [p.qty, p.avg_price, p.realised] for s, p in self.positions.items() if p.qty}}

    def restore(self, snap: dict) -> None:
        """Adopt a :meth:`snapshot` (after a restart)."""
        self.cash, self.realised, self.fees = snap["cash"], snap["realised"], snap["fees"]
        self.peak, self.last_equity = snap["peak"], snap.get("last_equity")
        self.marks = dict(snap.get("marks", {}))
        self.positions = {s: Position(s, q, a, r) for s, (q, a, r) in snap.get("positions", {}).items()}
        self.exposures = {s: p.qty * self.marks.get(s, p.avg_price) for s, p in self.positions.items()}

    def positions_table(self) -> list[dict]:
        """One row per open position: qty, average price, mark, exposure, unrealised and realised PnL."""
        out = []
        for s, p in sorted(self.positions.items()):
            m = self.marks.get(s, p.avg_price)
            out.append({"symbol": s, "qty": p.qty, "avg_price": p.avg_price, "mark": m, "exposure": p.qty * m,
                        "unrealised": p.qty * (m - p.avg_price), "realised": p.realised})
        return out
