"""Bar and trade schemas, and validation that names the symbol, row, field and value.

A bars frame has a ``timestamp`` column (UTC, ns) and ``open, high, low, close, volume,
symbol``; a trades frame has ``seq, ts, price, qty, side, symbol``. Validation never
repairs data: it rejects it with a :class:`DataValidationError`.

Example::

    >>> import pandas as pd
    >>> from spark_research.data.schema import validate_bars
    >>> bars = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01"], utc=True),
    ...     "open": [1.0], "high": [2.0], "low": [0.5], "close": [1.5], "volume": [3.0], "symbol": ["X"]})
    >>> validate_bars(bars).shape
    (1, 7)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

BAR_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume", "symbol")
TRADE_COLUMNS: tuple[str, ...] = ("seq", "ts", "price", "qty", "side", "symbol")
PRICE_FIELDS = ("open", "high", "low", "close")
TS_DTYPE = "datetime64[ns, UTC]"


class DataValidationError(ValueError):
    """Bad market data. Carries ``symbol``, ``row`` (timestamp or seq), ``field`` and ``value``."""

    def __init__(self, symbol: object, row: object, field: str, value: object, reason: str):
        self.symbol, self.row, self.field, self.value, self.reason = symbol, row, field, value, reason
        super().__init__(f"{symbol} @ {row}: field {field!r} = {value!r}: {reason}")


def _first_bad(df: pd.DataFrame, mask: np.ndarray, field: str, row_col: str, reason: str) -> None:
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        value = df[field].iloc[i] if field in df.columns else None
        if isinstance(value, np.generic):
            value = value.item()
        raise DataValidationError(df["symbol"].iloc[i], df[row_col].iloc[i], field, value, reason)


def _require_columns(df: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataValidationError(None, None, missing[0], None, f"{what} frame lacks column(s) {missing}")


def coerce_utc(values: pd.Series, field: str = "timestamp") -> pd.Series:
    """Return ``values`` as ``datetime64[ns, UTC]``; naive times are taken as UTC."""
    try:
        ts = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError) as exc:
        raise DataValidationError(None, None, field, None, f"not parseable as timestamps: {exc}") from exc
    return ts.astype(TS_DTYPE)


def validate_bars(bars: pd.DataFrame, symbol: str | None = None) -> pd.DataFrame:
    """Check an OHLCV frame and return it in canonical form (columns, dtypes, order).

    Rejects missing columns, NaN/inf or non-positive prices, ``high < low``, open/close
    outside ``[low, high]``, NaN/negative volume, duplicate or non-increasing timestamps.
    ``symbol`` fills a missing symbol column.
    """
    df = bars.copy()
    if "timestamp" not in df.columns and isinstance(df.index, pd.DatetimeIndex):
        df = df.rename_axis("timestamp").reset_index()
    if "symbol" not in df.columns:
        if symbol is None:
            raise DataValidationError(None, None, "symbol", None, "no symbol column and no symbol given")
        df["symbol"] = symbol
    _require_columns(df, BAR_COLUMNS, "bars")
    df = df[list(BAR_COLUMNS)]
    df["timestamp"] = coerce_utc(df["timestamp"])
    df["symbol"] = df["symbol"].astype(str)
    if df["timestamp"].isna().any():
        _first_bad(df, df["timestamp"].isna().to_numpy(), "timestamp", "timestamp", "missing timestamp")
    for field in (*PRICE_FIELDS, "volume"):
        try:
            df[field] = pd.to_numeric(df[field], errors="raise").astype("float64")
        except (ValueError, TypeError) as exc:
            raise DataValidationError(df["symbol"].iloc[0], None, field, None, f"not numeric: {exc}") from exc
    for field in PRICE_FIELDS:
        v = df[field].to_numpy()
        _first_bad(df, ~np.isfinite(v), field, "timestamp", "price is NaN or infinite")
        _first_bad(df, v <= 0, field, "timestamp", "price must be > 0")
    vol = df["volume"].to_numpy()
    _first_bad(df, ~np.isfinite(vol), "volume", "timestamp", "volume is NaN or infinite")
    _first_bad(df, vol < 0, "volume", "timestamp", "volume must be >= 0")
    high, low = df["high"].to_numpy(), df["low"].to_numpy()
    _first_bad(df, high < low, "high", "timestamp", "high < low")
    for field in ("open", "close"):
        v = df[field].to_numpy()
        _first_bad(df, (v < low) | (v > high), field, "timestamp", "outside [low, high]")
    for sym, grp in df.groupby("symbol", sort=False):
        if len(grp) > 1:
            step = np.diff(pd.DatetimeIndex(grp["timestamp"]).asi8)
            sub = grp.iloc[1:]
            _first_bad(sub, step == 0, "timestamp", "timestamp", "duplicate timestamp")
            _first_bad(sub, step < 0, "timestamp", "timestamp", "timestamps not increasing")
    return df.reset_index(drop=True)


def validate_trades(trades: pd.DataFrame, symbol: str | None = None) -> pd.DataFrame:
    """Check a trades frame and return it in canonical form.

    Rejects non-positive or non-finite price/qty, sides other than ``buy``/``sell``,
    duplicate or decreasing ``seq`` and decreasing ``ts`` per symbol.
    """
    df = trades.copy()
    if "symbol" not in df.columns:
        if symbol is None:
            raise DataValidationError(None, None, "symbol", None, "no symbol column and no symbol given")
        df["symbol"] = symbol
    _require_columns(df, TRADE_COLUMNS, "trades")
    df = df[list(TRADE_COLUMNS)]
    df["ts"] = coerce_utc(df["ts"], "ts")
    df["seq"] = pd.to_numeric(df["seq"], errors="raise").astype("int64")
    df["symbol"] = df["symbol"].astype(str)
    df["side"] = df["side"].astype(str)
    for field in ("price", "qty"):
        df[field] = pd.to_numeric(df[field], errors="raise").astype("float64")
        v = df[field].to_numpy()
        _first_bad(df, ~np.isfinite(v), field, "seq", f"{field} is NaN or infinite")
        _first_bad(df, v <= 0, field, "seq", f"{field} must be > 0")
    _first_bad(df, ~df["side"].isin(["buy", "sell"]).to_numpy(), "side", "seq", "side must be 'buy' or 'sell'")
    for sym, grp in df.groupby("symbol", sort=False):
        if len(grp) > 1:
            sub = grp.iloc[1:]
            dseq = np.diff(grp["seq"].to_numpy())
            _first_bad(sub, dseq == 0, "seq", "seq", "duplicate trade id")
            _first_bad(sub, dseq < 0, "seq", "seq", "trade ids not increasing")
            dts = np.diff(pd.DatetimeIndex(grp["ts"]).asi8)
            _first_bad(sub, dts < 0, "ts", "seq", "trade times not non-decreasing")
    return df.reset_index(drop=True)
