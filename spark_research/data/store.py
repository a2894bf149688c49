"""Parquet store of bars and trades, partitioned by symbol and month, queried with DuckDB.

Layout under the store root (a local path, a shared mount, or ``s3://bucket/prefix``)::

    bars/symbol=BTCUSDT/month=2024-01/data.parquet     zstd, sorted by time, row groups of 32k rows
    bars/symbol=BTCUSDT/month=2024-01/_meta.json       rows, bytes, first/last time of that file
    trades/symbol=BTCUSDT/month=2024-01/data.parquet

Writes validate everything first, serialise every new partition in memory, then publish each
one atomically (temp file + ``os.replace`` locally, one PUT on an object store), so a bad input
never half-writes the store and a killed writer leaves each partition either old or new, never
torn. ``_meta.json`` is written right after its partition; :meth:`BarStore.summary` trusts it
only when its ``bytes`` match the data file, and otherwise reads the Parquet footer (metadata,
never the data), so ``spark data list`` stays fast and right even after a crash between the two.

Reading never materialises more than asked: :meth:`BarStore.load_bars` takes a list of symbols,
a half-open time range and a column list, skips month partitions outside the range, and lets
DuckDB push the projection and the time filter down to Parquet row-group statistics.
:meth:`BarStore.duckdb` gives a connection with ``bars`` and ``trades`` views over the whole
store for ad-hoc SQL, and :meth:`BarStore.iter_batches` streams Arrow record batches.

Example::

    >>> import tempfile
    >>> from spark_research.data import BarStore, generate_bars
    >>> store = BarStore(tempfile.mkdtemp())
    >>> store.write_bars(generate_bars("BTCUSDT", n=500, seed=1)) > 0
    True
    >>> len(store.load_bars("BTCUSDT", start="2024-01-01 01:00"))
    440
    >>> store.load_bars(["BTCUSDT"], columns=["timestamp", "close"]).shape
    (500, 2)
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spark_research import metrics
from spark_research.config import settings
from spark_research.data.fs import StoreAccessError, StoreLocation, describe_error, is_url, open_root, write_atomic
from spark_research.data.schema import (BAR_COLUMNS, TRADE_COLUMNS, TS_DTYPE, DataValidationError, validate_bars,
                                        validate_trades)

_KINDS = {"bars": ("timestamp", validate_bars), "trades": ("ts", validate_trades)}
_COLUMNS = {"bars": BAR_COLUMNS, "trades": TRADE_COLUMNS}
_SQL_TYPES = {"bars": "timestamp TIMESTAMPTZ, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, "
                      "symbol VARCHAR",
              "trades": "seq BIGINT, ts TIMESTAMPTZ, price DOUBLE, qty DOUBLE, side VARCHAR, symbol VARCHAR"}
_SAMPLE_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
DATA_FILE = "data.parquet"
META_FILE = "_meta.json"
#: Rows per Parquet row group: a month of 1-minute bars is two groups, big enough for fast scans,
#: small enough that a time filter inside a month skips half of it by the groups' min/max.
ROW_GROUP_ROWS = 32_768


def _ts(value: object) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _check_symbol(symbol: object) -> None:
    """A symbol names a directory (``symbol=X``): no path separators, not empty, no leading dot."""
    if not isinstance(symbol, str) or not symbol or symbol[0] == "." or "/" in symbol or "\\" in symbol:
        raise DataValidationError(symbol, None, "symbol", symbol,
                                  "a stored symbol is a plain name (no '/', '\\', leading '.'), e.g. BTCUSDT")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


@dataclass(frozen=True)
class Partition:
    """One ``kind/symbol=/month=`` partition: where its data file is and how big it is."""

    kind: str
    symbol: str
    month: str  #: ``YYYY-MM``
    path: str  #: data file inside the store's filesystem
    bytes: int


class BarStore:
    """A Parquet dataset of bars and trades under ``root`` (see module docstring).

    ``root`` is a directory or an fsspec URL (``s3://bucket/prefix``); ``storage_options`` go to
    fsspec (e.g. ``{"key": ..., "secret": ..., "client_kwargs": {"endpoint_url": ...}}``). A remote
    root is checked on construction: a missing bucket or refused credentials raise
    :class:`~spark_research.data.fs.StoreAccessError` naming the URL and the bucket. A store
    pickles by root and ``storage_options`` (credentials given there travel with it; leave them
    to the environment of the workers to keep them out of task graphs), so Dask workers open it
    themselves and load only the bars they need.
    """

    def __init__(self, root: str | os.PathLike[str], storage_options: dict[str, Any] | None = None):
        self._storage_options = storage_options
        self._loc: StoreLocation = open_root(root, storage_options)
        #: the root as given: a ``Path`` for a local store, the URL string for a remote one
        self.root: Path | str = Path(self._loc.path) if self._loc.is_local else self._loc.url
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self._loc.url if not self._loc.is_local else self._loc.path,
                "storage_options": self._storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["root"], state["storage_options"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"BarStore({str(self.root)!r})"

    @property
    def url(self) -> str:
        """The root as a string DuckDB and fsspec accept (absolute path or ``s3://...``)."""
        return self._loc.url

    @property
    def fs(self):  # noqa: ANN201 - fsspec.AbstractFileSystem
        """The fsspec filesystem the store lives on."""
        return self._loc.fs

    # ----------------------------------------------------------------- writing
    def write_bars(self, bars: pd.DataFrame, symbol: str | None = None) -> int:
        """Validate and upsert bars (same timestamp: new row wins). Returns bytes written."""
        return self._write("bars", validate_bars(bars, symbol))

    def write_trades(self, trades: pd.DataFrame, symbol: str | None = None) -> int:
        """Validate and upsert trades (same ``seq``: new row wins). Returns bytes written."""
        return self._write("trades", validate_trades(trades, symbol))

    def _partition_path(self, kind: str, symbol: str, month: str) -> str:
        return self._loc.join(kind, f"symbol={symbol}", f"month={month}", DATA_FILE)

    def _read_partition(self, kind: str, path: str) -> pd.DataFrame | None:
        fs = self._loc.fs
        if not self._loc.is_local:
            fs.invalidate_cache(path)  # another process may have written it: no stale listing may hide it
        try:
            with fs.open(path, "rb") as fh:
                return pq.read_table(fh).to_pandas()
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise describe_error(self._loc, path, exc) from exc

    def _write(self, kind: str, df: pd.DataFrame) -> int:
        time_col, validate = _KINDS[kind]
        key = "timestamp" if kind == "bars" else "seq"
        for sym in df["symbol"].unique():
            _check_symbol(sym)
        months = df[time_col].dt.year * 100 + df[time_col].dt.month  # strftime costs 40 ms a month of bars
        with self._lock:
            staged: list[tuple[str, bytes, dict[str, Any]]] = []
            for (symbol, month), part in df.groupby([df["symbol"], months], sort=True):
                path = self._partition_path(kind, str(symbol), f"{month // 100:04d}-{month % 100:02d}")
                old = self._read_partition(kind, path)
                if old is not None:
                    old[time_col] = old[time_col].astype(TS_DTYPE)
                    part = pd.concat([old[~old[key].isin(part[key])], part]).sort_values(key)
                    part = validate(part)  # the merged partition must be valid too
                staged.append((path, *_serialise(kind, part.reset_index(drop=True))))
            # everything validated and serialised: only now does the store change
            written = 0
            for path, data, meta in staged:
                write_atomic(self._loc, path, data)
                write_atomic(self._loc, path.rsplit("/", 1)[0] + "/" + META_FILE, json.dumps(meta).encode())
                written += len(data)
        metrics.DATASET_BYTES.labels(kind=kind).inc(written)
        return written

    # ----------------------------------------------------------------- listing
    def symbols(self, kind: str = "bars") -> list[str]:
        """Symbols with stored ``kind`` data, sorted."""
        base = self._loc.join(kind)
        if self._loc.is_local:
            return sorted(p.name.split("=", 1)[1] for p in Path(base).glob("symbol=*") if p.is_dir()) \
                if os.path.isdir(base) else []
        try:
            entries = self._loc.fs.ls(base, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1].split("=", 1)[1] for e in entries
                      if e.rstrip("/").rsplit("/", 1)[-1].startswith("symbol="))

    def partitions(self, kind: str = "bars", symbols: Sequence[str] | None = None) -> list[Partition]:
        """Every stored partition of ``kind`` (of ``symbols`` if given), by symbol then month."""
        base = self._loc.join(kind)
        parts: list[Partition] = []
        if self._loc.is_local:
            if not os.path.isdir(base):
                return []
            sym_dirs = [f"symbol={s}" for s in symbols] if symbols is not None else sorted(os.listdir(base))
            for sd in sym_dirs:
                sdir = os.path.join(base, sd)
                if not sd.startswith("symbol=") or not os.path.isdir(sdir):
                    continue
                for md in sorted(os.listdir(sdir)):
                    f = os.path.join(sdir, md, DATA_FILE)
                    try:
                        size = os.stat(f).st_size
                    except FileNotFoundError:
                        continue
                    parts.append(Partition(kind, sd[7:], md.split("=", 1)[-1], f, size))
            return parts
        prefixes = [self._loc.join(kind, f"symbol={s}") for s in symbols] if symbols is not None else [base]
        for prefix in prefixes:
            self._loc.fs.invalidate_cache(prefix)  # listings change under us (other writers)
            try:
                found = self._loc.fs.find(prefix, detail=True)
            except FileNotFoundError:
                continue
            except PermissionError as exc:
                raise describe_error(self._loc, prefix, exc) from exc
            for path, info in sorted(found.items()):
                bits = path.split("/")
                if bits[-1] != DATA_FILE or not bits[-3].startswith("symbol="):
                    continue
                parts.append(Partition(kind, bits[-3][7:], bits[-2].split("=", 1)[-1], path, int(info["size"])))
        return parts

    def _partition_meta(self, parts: list[Partition]) -> list[dict[str, Any]]:
        """Rows and time range of each partition: its ``_meta.json`` if it matches the data file,
        else the Parquet footer (row-group statistics; the data pages are never read)."""
        meta_paths = [p.path.rsplit("/", 1)[0] + "/" + META_FILE for p in parts]
        raw: dict[str, bytes] = {}
        if self._loc.is_local:
            for mp in meta_paths:
                try:
                    with open(mp, "rb") as fh:
                        raw[mp] = fh.read()
                except FileNotFoundError:
                    pass
        elif meta_paths:  # one concurrent batch of GETs, not a round trip per partition
            got = self._loc.fs.cat(meta_paths, on_error="return")
            raw = {self._loc.fs._strip_protocol(k): v for k, v in got.items() if isinstance(v, bytes)}
        out = []
        for p, mp in zip(parts, meta_paths):
            try:
                meta = json.loads(raw[mp]) if mp in raw else None
            except ValueError:
                meta = None
            if meta is None or meta.get("bytes") != p.bytes:
                meta = self._footer_meta(p)
            out.append(meta)
        return out

    def _footer_meta(self, p: Partition) -> dict[str, Any]:
        time_col = _KINDS[p.kind][0]
        with self._loc.fs.open(p.path, "rb") as fh:
            md = pq.ParquetFile(fh).metadata
        idx = md.schema.names.index(time_col)
        lo, hi = [], []
        for i in range(md.num_row_groups):
            st = md.row_group(i).column(idx).statistics
            if st is not None and st.has_min_max:
                lo.append(pd.Timestamp(st.min))
                hi.append(pd.Timestamp(st.max))
        return {"rows": md.num_rows, "bytes": p.bytes,
                "first_ns": _ts(min(lo)).value if lo else None, "last_ns": _ts(max(hi)).value if hi else None}

    def summary(self) -> pd.DataFrame:
        """One row per stored (kind, symbol): rows, first/last time, bytes on disk, partitions.

        Read from each partition's metadata, not from the data: fast on a universe store.
        """
        rows = []
        for kind in _KINDS:
            parts = self.partitions(kind)
            metas = self._partition_meta(parts)
            by_sym: dict[str, list[tuple[Partition, dict[str, Any]]]] = {}
            for p, m in zip(parts, metas):
                by_sym.setdefault(p.symbol, []).append((p, m))
            for sym, items in by_sym.items():
                firsts = [m["first_ns"] for _, m in items if m.get("first_ns") is not None]
                lasts = [m["last_ns"] for _, m in items if m.get("last_ns") is not None]
                rows.append({"kind": kind, "symbol": sym, "rows": sum(m["rows"] for _, m in items),
                             "first": pd.Timestamp(min(firsts), tz="UTC") if firsts else pd.NaT,
                             "last": pd.Timestamp(max(lasts), tz="UTC") if lasts else pd.NaT,
                             "bytes": sum(p.bytes for p, _ in items), "partitions": len(items)})
        return pd.DataFrame(rows, columns=["kind", "symbol", "rows", "first", "last", "bytes", "partitions"])

    # ----------------------------------------------------------------- reading
    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.execute("SET TimeZone='UTC'")
        if not self._loc.is_local:
            con.register_filesystem(self._loc.fs)
        return con

    def _files(self, kind: str, symbols: Sequence[str], start: pd.Timestamp | None,
               end: pd.Timestamp | None) -> list[str]:
        """Data files of ``symbols`` (in that order, months ascending) that can hold rows in range."""
        first_month = start.strftime("%Y-%m") if start is not None else None
        last_month = (end - pd.Timedelta(1, "ns")).strftime("%Y-%m") if end is not None else None
        by_sym: dict[str, list[Partition]] = {}
        for p in self.partitions(kind, symbols):
            by_sym.setdefault(p.symbol, []).append(p)
        missing = [s for s in symbols if s not in by_sym]
        if missing:
            raise KeyError(f"no {kind} stored for symbol {missing[0]!r} under {self.root}"
                           + (f" (nor {missing[1:]})" if len(missing) > 1 else ""))
        files = []
        for sym in symbols:
            for p in by_sym[sym]:
                if (first_month is None or p.month >= first_month) and (last_month is None or p.month <= last_month):
                    files.append(self._loc.to_url(p.path))
        return files

    def _select(self, kind: str, symbols: str | Sequence[str] | None, start: object, end: object,
                columns: Sequence[str] | None) -> tuple[str | None, list[Any], list[str]]:
        """SQL (None when no partition can match) and params for a read; the columns it returns."""
        time_col = _KINDS[kind][0]
        allowed = _COLUMNS[kind]
        cols = list(allowed) if columns is None else list(columns)
        for c in cols:
            if c not in allowed:
                raise ValueError(f"columns: unknown {kind} column {c!r} (known: {list(allowed)})")
        if not cols:
            raise ValueError("columns: empty list (name at least one column, or pass None for all)")
        if symbols is None:
            syms = self.symbols(kind)
        elif isinstance(symbols, str):
            syms = [symbols]
        else:
            syms = list(dict.fromkeys(symbols))
        for sym in syms:
            _check_symbol(sym)
        s, e = _ts(start), _ts(end)
        if s is not None and e is not None and e < s:
            raise ValueError(f"end {e} is before start {s}")
        files = self._files(kind, syms, s, e)
        if not files:
            return None, [], cols
        where, params = [], [files]
        if s is not None:
            where.append(f"{time_col} >= ?")
            params.append(s.to_pydatetime())
        if e is not None:
            where.append(f"{time_col} < ?")
            params.append(e.to_pydatetime())
        sql = f"SELECT {', '.join(cols)} FROM read_parquet(?, hive_partitioning=false)"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if kind == "trades":
            sql += " ORDER BY symbol, seq"
        # bars: files are listed symbol by symbol, months ascending, each sorted by time, and DuckDB
        # keeps insertion order (preserve_insertion_order), so no sort is needed on a universe
        return sql, params, cols

    @staticmethod
    def _empty(cols: list[str]) -> pd.DataFrame:
        dtypes = {"timestamp": TS_DTYPE, "ts": TS_DTYPE, "seq": "int64", "symbol": object, "side": object}
        return pd.DataFrame({c: pd.Series([], dtype=dtypes.get(c, "float64")) for c in cols})

    def _load(self, kind: str, symbols: str | Sequence[str] | None, start: object, end: object,
              columns: Sequence[str] | None) -> pd.DataFrame:
        sql, params, cols = self._select(kind, symbols, start, end, columns)
        if sql is None:
            return self._empty(cols)
        with self._connect() as con:
            try:
                df = con.sql(sql, params=params).to_arrow_table().to_pandas()
            except duckdb.IOException as exc:
                raise StoreAccessError(f"store {self.url}: reading {kind}: {exc}") from exc
        time_col = _KINDS[kind][0]
        if time_col in df.columns:
            df[time_col] = df[time_col].astype(TS_DTYPE)
        return df

    def load_bars(self, symbols: str | Sequence[str] | None, start: object = None, end: object = None,
                  columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Bars with ``start <= timestamp < end`` (either bound optional).

        ``symbols`` is one symbol (as before), a list (rows come symbol by symbol in that order,
        each in time order) or None for every stored symbol; ``columns`` picks columns (default
        all). Only the month partitions that can hold the range are opened, and DuckDB reads only
        the named columns and the row groups whose time statistics overlap the range.
        An unknown symbol raises ``KeyError`` naming it.

        Example: ``store.load_bars(["BTCUSDT", "ETHUSDT"], "2024-01-02", "2024-01-03", ["timestamp", "close"])``.
        """
        return self._load("bars", symbols, start, end, columns)

    def load_trades(self, symbol: str | Sequence[str], start: object = None, end: object = None,
                    columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Trades of ``symbol`` with ``start <= ts < end``, ordered by ``seq``."""
        return self._load("trades", symbol, start, end, columns)

    def iter_batches(self, symbols: str | Sequence[str] | None = None, start: object = None, end: object = None,
                     columns: Sequence[str] | None = None, batch_rows: int = 65_536,
                     kind: str = "bars") -> Iterator[pa.RecordBatch]:
        """Stream the rows :meth:`load_bars` would return as Arrow ``RecordBatch``es of at most
        ``batch_rows`` rows; memory stays at a few batches whatever the range.

        Example::

            for batch in store.iter_batches(["BTCUSDT", "ETHUSDT"], columns=["symbol", "close"]):
                consume(batch)
        """
        if not isinstance(batch_rows, int) or batch_rows <= 0:
            raise ValueError(f"batch_rows must be a positive int, got {batch_rows!r}")
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
        sql, params, _ = self._select(kind, symbols, start, end, columns)
        if sql is None:
            return
        con = self._connect()
        try:
            reader = con.sql(sql, params=params).to_arrow_reader(batch_rows)
            yield from reader
        finally:
            con.close()

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection (TimeZone UTC) with views ``bars`` and ``trades`` over the whole store.

        Nothing is read until a query runs, and then only the columns and row groups it needs.
        The caller closes the connection (or uses it in a ``with`` block). The macro
        ``utc_bucket(timestamp, INTERVAL 15 minute)`` resamples to any fixed interval (the bucket's
        start, UTC, as a plain ``TIMESTAMP``), far faster than ``time_bucket`` on a ``TIMESTAMPTZ``.

        Example::

            con = store.duckdb()
            daily = con.sql("SELECT symbol, utc_bucket(timestamp, INTERVAL 1 day) AS day, "
                            "arg_max(close, timestamp) AS close FROM bars GROUP BY ALL").df()
        """
        con = self._connect()
        # DuckDB's time_bucket/date_trunc on TIMESTAMPTZ go through ICU per row (~20x slower than
        # integer arithmetic on a universe scan); bucketing the epoch is exact in UTC
        con.execute("CREATE MACRO utc_bucket(ts, step) AS make_timestamp(epoch_ns(ts) // "
                    "epoch_ns(TIMESTAMP '1970-01-01' + step) * epoch_ns(TIMESTAMP '1970-01-01' + step) // 1000)")
        for kind in _KINDS:
            if self.symbols(kind):
                glob = self._loc.to_url(self._loc.join(kind, "*", "*", DATA_FILE))
                con.execute(f"CREATE VIEW {kind} AS SELECT {', '.join(_COLUMNS[kind])} "
                            f"FROM read_parquet({_sql_str(glob)}, hive_partitioning=false)")
            else:  # an empty, typed view: queries on an empty store return no rows instead of failing
                con.execute(f"CREATE VIEW {kind} AS SELECT * FROM (SELECT UNNEST(s) FROM "
                            f"(SELECT NULL::STRUCT({_SQL_TYPES[kind]}) AS s)) WHERE false")
        return con

    def query(self, sql: str) -> pd.DataFrame:
        """Run DuckDB SQL with views ``bars`` and ``trades`` over the whole store (see :meth:`duckdb`).

        Example: ``store.query("SELECT symbol, count(*) FROM bars GROUP BY 1")``.
        """
        with self.duckdb() as con:
            return con.sql(sql).to_arrow_table().to_pandas()


def _serialise(kind: str, part: pd.DataFrame) -> tuple[bytes, dict[str, Any]]:
    """A partition frame as zstd Parquet bytes (sorted-by-key metadata, row-group statistics)
    and the ``_meta.json`` that goes with it."""
    time_col = _KINDS[kind][0]
    key = "timestamp" if kind == "bars" else "seq"
    table = pa.Table.from_pandas(part, preserve_index=False)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd", row_group_size=ROW_GROUP_ROWS, write_statistics=True,
                   sorting_columns=[pq.SortingColumn(table.schema.get_field_index(key))])
    data = buf.getvalue().to_pybytes()
    times = part[time_col]
    meta = {"rows": len(part), "bytes": len(data),
            "first_ns": int(times.iloc[0].value) if len(part) else None,
            "last_ns": int(times.iloc[-1].value) if len(part) else None}
    if kind == "trades" and len(part):
        meta["first_ns"], meta["last_ns"] = int(times.min().value), int(times.max().value)
    return data, meta


def default_store() -> BarStore:
    """The store at ``SPARK_STORE`` (a path or an ``s3://bucket/prefix`` URL), else ``data/store``."""
    env = os.environ.get("SPARK_STORE")
    if env and is_url(env):
        return BarStore(env)
    return BarStore(settings().store_dir)


def load_bars(symbols: str | Sequence[str] | None, start: object = None, end: object = None,
              columns: Sequence[str] | None = None, store: BarStore | None = None) -> pd.DataFrame:
    """Bars from the default store (or ``store``). See :meth:`BarStore.load_bars`.

    Example: ``load_bars(["BTCUSDT", "ETHUSDT"], "2024-01-02", columns=["timestamp", "symbol", "close"])``.
    """
    if isinstance(columns, BarStore):  # the older signature load_bars(symbol, start, end, store)
        columns, store = None, columns
    return (store or default_store()).load_bars(symbols, start, end, columns)


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


__all__ = ["BarStore", "DataValidationError", "Partition", "StoreAccessError", "default_store", "load_bars",
           "load_sample", "generate_sample", "ROW_GROUP_ROWS"]
