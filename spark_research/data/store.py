"""Parquet store of bars and trades, partitioned by symbol and month, queried with DuckDB.

Layout under the store root::

    bars/symbol=BTCUSDT/month=2024-01/data.parquet
    trades/symbol=BTCUSDT/month=2024-01/data.parquet

Writes validate everything first, then write every new partition file to a temporary name
and ``os.replace`` it into place, so a bad input never half-writes the store and a crash
leaves each partition either old or new, never torn.

Example::

    >>> import tempfile
    >>> from spark_research.data import BarStore, generate_bars
    >>> store = BarStore(tempfile.mkdtemp())
    >>> store.write_bars(generate_bars("BTCUSDT", n=500, seed=1)) > 0
    True
    >>> len(store.load_bars("BTCUSDT", start="2024-01-01 01:00"))
    440
"""
from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spark_research import metrics
from spark_research.config import settings
from spark_research.data.schema import TS_DTYPE, DataValidationError, validate_bars, validate_trades

_KINDS = {"bars": ("timestamp", validate_bars), "trades": ("ts", validate_trades)}
_SAMPLE_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _ts(value: object) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


class BarStore:
    """A Parquet dataset of bars and trades under ``root`` (see module docstring)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- writing
    def write_bars(self, bars: pd.DataFrame, symbol: str | None = None) -> int:
        """Validate and upsert bars (same timestamp: new row wins). Returns bytes written."""
        return self._write("bars", validate_bars(bars, symbol))

    def write_trades(self, trades: pd.DataFrame, symbol: str | None = None) -> int:
        """Validate and upsert trades (same ``seq``: new row wins). Returns bytes written."""
        return self._write("trades", validate_trades(trades, symbol))

    def _partition(self, kind: str, symbol: str, month: str) -> Path:
        return self.root / kind / f"symbol={symbol}" / f"month={month}" / "data.parquet"

    def _write(self, kind: str, df: pd.DataFrame) -> int:
        time_col, validate = _KINDS[kind]
        key = "timestamp" if kind == "bars" else "seq"
        months = df[time_col].dt.strftime("%Y-%m")
        staged: list[tuple[Path, Path]] = []
        with self._lock:
            try:
                for (symbol, month), part in df.groupby([df["symbol"], months], sort=True):
                    path = self._partition(kind, str(symbol), str(month))
                    if path.exists():
                        old = pq.read_table(path).to_pandas()
                        old[time_col] = old[time_col].astype(TS_DTYPE)
                        part = pd.concat([old[~old[key].isin(part[key])], part]).sort_values(key)
                        part = validate(part)  # the merged partition must be valid too
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.parquet")
                    table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
                    pq.write_table(table, tmp, compression="zstd")
                    staged.append((tmp, path))
            except BaseException:
                for tmp, _ in staged:
                    tmp.unlink(missing_ok=True)
                raise
            written = 0
            for tmp, path in staged:
                written += tmp.stat().st_size
                os.replace(tmp, path)
        metrics.DATASET_BYTES.labels(kind=kind).inc(written)
        return written

    # ----------------------------------------------------------------- reading
    def _glob(self, kind: str, symbol: str) -> str:
        return str(self.root / kind / f"symbol={symbol}" / "*" / "*.parquet")

    def _query(self, kind: str, symbol: str, start: object, end: object) -> pd.DataFrame:
        time_col = _KINDS[kind][0]
        if not (self.root / kind / f"symbol={symbol}").is_dir():
            raise KeyError(f"no {kind} stored for symbol {symbol!r} under {self.root}")
        where, args = [], [self._glob(kind, symbol)]
        if (s := _ts(start)) is not None:
            where.append(f"{time_col} >= ?")
            args.append(s.to_pydatetime())
        if (e := _ts(end)) is not None:
            where.append(f"{time_col} < ?")
            args.append(e.to_pydatetime())
        cols = "timestamp, open, high, low, close, volume, symbol" if kind == "bars" else "seq, ts, price, qty, side, symbol"
        order = time_col if kind == "bars" else "seq"
        sql = f"SELECT {cols} FROM read_parquet(?, hive_partitioning=false)"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        with duckdb.connect() as con:
            con.execute("SET TimeZone='UTC'")
            df = con.sql(sql, params=args).to_arrow_table().to_pandas()
        df[time_col] = df[time_col].astype(TS_DTYPE)
        return df

    def load_bars(self, symbol: str, start: object = None, end: object = None) -> pd.DataFrame:
        """Bars of ``symbol`` with ``start <= timestamp < end`` (either bound optional)."""
        return self._query("bars", symbol, start, end)

    def load_trades(self, symbol: str, start: object = None, end: object = None) -> pd.DataFrame:
        """Trades of ``symbol`` with ``start <= ts < end``, ordered by ``seq``."""
        return self._query("trades", symbol, start, end)

    def symbols(self, kind: str = "bars") -> list[str]:
        """Symbols with stored ``kind`` data, sorted."""
        base = self.root / kind
        return sorted(p.name.split("=", 1)[1] for p in base.glob("symbol=*") if p.is_dir()) if base.is_dir() else []

    def query(self, sql: str) -> pd.DataFrame:
        """Run DuckDB SQL with views ``bars`` and ``trades`` over the whole store.

        Example: ``store.query("SELECT symbol, count(*) FROM bars GROUP BY 1")``.
        """
        with duckdb.connect() as con:
            con.execute("SET TimeZone='UTC'")
            for kind in _KINDS:
                if self.symbols(kind):
                    glob = str(self.root / kind / "*" / "*" / "*.parquet")
                    con.execute(f"CREATE VIEW {kind} AS SELECT * FROM read_parquet('{glob}', hive_partitioning=false)")
            return con.sql(sql).to_arrow_table().to_pandas()

    def summary(self) -> pd.DataFrame:
        """One row per stored (kind, symbol): rows, first/last time, bytes on disk."""
        rows = []
        for kind, (time_col, _) in _KINDS.items():
            for sym in self.symbols(kind):
                files = list((self.root / kind / f"symbol={sym}").glob("*/*.parquet"))
                with duckdb.connect() as con:
                    con.execute("SET TimeZone='UTC'")
                    n, first, last = con.execute(
                        f"SELECT count(*), min({time_col}), max({time_col}) FROM read_parquet(?, hive_partitioning=false)",
                        [self._glob(kind, sym)],
                    ).fetchone()
                rows.append({"kind": kind, "symbol": sym, "rows": n, "first": first, "last": last,
                             "bytes": sum(f.stat().st_size for f in files)})
        return pd.DataFrame(rows, columns=["kind", "symbol", "rows", "first", "last", "bytes"])


def default_store() -> BarStore:
    """The store at ``settings().store_dir`` (``data/store`` unless ``SPARK_STORE`` is set)."""
    return BarStore(settings().store_dir)


def load_bars(symbol: str, start: object = None, end: object = None, store: BarStore | None = None) -> pd.DataFrame:
    """Bars of ``symbol`` from the default store. See :meth:`BarStore.load_bars`."""
    return (store or default_store()).load_bars(symbol, start, end)


def load_sample(symbol: str = "BTCUSDT", n: int | None = None, store: BarStore | None = None) -> pd.DataFrame:
    """Sample bars of ``symbol`` (``make data`` generates them), the last ``n`` if given.

    Raises a ``FileNotFoundError`` that says how to create the sample when it is missing.
    """
    store = store or default_store()
    try:
        bars = store.load_bars(symbol)
    except KeyError as exc:
        raise FileNotFoundError(f"sample bars for {symbol!r} missing in {store.root}: run `make data` "
                                f"(or `spark data generate --sample`)") from exc
    return bars.iloc[-n:].reset_index(drop=True) if n else bars


def generate_sample(store: BarStore | None = None, n: int = 43_200, seed: int = 42,
                    symbols: tuple[str, ...] = _SAMPLE_SYMBOLS, force: bool = False) -> list[str]:
    """Write the seeded sample (30 days of 1-minute bars per symbol) unless already present."""
    from spark_research.data.synthetic import generate_bars

    store = store or default_store()
    made = []
    for sym in symbols:
        if not force and sym in store.symbols("bars"):
            continue
        store.write_bars(generate_bars(sym, n=n, seed=seed))
        made.append(sym)
    return made


__all__ = ["BarStore", "DataValidationError", "default_store", "load_bars", "load_sample", "generate_sample"]
