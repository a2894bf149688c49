"""Validation rejects bad bars and trades with errors naming symbol, row, field and value."""
import numpy as np
import pandas as pd
import pytest

from spark_research.data.schema import DataValidationError, validate_bars, validate_trades
from spark_research.data.synthetic import generate_bars, generate_trades


@pytest.fixture
def bars():
    return generate_bars("BTCUSDT", n=50, seed=3)


def _break(bars, row, field, value):
    bad = bars.copy()
    bad.loc[row, field] = value
    return bad


@pytest.mark.parametrize("field,value,reason", [
    ("close", np.nan, "NaN"),
    ("open", np.inf, "infinite"),
    ("low", -1.0, "> 0"),
    ("high", 0.0, "> 0"),
    ("volume", -5.0, ">= 0"),
    ("volume", np.nan, "NaN"),
])
def test_bad_value_is_rejected_naming_symbol_row_field_and_value(bars, field, value, reason):
    with pytest.raises(DataValidationError) as err:
        validate_bars(_break(bars, 17, field, value))
    e = err.value
    assert (e.symbol, e.field) == ("BTCUSDT", field)
    assert e.row == bars.loc[17, "timestamp"]
    assert reason in str(e) and "BTCUSDT" in str(e) and field in str(e) and str(bars.loc[17, "timestamp"]) in str(e)


def test_high_below_low_is_rejected(bars):
    bad = _break(bars, 5, "high", bars.loc[5, "low"] * 0.99)
    with pytest.raises(DataValidationError, match="high < low") as err:
        validate_bars(bad)
    assert err.value.field == "high" and err.value.value == pytest.approx(bars.loc[5, "low"] * 0.99)


@pytest.mark.parametrize("field", ["open", "close"])
def test_open_or_close_outside_the_bar_range_is_rejected(bars, field):
    bad = _break(bars, 9, field, bars.loc[9, "high"] * 1.01)
    with pytest.raises(DataValidationError, match=r"outside \[low, high\]") as err:
        validate_bars(bad)
    assert err.value.field == field and err.value.row == bars.loc[9, "timestamp"]


def test_duplicate_timestamp_is_rejected(bars):
    bad = _break(bars, 10, "timestamp", bars.loc[9, "timestamp"])
    with pytest.raises(DataValidationError, match="duplicate timestamp") as err:
        validate_bars(bad)
    assert err.value.row == bars.loc[9, "timestamp"]


def test_non_monotonic_timestamps_are_rejected(bars):
    bad = _break(bars, 10, "timestamp", bars.loc[3, "timestamp"])
    with pytest.raises(DataValidationError, match="not increasing"):
        validate_bars(bad)


def test_missing_column_is_named(bars):
    with pytest.raises(DataValidationError, match="volume"):
        validate_bars(bars.drop(columns="volume"))


def test_valid_bars_come_back_canonical(bars):
    out = validate_bars(bars.drop(columns="symbol").set_index("timestamp"), symbol="ETHUSDT")
    assert list(out.columns) == ["timestamp", "open", "high", "low", "close", "volume", "symbol"]
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert (out["symbol"] == "ETHUSDT").all()


def test_naive_timestamps_are_taken_as_utc(bars):
    naive = bars.assign(timestamp=bars["timestamp"].dt.tz_localize(None))
    assert validate_bars(naive)["timestamp"].equals(bars["timestamp"])


def test_trades_reject_bad_side_and_duplicate_ids():
    trades = generate_trades("ETHUSDT", n=20, seed=1)
    with pytest.raises(DataValidationError, match="side") as err:
        validate_trades(trades.assign(side=["buy"] * 19 + ["hold"]))
    assert err.value.value == "hold" and err.value.row == trades["seq"].iloc[-1]
    dup = trades.copy()
    dup.loc[5, "seq"] = dup.loc[4, "seq"]
    with pytest.raises(DataValidationError, match="duplicate trade id"):
        validate_trades(dup)
    with pytest.raises(DataValidationError, match="qty must be > 0"):
        validate_trades(trades.assign(qty=0.0))
