"""Labels and sample weights: fixed horizon, triple barrier (each barrier hit), meta-labels, average uniqueness."""
from __future__ import annotations

import doctest
import numpy as np
import pandas as pd
import pytest

from spark_research.backtest.strategy import Signals, Strategy
from spark_research.features.labels import (
    PROFIT_TAKE,
    STOP_LOSS,
    VERTICAL,
    LabelError,
    average_uniqueness,
    average_uniqueness_positions,
    concurrency,
    fixed_horizon_labels,
    meta_labels,
    triple_barrier_labels,
    volatility,
)

TIMES = pd.date_range("2024-01-01", periods=8, freq="1min", tz="UTC")


def _close(values) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=float), index=TIMES[: len(values)], name="close")


# --------------------------------------------------------------------------- fixed horizon


def test_fixed_horizon_labels_sign_of_the_forward_return_beyond_the_threshold():
    close = _close([100, 103, 100.5, 99, 101, 100])
    lab = fixed_horizon_labels(close, horizon=2, threshold=0.01)
    # returns: 100 -> 100.5 (+0.5%: inside), 103 -> 99 (-3.9%), 100.5 -> 101 (+0.5%), 99 -> 100 (+1.01%)
    assert lab.index.tolist() == TIMES[:4].tolist()
    assert lab["t1"].tolist() == TIMES[2:6].tolist()
    np.testing.assert_allclose(lab["ret"], [0.005, 99 / 103 - 1, 101 / 100.5 - 1, 100 / 99 - 1])
    assert lab["label"].tolist() == [0, -1, 0, 1]


def test_fixed_horizon_rejects_a_bad_horizon_naming_it():
    with pytest.raises(LabelError, match="horizon must be an integer >= 1, got 0"):
        fixed_horizon_labels(_close([1, 2, 3]), horizon=0)


# --------------------------------------------------------------------------- triple barrier


def test_profit_take_barrier_hit_first():
    # target 2%: upper at +2%, lower at -2%; +2.5% at bar 2, before the -3% at bar 3
    lab = triple_barrier_labels(_close([100, 101, 102.5, 97, 100]), events=TIMES[:1], pt=1, sl=1, max_bars=4,
                                target=0.02)
    row = lab.iloc[0]
    assert (row["t1"], row["barrier"], row["label"]) == (TIMES[2], PROFIT_TAKE, 1)
    assert row["ret"] == pytest.approx(0.025)


def test_stop_loss_barrier_hit_first():
    lab = triple_barrier_labels(_close([100, 99.5, 97.9, 103, 100]), events=TIMES[:1], pt=1, sl=1, max_bars=4,
                                target=0.02)
    row = lab.iloc[0]
    assert (row["t1"], row["barrier"], row["label"]) == (TIMES[2], STOP_LOSS, -1)
    assert row["ret"] == pytest.approx(-0.021)


def test_vertical_barrier_when_neither_horizontal_is_touched():
    lab = triple_barrier_labels(_close([100, 101, 99, 101.5, 100.5, 130]), events=TIMES[:1], pt=1, sl=1,
                                max_bars=4, target=0.02)
    row = lab.iloc[0]
    # bar 4 is the vertical barrier (the +30% at bar 5 is too late); label: sign of the +0.5%
    assert (row["t1"], row["barrier"], row["label"]) == (TIMES[4], VERTICAL, 1)
    assert row["ret"] == pytest.approx(0.005)


def test_asymmetric_multipliers_and_a_switched_off_barrier():
    close = _close([100, 98.5, 97, 104, 100])
    # sl = 2 x 1%: -1.5% does not touch, -3% at bar 2 does
    assert triple_barrier_labels(close, TIMES[:1], pt=1, sl=2, max_bars=4, target=0.01)["t1"].iloc[0] == TIMES[2]
    # sl = 0: no stop at all; pt = 4 x 1% is touched at bar 3
    lab = triple_barrier_labels(close, TIMES[:1], pt=4, sl=0, max_bars=4, target=0.01)
    assert (lab["t1"].iloc[0], lab["barrier"].iloc[0]) == (TIMES[3], PROFIT_TAKE)


def test_short_side_turns_a_falling_price_into_its_profit_take():
    lab = triple_barrier_labels(_close([100, 99, 97.5, 101]), TIMES[:1], pt=1, sl=1, max_bars=3, target=0.02,
                                side=-1)
    assert (lab["t1"].iloc[0], lab["barrier"].iloc[0], lab["label"].iloc[0]) == (TIMES[2], PROFIT_TAKE, 1)
    assert lab["ret"].iloc[0] == pytest.approx(0.025)


def test_event_on_the_last_bars_gets_a_vertical_barrier_cut_at_the_end():
    lab = triple_barrier_labels(_close([100, 100.5, 100.2]), pt=1, sl=1, max_bars=10, target=0.02)
    assert lab.index.tolist() == TIMES[:2].tolist()  # no label for the last bar
    assert lab["t1"].tolist() == [TIMES[2], TIMES[2]] and (lab["barrier"] == VERTICAL).all()


def test_default_target_is_the_volatility_known_at_the_event():
    rng = np.random.default_rng(5)
    close = pd.Series(100 * np.cumprod(1 + rng.normal(0, 0.01, 500)))
    lab = triple_barrier_labels(close, pt=1, sl=1, max_bars=10, vol_span=50)
    vol = volatility(close, span=50, horizon=10)
    np.testing.assert_array_equal(lab["trgt"].to_numpy(), vol.loc[lab.index].to_numpy())
    assert lab.index[0] == vol.first_valid_index()  # warm-up events dropped
    # no lookahead in the target: changing the future leaves the past volatility unchanged
    bumped = close.copy()
    bumped.iloc[300:] *= 1.5
    np.testing.assert_array_equal(volatility(bumped, span=50, horizon=10).iloc[:300], vol.iloc[:300])


def _reference_barriers(close, t0, upper, lower, max_bars):
    out = []
    for i, up, lo in zip(t0, upper, lower):
        last = min(i + max_bars, len(close) - 1)
        hit = (last, 0)
        for j in range(i + 1, last + 1):
            r = close[j] / close[i] - 1
            if r >= up:
                hit = (j, 1)
                break
            if r <= lo:
                hit = (j, -1)
                break
        out.append(hit)
    return np.array(out)


def test_kernel_matches_a_plain_python_scan_on_a_random_walk():
    rng = np.random.default_rng(11)
    close = pd.Series(100 * np.cumprod(1 + rng.normal(0, 0.002, 3_000)))
    lab = triple_barrier_labels(close, pt=1.5, sl=1.0, max_bars=30, vol_span=100)
    pos = lab.index.to_numpy()
    ref = _reference_barriers(close.to_numpy(), pos, 1.5 * lab["trgt"].to_numpy(), -lab["trgt"].to_numpy(), 30)
    np.testing.assert_array_equal(lab["t1"].to_numpy(), ref[:, 0])
    np.testing.assert_array_equal(lab["barrier"].to_numpy(), ref[:, 1])
    assert set(np.unique(ref[:, 1])) == {-1, 0, 1}  # every barrier type occurs


def test_triple_barrier_handles_a_million_bars():
    rng = np.random.default_rng(0)
    close = pd.Series(100 * np.cumprod(1 + rng.normal(0, 0.001, 1_000_000)))
    lab = triple_barrier_labels(close, pt=1, sl=1, max_bars=20, vol_span=100)
    assert len(lab) == 1_000_000 - 22  # 21 warm-up bars for 20-bar returns' vol, and the last bar
    assert (lab["t1"].to_numpy() - lab.index.to_numpy() <= 20).all()
    # and their uniqueness weights by the sweep line: at most 21 labels share a bar
    w = average_uniqueness(lab, index=close.index)
    assert len(w) == len(lab) and w.min() >= 1 / 21 - 1e-12 and w.max() <= 1 + 1e-12


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"pt": -1}, "pt must be a finite number >= 0, got -1"),
    ({"max_bars": 0}, "max_bars must be an integer >= 1, got 0"),
    ({"target": 0.0}, "target must be a finite number > 0, got 0.0"),
    ({"side": [1, 0, 1]}, "side must be \\+1 or -1"),
])
def test_triple_barrier_rejects_bad_arguments_naming_them(kwargs, message):
    with pytest.raises(LabelError, match=message):
        triple_barrier_labels(_close([100, 101, 102, 103]), **{"target": 0.01, **kwargs})


def test_bad_prices_are_refused_naming_the_bar():
    with pytest.raises(LabelError, match=r"close\[.*2024-01-01 00:01.*\] = nan"):
        triple_barrier_labels(_close([100, np.nan, 102]), target=0.01)


def test_events_not_on_a_bar_are_refused():
    with pytest.raises(LabelError, match="events: time .* is not a bar"):
        triple_barrier_labels(_close([100, 101, 102]), events=[pd.Timestamp("2030-01-01", tz="UTC")], target=0.01)


# --------------------------------------------------------------------------- meta-labels


class _EntriesAt(Strategy):
    """Long entries on the bars listed in ``ENTRY_BARS`` (test helper)."""

    name = "entries_at_test"
    ENTRY_BARS = (1, 5)

    def signals(self, bars):
        entries = pd.Series(False, index=bars.index)
        entries.iloc[list(self.ENTRY_BARS)] = True
        return Signals(entries=entries, exits=pd.Series(False, index=bars.index))


def _bars(close) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    ts = pd.date_range("2024-01-01", periods=len(close), freq="1min", tz="UTC")
    return pd.DataFrame({"timestamp": ts, "open": close, "high": close, "low": close, "close": close,
                         "volume": 1.0, "symbol": "TEST"})


def test_meta_label_is_one_only_when_the_primary_trade_hits_profit_take_first():
    # entry at bar 1 (100): +3% at bar 3 -> profit-take -> 1; entry at bar 5 (103): -2.9% at bar 7 -> 0
    bars = _bars([100, 100, 101, 103, 104, 103, 102, 100, 101, 100])
    lab = meta_labels(_EntriesAt, bars, pt=1, sl=1, max_bars=3, target=0.025)
    assert lab.index.tolist() == bars["timestamp"].iloc[[1, 5]].tolist()
    assert lab["t1"].tolist() == bars["timestamp"].iloc[[3, 7]].tolist()
    assert lab["barrier"].tolist() == [PROFIT_TAKE, STOP_LOSS]
    assert lab["label"].tolist() == [1, 0] and lab["side"].tolist() == [1, 1]


def test_meta_label_is_zero_on_a_time_out_even_with_a_gain():
    bars = _bars([100, 100, 100.5, 101, 101.5, 101, 101.5, 102, 102, 102])
    lab = meta_labels(_EntriesAt, bars, pt=1, sl=1, max_bars=3, target=0.05)
    assert lab["barrier"].tolist() == [VERTICAL, VERTICAL]
    assert (lab["ret"] > 0).all() and lab["label"].tolist() == [0, 0]


def test_meta_labels_of_a_shipped_strategy_follow_its_entries():
    from spark_research.backtest import run_backtest
    from spark_research.data import generate_bars

    bars = generate_bars("BTCUSDT", n=4_000, seed=3)
    lab = meta_labels("sma_cross", bars, {"fast": 5, "slow": 20}, max_bars=30)
    trades = run_backtest("sma_cross", bars, {"fast": 5, "slow": 20}).trades
    # every labelled event is a signal bar; its trade fills at the next bar's open
    assert len(lab) > 20
    assert set(lab.index + pd.Timedelta("1min")) <= set(pd.to_datetime(trades["entry_time"], utc=True)) | {bars["timestamp"].iloc[-1]}


# --------------------------------------------------------------------------- uniqueness


def test_average_uniqueness_on_a_hand_computed_example():
    # bars 0..5; labels A=[0,2], B=[1,3], C=[4,5], D=[5,5]
    # concurrency: bar 0:1, 1:2, 2:2, 3:1, 4:1, 5:2
    # A = (1 + 1/2 + 1/2)/3 = 2/3; B = (1/2 + 1/2 + 1)/3 = 2/3; C = (1 + 1/2)/2 = 3/4; D = 1/2
    t0, t1 = np.array([0, 1, 4, 5]), np.array([2, 3, 5, 5])
    assert concurrency(t0, t1, 6).tolist() == [1, 2, 2, 1, 1, 2]
    np.testing.assert_allclose(average_uniqueness_positions(t0, t1, 6), [2 / 3, 2 / 3, 3 / 4, 1 / 2])


def test_average_uniqueness_of_label_frames_with_times():
    idx = pd.date_range("2024-01-01", periods=6, freq="1h", tz="UTC")
    lab = pd.DataFrame({"t1": idx[[2, 3, 5, 5]]}, index=idx[[0, 1, 4, 5]])
    w = average_uniqueness(lab, index=idx)
    assert w.index.equals(lab.index)
    np.testing.assert_allclose(w.to_numpy(), [2 / 3, 2 / 3, 3 / 4, 1 / 2])


def test_uniqueness_sweep_line_matches_the_quadratic_definition():
    rng = np.random.default_rng(2)
    n_bars = 400
    t0 = np.sort(rng.integers(0, n_bars - 1, 150))
    t1 = np.minimum(t0 + rng.integers(0, 30, 150), n_bars - 1)
    alive = (np.arange(n_bars)[None, :] >= t0[:, None]) & (np.arange(n_bars)[None, :] <= t1[:, None])
    c = alive.sum(axis=0)
    expected = [(1.0 / c[a]).mean() for a in alive]
    np.testing.assert_allclose(average_uniqueness_positions(t0, t1, n_bars), expected, rtol=1e-12)


def test_uniqueness_of_triple_barrier_labels_lies_in_0_1_and_isolated_labels_weigh_one():
    rng = np.random.default_rng(4)
    close = pd.Series(100 * np.cumprod(1 + rng.normal(0, 0.002, 2_000)))
    lab = triple_barrier_labels(close, pt=1, sl=1, max_bars=15)
    w = average_uniqueness(lab, index=close.index)
    assert ((w > 0) & (w <= 1)).all() and w.mean() < 0.5  # every-bar events overlap heavily
    sparse = lab.iloc[::40]
    assert (average_uniqueness(sparse, index=close.index) == 1.0).all()


def test_uniqueness_rejects_a_label_ending_before_it_starts():
    with pytest.raises(LabelError, match=r"t1\[1\] = 0 is before t0\[1\] = 2"):
        average_uniqueness_positions(np.array([0, 2]), np.array([1, 0]), 5)


def test_docstring_examples_run():
    import spark_research.features.labels as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
