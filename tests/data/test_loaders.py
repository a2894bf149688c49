"""Loaders: generic CSV/Parquet round trips and the Binance kline/trade dump formats."""
import io

import pandas as pd
import pytest

from spark_research.data.loaders import (
    load_file, read_binance_klines, read_binance_trades, read_ohlcv_csv, read_ohlcv_parquet,
)
from spark_research.data.schema import DataValidationError
from spark_research.data.synthetic import generate_bars


def _kline_rows(bars, unit="ms"):
    mult = {"ms": 1_000_000, "us": 1_000}[unit]
    t = bars["timestamp"].astype("int64") // mult
    close_t = t + (60_000 if unit == "ms" else 60_000_000) - 1
    return pd.DataFrame({
        "open_time": t, "open": bars["open"], "high": bars["high"], "low": bars["low"], "close": bars["close"],
        "volume": bars["volume"], "close_time": close_t, "quote_volume": bars["volume"] * bars["close"],
        "trades": 100, "taker_buy_base": bars["volume"] / 2, "taker_buy_quote": bars["volume"] * bars["close"] / 2,
        "ignore": 0,
    })


def test_csv_round_trip(tmp_path):
    bars = generate_bars("ETHUSDT", n=500, seed=9)
    path = tmp_path / "eth.csv"
    bars.to_csv(path, index=False)
    pd.testing.assert_frame_equal(read_ohlcv_csv(path), bars, check_dtype=False)


def test_csv_with_other_column_names_and_epoch_times(tmp_path):
    bars = generate_bars("ETHUSDT", n=50, seed=9)
    df = bars.drop(columns="symbol").rename(columns=str.upper).rename(columns={"TIMESTAMP": "Time"})
    df["Time"] = bars["timestamp"].astype("int64") // 1_000_000  # epoch ms
    path = tmp_path / "eth.csv"
    df.to_csv(path, index=False)
    got = read_ohlcv_csv(path, symbol="ETHUSDT")
    assert got["timestamp"].equals(bars["timestamp"]) and (got["close"] == bars["close"]).all()


def test_parquet_round_trip(tmp_path):
    bars = generate_bars("SOLUSDT", n=500, seed=9)
    path = tmp_path / "sol.parquet"
    bars.to_parquet(path)
    pd.testing.assert_frame_equal(read_ohlcv_parquet(path), bars, check_dtype=False)


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_binance_kline_dump_in_ms_or_us(unit):
    bars = generate_bars("BTCUSDT", n=120, seed=2)
    buf = io.StringIO(_kline_rows(bars, unit).to_csv(index=False, header=False))
    got = read_binance_klines(buf, symbol="BTCUSDT")
    pd.testing.assert_frame_equal(got, bars, check_dtype=False)


def test_binance_kline_dump_with_header_and_mixed_units():
    bars = generate_bars("BTCUSDT", n=10, seed=2)
    rows = pd.concat([_kline_rows(bars.iloc[:5], "ms"), _kline_rows(bars.iloc[5:], "us")])
    got = read_binance_klines(io.StringIO(rows.to_csv(index=False)), symbol="BTCUSDT")
    assert got["timestamp"].equals(bars["timestamp"])


def test_binance_trade_dump_maps_maker_flag_to_taker_side():
    dump = "101,42000.1,0.5,21000.05,1704067200000,true,true\n102,42000.2,0.1,4200.02,1704067200001,false,true\n"
    got = read_binance_trades(io.StringIO(dump), "BTCUSDT")
    assert got["seq"].tolist() == [101, 102]
    assert got["side"].tolist() == ["sell", "buy"]  # buyer is maker -> aggressor sold
    assert got["ts"].iloc[1] == pd.Timestamp("2024-01-01 00:00:00.001", tz="UTC")


def test_bad_kline_row_is_named():
    bars = generate_bars("BTCUSDT", n=10, seed=2)
    rows = _kline_rows(bars)
    rows.loc[4, "high"] = rows.loc[4, "low"] - 1
    with pytest.raises(DataValidationError, match="high < low") as err:
        read_binance_klines(io.StringIO(rows.to_csv(index=False, header=False)), symbol="BTCUSDT")
    assert err.value.row == bars.loc[4, "timestamp"] and err.value.symbol == "BTCUSDT"


def test_load_file_detects_formats_and_symbol_from_binance_name(tmp_path):
    bars = generate_bars("ETHUSDT", n=30, seed=2)
    kl = tmp_path / "ETHUSDT-1m-2024-01.csv"
    _kline_rows(bars).to_csv(kl, index=False, header=False)
    kind, got = load_file(kl)
    assert kind == "bars" and (got["symbol"] == "ETHUSDT").all() and len(got) == 30
    tr = tmp_path / "ETHUSDT-trades-2024-01.csv"
    tr.write_text("1,2000.5,0.2,400.1,1704067200000,false,true\n")
    kind, got = load_file(tr)
    assert kind == "trades" and got["symbol"].iloc[0] == "ETHUSDT"
    with pytest.raises(ValueError, match="format must be one of"):
        load_file(kl, fmt="xlsx")
