"""check_lookahead cuts where leaks show (warm-ups, signal bars, gaps and day boundaries) and
names the offending bar; clean strategies pass; check_warmup measures recursive warm-ups."""
import numpy as np
import pandas as pd
import pytest

from spark_research.backtest.engine import to_frame
from spark_research.backtest.lookahead import CUT_KINDS, check_lookahead, check_warmup
from spark_research.backtest.strategies import STRATEGIES
from spark_research.backtest.strategy import Param, Signals, Strategy
from spark_research.data import generate_bars
from tests.backtest.leaky_strategies import CLEAN, LEAKY, EmaMomentumLongShort, RareSpikeConfirm

GAPS = ((700, 12), (2_100, 30), (3_300, 7), (4_500, 45))  # (first dropped row, rows dropped)
STALE = [300, 1_500, 2_800, 3_900]  # rows (after the drops) with no trades


def gappy_bars(n: int = 6_000, seed: int = 3) -> pd.DataFrame:
    """Minute bars with a daily 23:55-00:05 maintenance window, four outages and four
    zero-volume bars whose prices repeat the previous close."""
    bars = generate_bars("BTCUSDT", n=n, seed=seed)
    minute = bars["timestamp"].dt.hour * 60 + bars["timestamp"].dt.minute
    drop = ((minute >= 23 * 60 + 55) | (minute < 5)).to_numpy().copy()
    for start, length in GAPS:
        drop[start:start + length] = True
    bars = bars[~drop].reset_index(drop=True)
    previous_close = bars["close"].shift(1)
    for col in ("open", "high", "low", "close"):
        bars.loc[STALE, col] = previous_close[STALE]
    bars.loc[STALE, "volume"] = 0.0
    return bars


@pytest.fixture(scope="module")
def bars():
    return gappy_bars()


def _same(a, b) -> bool:
    return (pd.isna(a) and pd.isna(b)) or a == b


@pytest.mark.parametrize("leaky", LEAKY, ids=lambda c: c.__name__)
def test_every_leaky_strategy_is_caught_at_a_named_bar(bars, leaky):
    report = check_lookahead(leaky, bars)
    assert leaky.expected_series in report.leaky_series, str(report)
    v = next(v for v in report.violations if v.series == leaky.expected_series)
    assert 0 <= v.bar <= v.cut_bar < len(bars) - 1
    assert v.timestamp == bars["timestamp"].iloc[v.bar] and v.cut == bars["timestamp"].iloc[v.cut_bar]
    assert not _same(v.full_value, v.truncated_value)
    assert v.kind in CUT_KINDS
    text = str(report)
    assert text.splitlines()[0].startswith(f"{leaky.name} ") and "LOOKAHEAD" in text
    assert leaky.expected_series in text.splitlines()[0]


def test_the_library_covers_at_least_twelve_leak_shapes():
    assert len(LEAKY) >= 12 and len({c.expected_series for c in LEAKY}) >= 10
    assert all(c.__doc__ and c.expected_series for c in LEAKY)


TARGETED = [c for c in LEAKY if c.needs != "any"]


@pytest.mark.parametrize("leaky", TARGETED, ids=lambda c: f"{c.__name__}-{c.needs}")
def test_even_cuts_alone_miss_leaks_that_the_targeted_cuts_catch(bars, leaky):
    old = check_lookahead(leaky, bars, kinds=("even",))
    assert old.passed and old.cuts_by_kind == {"even": old.cuts}
    new = check_lookahead(leaky, bars)
    kinds = {v.kind for v in new.violations if v.series == leaky.expected_series}
    assert leaky.needs in kinds, str(new)


def test_targeted_leaks_include_warmup_special_and_signal_ones():
    assert {c.needs for c in TARGETED} == {"warmup", "special", "signal"}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_shipped_strategies_pass_on_bars_with_gaps(bars, name):
    report = check_lookahead(name, bars)
    assert report.passed and not report.errors, str(report)


@pytest.mark.parametrize("clean", CLEAN, ids=lambda c: c.__name__)
def test_clean_user_strategies_pass(bars, clean):
    report = check_lookahead(clean, bars)
    assert report.passed and not report.errors, str(report)


def test_short_signals_are_checked_when_the_strategy_returns_them(bars):
    report = check_lookahead(EmaMomentumLongShort, bars)
    assert report.passed
    assert report.signal_bars > 0 and report.signal_bars_checked >= min(report.signal_bars, 64)


def test_report_counts_the_cuts_of_each_kind(bars):
    report = check_lookahead("sma_cross", bars)
    assert list(report.cuts_by_kind) == list(CUT_KINDS)
    assert all(count > 0 for count in report.cuts_by_kind.values())
    assert sum(report.cuts_by_kind.values()) == report.cuts == len(report.cut_bars) == report.planned
    assert report.cut_bars == sorted(set(report.cut_bars))
    assert not report.budget_exhausted
    for kind, count in report.cuts_by_kind.items():
        assert f"{kind} {count}" in str(report)
    assert f"signal bars checked {report.signal_bars_checked}/{report.signal_bars}" in str(report)


def test_a_cut_ends_at_every_signal_bar_when_the_cap_allows(bars):
    report = check_lookahead("sma_cross", bars, kinds=("signal",), max_signal_cuts=10_000)
    sig = STRATEGIES["sma_cross"]().signals(to_frame(bars), fast=10, slow=50)
    fired = np.flatnonzero((sig.entries | sig.exits).to_numpy()[: len(bars) - 1])
    assert report.cut_bars == fired.tolist()
    assert report.signal_bars_checked == report.signal_bars == len(fired)


def test_signal_cuts_above_the_cap_are_a_sample(bars):
    report = check_lookahead("sma_cross", bars, kinds=("signal",), max_signal_cuts=10)
    assert report.cuts_by_kind == {"signal": 10} and report.signal_bars_checked == 10 < report.signal_bars


def test_special_cuts_end_at_and_right_after_gaps_empty_bars_and_day_ends(bars):
    report = check_lookahead("sma_cross", bars, kinds=("special",))
    ts = bars["timestamp"]
    before_gap = np.flatnonzero((ts.shift(-1) - ts) > pd.Timedelta("1min"))
    day_end = np.flatnonzero(ts.dt.normalize().shift(-1) > ts.dt.normalize())
    assert len(before_gap) == len(GAPS) + 4 and set(day_end) <= set(before_gap)
    for t in [*before_gap, *STALE]:
        assert {int(t), int(t) + 1} <= set(report.cut_bars)


def test_warmup_cuts_start_at_a_handful_of_bars_and_pass_the_longest_warmup(bars):
    report = check_lookahead("sma_cross", bars, {"fast": 10, "slow": 120}, kinds=("warmup",))
    assert report.cut_bars[:4] == [1, 2, 4, 7]  # 2, 3, 5, 8 bars kept
    assert {118, 119, 120} <= set(report.cut_bars)  # right before, at and after the first slow_ma
    assert max(report.cut_bars) > 2 * 120


def test_min_bars_is_the_fewest_bars_any_cut_keeps(bars):
    report = check_lookahead("sma_cross", bars, min_bars=300)
    assert min(report.cut_bars) >= 299


def test_a_tiny_budget_stops_early_and_says_so(bars):
    report = check_lookahead("sma_cross", bars, budget_s=0.05)
    assert report.budget_exhausted and report.cuts < report.planned
    assert f"ran out after {report.cuts} of {report.planned} planned cuts" in str(report)


def test_same_seed_gives_the_same_cuts(bars):
    a = check_lookahead("rsi_reversion", bars, seed=7, max_signal_cuts=20)
    b = check_lookahead("rsi_reversion", bars, seed=7, max_signal_cuts=20)
    c = check_lookahead("rsi_reversion", bars, seed=8, max_signal_cuts=20)
    assert a.cut_bars == b.cut_bars and a.cuts_by_kind == b.cuts_by_kind
    assert a.cut_bars != c.cut_bars


def test_unknown_cut_kind_is_rejected_by_name(bars):
    with pytest.raises(ValueError, match=r"kinds: unknown cut kind\(s\) \['weekly'\]"):
        check_lookahead("sma_cross", bars, kinds=("even", "weekly"))


class NeedsHundredBars(Strategy):
    """Refuses short histories: not lookahead, so recorded, not raised."""

    w = Param(5, low=2, high=10)

    def signals(self, bars, w):
        if len(bars) < 100:
            raise ValueError(f"need 100 bars, got {len(bars)}")
        up = bars["close"] > bars["close"].rolling(w).mean()
        return Signals(up, ~up)


def test_a_strategy_failing_on_a_short_prefix_is_recorded_not_raised(bars):
    report = check_lookahead(NeedsHundredBars, bars)
    assert report.passed and report.errors and max(report.errors) < 99
    assert "ValueError: need 100 bars" in str(report)


def test_a_one_bar_peek_shows_only_on_the_cut_ending_at_that_bar(bars):
    report = check_lookahead(RareSpikeConfirm, bars)  # confirms a volume spike with the next close
    assert report.violations and all(v.bar == v.cut_bar for v in report.violations)
    assert {v.kind for v in report.violations} == {"signal"}


def test_recursive_ema_is_flagged_with_its_stable_length(bars):
    report = check_warmup(EmaMomentumLongShort, bars, {"fast": 12, "slow": 48})
    assert report.history_dependent == ["fast_ema", "slow_ema"]
    frame, strategy = to_frame(bars), EmaMomentumLongShort()
    full = strategy.indicators(frame, 12, 48)["fast_ema"].iloc[-report.tail:].to_numpy()
    stable = report.warmup_bars["fast_ema"]
    assert stable > 3 * 12  # an EMA needs far more history than its span

    def tail_error(history: int) -> float:
        got = strategy.indicators(frame.iloc[-history:], 12, 48)["fast_ema"].iloc[-report.tail:].to_numpy()
        return float(np.max(np.abs(got - full) / np.abs(got)))

    assert tail_error(stable) <= 1e-9 < tail_error(stable - 1)
