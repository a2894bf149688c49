"""Loaders for common OHLCV and trade formats; each returns a validated canonical frame.

* :func:`read_ohlcv_csv` / :func:`read_ohlcv_parquet` — generic files with columns
  ``timestamp, open, high, low, close, volume[, symbol]`` (column names case-insensitive,
  ``time``/``date``/``datetime`` accepted for the timestamp).
* :func:`read_binance_klines` — the public Binance kline dump (no header, 12 columns,
  ``open_time`` in ms, or µs since 2025 for spot).
* :func:`read_binance_trades` — the public Binance trades dump
  (``id, price, qty, quote_qty, time, is_buyer_maker[, is_best_match]``).

Example::

    >>> import io
    >>> from spark_research.data.loaders import read_binance_klines
    >>> row = "1704067200000,42283.58,42298.62,42261.02,42298.61,35.9,1704067259999,1517839.6,1327,20.0,845600.0,0\\n"
    >>> read_binance_klines(io.StringIO(row), symbol="BTCUSDT")["timestamp"].iloc[0]
    Timestamp('2024-01-01 00:00:00+0000', tz='UTC')
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from spark_research.data.schema import DataValidationError, validate_bars, validate_trades

KLINE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
                 "trades", "taker_buy_base", "taker_buy_quote", "ignore")
TRADE_DUMP_COLUMNS = ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker", "is_best_match")
_TS_ALIASES = ("timestamp", "time", "date", "datetime", "open_time", "ts")

Source = str | os.PathLike[str] | IO[str]


def epoch_to_utc(values: pd.Series | np.ndarray, field: str = "open_time") -> pd.Series:
    """Epoch integers to UTC timestamps; each value's unit (s, ms, µs, ns) is read from its
    magnitude, so a file that switches from ms to µs (Binance spot, 2025) still loads."""
    v = pd.to_numeric(pd.Series(values), errors="coerce")
    if v.isna().any():
        i = int(np.flatnonzero(v.isna().to_numpy())[0])
        raise DataValidationError(None, i, field, pd.Series(values).iloc[i], "not an epoch integer")
    a = v.astype("int64").to_numpy()
    mag = np.abs(a)
    scale = np.where(mag < 10**11, 10**9, np.where(mag < 10**14, 10**6, np.where(mag < 10**17, 10**3, 1)))
    return pd.Series(pd.to_datetime(a * scale, unit="ns", utc=True), name=field).astype("datetime64[ns, UTC]")


def _normalise_ohlcv(df: pd.DataFrame, symbol: str | None) -> pd.DataFrame:
    df = df.rename(columns={c: str(c).strip().lower() for c in df.columns})
    ts_col = next((c for c in _TS_ALIASES if c in df.columns), None)
    if ts_col is None:
        raise DataValidationError(symbol, None, "timestamp", None,
                                  f"no timestamp column (looked for {list(_TS_ALIASES)}; got {list(df.columns)})")
    ts = df[ts_col]
    df["timestamp"] = epoch_to_utc(ts, ts_col).to_numpy() if pd.api.types.is_numeric_dtype(ts) else ts
    if symbol is not None:
        df["symbol"] = symbol
    return validate_bars(df, symbol)


def read_ohlcv_csv(source: Source, symbol: str | None = None) -> pd.DataFrame:
    """Read a generic OHLCV CSV (header required) into validated bars."""
    return _normalise_ohlcv(pd.read_csv(source), symbol)


def read_ohlcv_parquet(path: str | os.PathLike[str], symbol: str | None = None) -> pd.DataFrame:
    """Read a generic OHLCV Parquet file into validated bars."""
    return _normalise_ohlcv(pd.read_parquet(path), symbol)


def _has_header(source: Source) -> tuple[bool, Source]:
    if isinstance(source, (str, os.PathLike)):
        with open(source) as fh:
            first = fh.readline()
    else:
        pos = source.tell()
        first = source.readline()
        source.seek(pos)
    return (not first[:1].isdigit()), source


def read_binance_klines(source: Source, symbol: str) -> pd.DataFrame:
    """Read a Binance kline dump (``BTCUSDT-1m-2024-01.csv``); header optional, ms or µs times."""
    header, source = _has_header(source)
    raw = pd.read_csv(source, header=0 if header else None)
    if raw.shape[1] < 6:
        raise DataValidationError(symbol, None, "columns", raw.shape[1], "a kline dump has 12 columns")
    raw.columns = list(KLINE_COLUMNS[: raw.shape[1]]) + [f"extra_{i}" for i in range(max(0, raw.shape[1] - 12))]
    bars = raw[["open", "high", "low", "close", "volume"]].copy()
    bars.insert(0, "timestamp", epoch_to_utc(raw["open_time"], "open_time").to_numpy())
    return validate_bars(bars, symbol)


def read_binance_trades(source: Source, symbol: str) -> pd.DataFrame:
    """Read a Binance trades dump into validated trades (``side`` is the taker's side)."""
    header, source = _has_header(source)
    raw = pd.read_csv(source, header=0 if header else None)
    raw.columns = list(TRADE_DUMP_COLUMNS[: raw.shape[1]])
    maker_is_buyer = raw["is_buyer_maker"].astype(str).str.lower().isin(["true", "1"])
    trades = pd.DataFrame({
        "seq": raw["id"],
        "ts": epoch_to_utc(raw["time"], "time").to_numpy(),
        "price": raw["price"],
        "qty": raw["qty"],
        # buyer is the maker -> the aggressor sold
        "side": np.where(maker_is_buyer, "sell", "buy"),
    })
    return validate_trades(trades, symbol)


def load_file(path: str | os.PathLike[str], fmt: str = "auto", symbol: str | None = None) -> tuple[str, pd.DataFrame]:
    """Load ``path`` as ``fmt`` (``csv``, ``parquet``, ``binance-klines``, ``binance-trades`` or
    ``auto``); returns ``(kind, frame)`` with kind ``"bars"`` or ``"trades"``."""
    p = Path(path)
    if fmt == "auto":
        if p.suffix == ".parquet":
            fmt = "parquet"
        else:
            with open(p) as fh:
                first = fh.readline()
            fmt = "binance-klines" if first[:1].isdigit() and first.count(",") >= 11 else \
                  "binance-trades" if first[:1].isdigit() else "csv"
    if fmt in ("binance-klines", "binance-trades") and not symbol:
        symbol = p.name.split("-", 1)[0].upper()  # Binance dumps are named SYMBOL-...
    readers = {"csv": lambda: ("bars", read_ohlcv_csv(p, symbol)),
               "parquet": lambda: ("bars", read_ohlcv_parquet(p, symbol)),
               "binance-klines": lambda: ("bars", read_binance_klines(p, symbol)),
               "binance-trades": lambda: ("trades", read_binance_trades(p, symbol))}
    if fmt not in readers:
        raise ValueError(f"format must be one of {sorted(readers)} or 'auto', got {fmt!r}")
    return readers[fmt]()
