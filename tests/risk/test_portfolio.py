"""The live portfolio: average prices, realised/unrealised PnL, flips, exposure, drawdown, VaR and ES."""
from __future__ import annotations

import math

import numpy as np
import pytest

from spark_research.risk.portfolio import Portfolio, var_es


def test_average_price_realised_pnl_and_a_flip():
    p = Portfolio(cash=1000.0)
    p.apply_fill("X", "buy", 2.0, 10.0)
    p.apply_fill("X", "buy", 2.0, 14.0)
    assert p.position("X").avg_price == 12.0
    assert p.apply_fill("X", "sell", 1.0, 15.0) == 3.0  # closes 1 at +3
    assert p.position("X").avg_price == 12.0  # a reduction keeps the average
    assert p.apply_fill("X", "sell", 5.0, 11.0) == -3.0  # closes 3 at -1 each, opens 2 short at 11
    pos = p.position("X")
    assert (pos.qty, pos.avg_price) == (-2.0, 11.0)
    p.mark("X", 10.0)
    assert p.unrealised == 2.0 and p.exposures["X"] == -20.0
    assert p.equity == pytest.approx(1000.0 + 0.0 + 2.0)  # realised 0 overall, unrealised +2


def test_fees_reduce_cash_and_realised_pnl():
    p = Portfolio(cash=1000.0)
    p.apply_fill("X", "buy", 1.0, 100.0, fee=1.0)
    p.apply_fill("X", "sell", 1.0, 100.0, fee=1.0)
    assert p.realised == -2.0 and p.cash == 998.0 and p.fees == 2.0


def test_gross_and_net_exposure_by_symbol():
    p = Portfolio(cash=0.0)
    p.apply_fill("A", "buy", 1.0, 100.0)
    p.apply_fill("B", "sell", 2.0, 30.0)
    p.mark_many({"A": 110.0, "B": 35.0})
    assert p.exposures == {"A": 110.0, "B": -70.0}
    assert p.gross_exposure == 180.0 and p.net_exposure == 40.0


@pytest.mark.parametrize("bad", [dict(side="hold"), dict(qty=0.0), dict(qty=math.nan), dict(price=-1.0)])
def test_bad_fills_are_refused_naming_the_field(bad):
    args = {"side": "buy", "qty": 1.0, "price": 10.0} | bad
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        Portfolio().apply_fill("X", args["side"], args["qty"], args["price"])


def test_equity_curve_drawdown_and_returns_window():
    p = Portfolio(cash=0.0, var_window=20)
    p.apply_fill("X", "buy", 1.0, 100.0)
    closes = [100.0, 120.0, 90.0, 108.0] + [100.0 + i for i in range(30)]
    for i, c in enumerate(closes):
        p.mark("X", c)
        p.end_bar(i)
    assert [eq for _, eq in list(p.curve)[:4]] == [0.0, 20.0, -10.0, 8.0]
    p2 = Portfolio(cash=100.0, var_window=20)
    p2.apply_fill("X", "buy", 1.0, 100.0)
    for c in (100.0, 150.0, 125.0):
        p2.mark("X", c)
        p2.end_bar()
    assert p2.peak == 150.0 + 0.0 and p2.drawdown == pytest.approx(1 - 125.0 / 150.0)
    assert len(p.returns()) == 20


def test_historical_var_and_es_match_a_direct_computation():
    r = np.random.default_rng(5).standard_t(4, 500) * 0.01
    for level in (0.95, 0.99):
        f = var_es(r, level)
        q = np.quantile(r, 1 - level)
        assert f.var_historical == pytest.approx(-q)
        assert f.es_historical == pytest.approx(-r[r <= q].mean())
        assert f.es_historical >= f.var_historical


def test_cornish_fisher_is_the_normal_var_for_normal_returns_and_fatter_for_fat_tails():
    rng = np.random.default_rng(11)
    normal = rng.normal(0.0, 0.01, 200_000)
    f = var_es(normal, 0.99)
    assert f.var_cornish_fisher == pytest.approx(2.3263 * 0.01, rel=0.02)
    assert f.es_cornish_fisher == pytest.approx(2.6652 * 0.01, rel=0.03)  # normal ES at 99 %: phi(z)/0.01
    skewed = -np.abs(rng.standard_t(3, 5000)) * 0.01 + 0.005  # heavy left tail
    g = var_es(skewed, 0.99)
    sd = skewed.std()
    assert g.var_cornish_fisher > -(skewed.mean() - 2.3263 * sd)


def test_var_needs_twenty_returns_and_a_known_level():
    assert math.isnan(var_es(np.zeros(19), 0.99).var_historical)
    with pytest.raises(ValueError, match="level"):
        var_es(np.zeros(30), 0.9)


def test_end_bar_recomputes_var_every_bar_and_publishes():
    from spark_research import metrics

    p = Portfolio(cash=1000.0, var_window=30, publish=True)
    p.apply_fill("VARSYM", "buy", 1.0, 100.0)
    rng = np.random.default_rng(2)
    price = 100.0
    for i in range(40):
        price *= 1 + rng.normal(0, 0.02)
        p.mark("VARSYM", price)
        figs = p.end_bar(i)
    r = p.returns()
    assert figs[0.99].var_historical == pytest.approx(-np.quantile(r, 0.01))
    assert metrics.PORTFOLIO_VAR.labels(level="0.99", method="historical")._value.get() == figs[0.99].var_historical
    assert metrics.PORTFOLIO_EXPOSURE.labels(symbol="VARSYM")._value.get() == pytest.approx(price)


def test_snapshot_and_restore_round_trip():
    p = Portfolio(cash=500.0)
    p.apply_fill("X", "buy", 2.0, 10.0, fee=0.5)
    p.mark("X", 12.0)
    q = Portfolio()
    q.restore(p.snapshot())
    assert (q.cash, q.realised, q.equity, q.position("X").avg_price) == (p.cash, p.realised, p.equity, 10.0)
