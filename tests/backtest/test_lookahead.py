"""check_lookahead catches leaky strategies; check_warmup finds history-dependent indicators."""
import pytest
import vectorbt as vbt

from spark_research.backtest.lookahead import check_lookahead, check_warmup
from spark_research.backtest.strategies import STRATEGIES
from spark_research.backtest.strategy import Param, Signals, Strategy
from spark_research.data.synthetic import generate_bars


@pytest.fixture(scope="module")
def bars():
    return generate_bars("BTCUSDT", n=3_000, seed=8)


class NegativeShift(Strategy):
    w = Param(3, low=1, high=10)

    def indicators(self, bars, w):
        return {"future_close": bars["close"].shift(-w)}

    def signals(self, bars, w):
        up = bars["close"].shift(-w) > bars["close"]
        return Signals(up, ~up)


class CentredWindow(Strategy):
    w = Param(9, low=3, high=21)

    def signals(self, bars, w):
        above = bars["close"] > bars["close"].rolling(w, center=True).mean()
        return Signals(above, ~above)


class FutureMax(Strategy):
    w = Param(1, low=1, high=2)

    def signals(self, bars, w):
        at_top = bars["close"] >= bars["close"][::-1].cummax()[::-1]
        return Signals(at_top, ~at_top)


class EmaTrend(Strategy):
    w = Param(30, low=2, high=100)

    def indicators(self, bars, w):
        return {"ema": vbt.MA.run(bars["close"], w, ewm=True).ma}

    def signals(self, bars, w):
        up = bars["close"] > self.indicators(bars, w)["ema"]
        return Signals(up, ~up)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_shipped_strategies_have_no_lookahead(bars, name):
    report = check_lookahead(name, bars, n_cuts=12)
    assert report.passed, str(report)


@pytest.mark.parametrize("leaky", [NegativeShift, CentredWindow, FutureMax])
def test_leaky_strategies_are_caught(bars, leaky):
    report = check_lookahead(leaky, bars, n_cuts=12)
    assert not report.passed
    assert any(s.startswith("signal:") for s in report.leaky_series)
    v = report.violations[0]
    assert v.timestamp <= v.cut and v.full_value != v.truncated_value
    assert "LOOKAHEAD" in str(report)


def test_negative_shift_indicator_is_named(bars):
    assert "indicator:future_close" in check_lookahead(NegativeShift, bars, n_cuts=5).leaky_series


def test_recursive_indicator_needs_a_longer_warmup_than_its_window(bars):
    ema = check_warmup(EmaTrend, bars, {"w": 30})
    assert ema.history_dependent == ["ema"]
    assert ema.warmup_bars["ema"] > 30 * 3  # far beyond the nominal window
    sma = check_warmup("sma_cross", bars, {"fast": 10, "slow": 40})
    assert sma.history_dependent == []
    assert 40 <= sma.warmup_bars["slow_ma"] <= 40 + sma.tail * 2
