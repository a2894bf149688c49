"""What can be exported: a small registry of sources, each yielding Arrow record batches.

A source is a function of validated keyword parameters returning a :class:`Source`: an
Arrow schema, an iterator of record batches (read lazily, chunk by chunk, so memory stays
flat whatever the row count) and, when cheap to know, the total row count for progress.

Registered sources (``what`` in an export request):

==================  ==========================================================================
``bars``            OHLCV bars from the Parquet store
``trades``          trade prints from the Parquet store
``backtest_trades`` round trips of a backtest run on stored (or seeded synthetic) bars
``synthetic_trades`` seeded synthetic fills (demos, tests, benchmarks), generated chunk by chunk
``sweep_results``   optimizer sweep results (``var/sweeps/<id>/results.parquet``)
``fills``           paper/live fills (Parquet under ``var/gates/fills``)
``audit_log``       the gates' append-only audit log (``var/audit/gates.db``, SQLite)
``ingested_trades`` trades stored by the stream ingest (``var/ingest/<exchange>-<symbol>.sqlite``)
==================  ==========================================================================

Example::

    >>> from spark_research.export.sources import open_source
    >>> src = open_source("synthetic_trades", {"rows": 1_000, "seed": 1})
    >>> src.total_rows, src.schema.names[:3]
    (1000, ['ts', 'symbol', 'side'])
    >>> sum(b.num_rows for b in src.batches)
    1000
"""
from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from spark_research.config import settings
from spark_research.export.errors import ExportParamError, ExportSourceError

#: Rows per record batch read from a source.
BATCH_ROWS = 65_536


@dataclass
class Source:
    """Rows to export: ``schema``, lazily read ``batches`` and ``total_rows`` (None if unknown).

    ``context`` carries source-specific extras a report needs (a backtest's stats and equity).
    """

    name: str
    schema: pa.Schema
    batches: Iterable[pa.RecordBatch]
    total_rows: int | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceParam:
    """One accepted parameter of a source: name, type, default, whether required."""

    name: str
    kind: type | tuple[type, ...]
    default: Any = None
    required: bool = False
    help: str = ""
    low: float | None = None  #: inclusive lower bound of a number
    high: float | None = None  #: inclusive upper bound of a number


@dataclass(frozen=True)
class SourceSpec:
    """A registered source: its function, parameters and one-line description."""

    name: str
    fn: Callable[..., Source]
    params: tuple[SourceParam, ...]
    description: str


#: ``what`` -> source, filled by :func:`register_source`.
SOURCES: dict[str, SourceSpec] = {}


def register_source(name: str, params: tuple[SourceParam, ...] = (), description: str = "") -> Callable:
    """Decorator registering ``fn(**params) -> Source`` as export source ``name``.

    Example::

        >>> @register_source("ones", (SourceParam("rows", int, 3),), "a column of ones")
        ... def ones(rows):
        ...     t = pa.table({"one": [1] * rows})
        ...     return Source("ones", t.schema, t.to_batches(), rows)
        >>> open_source("ones", {}).total_rows
        3
        >>> _ = SOURCES.pop("ones")
    """

    def deco(fn: Callable[..., Source]) -> Callable[..., Source]:
        SOURCES[name] = SourceSpec(name, fn, tuple(params), description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def _check_type(field_name: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ExportParamError(field_name, value, f"must be of type {' or '.join(k.__name__ for k in kinds)}")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds):
        raise ExportParamError(field_name, value, f"must be of type {' or '.join(k.__name__ for k in kinds)}")
    return value


def validate_params(what: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``params`` against source ``what``; return them with defaults filled in.

    Raises :class:`ExportParamError` naming the field (``what`` or ``parameters.<name>``).

    Example::

        >>> validate_params("synthetic_trades", {"rows": 10})["seed"]
        42
    """
    if not isinstance(what, str) or what not in SOURCES:
        raise ExportParamError("what", what, f"must be one of {sorted(SOURCES)}")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ExportParamError("parameters", params, "must be a JSON object")
    spec = SOURCES[what]
    known = {p.name: p for p in spec.params}
    for key in params:
        if key not in known:
            raise ExportParamError(f"parameters.{key}", params[key],
                                   f"unknown parameter of {what!r}; accepted: {sorted(known)}")
    out: dict[str, Any] = {}
    for p in spec.params:
        if params.get(p.name) is None:
            if p.required:
                raise ExportParamError(f"parameters.{p.name}", None, f"required by {what!r}")
            out[p.name] = p.default
        else:
            value = out[p.name] = _check_type(f"parameters.{p.name}", params[p.name], p.kind)
            if isinstance(value, (int, float)) and not (
                    (p.low is None or value >= p.low) and (p.high is None or value <= p.high)):
                raise ExportParamError(f"parameters.{p.name}", value, f"must be in [{p.low}, {p.high}]")
    return out


def open_source(what: str, params: Mapping[str, Any] | None = None) -> Source:
    """Validate ``params`` and open source ``what`` (rows are read when ``batches`` is iterated)."""
    clean = validate_params(what, params)
    return SOURCES[what].fn(**clean)


def from_table(name: str, table: pa.Table | pd.DataFrame, batch_rows: int = BATCH_ROWS,
               context: dict[str, Any] | None = None) -> Source:
    """A source over an in-memory table or DataFrame (already small enough to hold).

    Example::

        >>> from_table("t", pd.DataFrame({"a": [1, 2]})).total_rows
        2
    """
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    return Source(name, table.schema, table.to_batches(max_chunksize=batch_rows), table.num_rows, context or {})


def from_parquet(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], name: str = "parquet",
                 columns: list[str] | None = None, batch_rows: int = BATCH_ROWS) -> Source:
    """A source streaming Parquet file(s) batch by batch; the row count comes from the footers.

    Not registered for HTTP use (it takes file paths); the library, CLI and benchmark use it.

    Example::

        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "t.parquet"
        >>> pq.write_table(pa.table({"a": [1, 2, 3]}), path)
        >>> from_parquet(path).total_rows
        3
    """
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not files:
        raise ExportSourceError(f"no Parquet files for source {name!r}")
    metas = [pq.ParquetFile(f) for f in files]
    schema = metas[0].schema_arrow if columns is None else pa.schema([metas[0].schema_arrow.field(c) for c in columns])
    total = sum(m.metadata.num_rows for m in metas)

    def batches() -> Iterator[pa.RecordBatch]:
        # Row group by row group: ParquetFile.iter_batches keeps growing Arrow allocations with
        # the row count (about +20 MB per million rows here), read_row_group stays flat. Memory
        # is bounded by one decoded row group, a property of the file, not of its length.
        for m in metas:
            for i in range(m.metadata.num_row_groups):
                group = m.read_row_group(i, columns=columns)
                for b in group.to_batches(max_chunksize=batch_rows):
                    yield b.cast(schema) if b.schema != schema else b
                del group

    return Source(name, schema, batches(), total)


# ------------------------------------------------------------------------- store: bars, trades
def _utc(value: str | None, field_name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ExportParamError(field_name, value, f"not a timestamp: {exc}") from exc
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _store_source(kind: str, time_col: str, symbol: str | None, start: str | None, end: str | None) -> Source:
    root = settings().store_dir / kind
    lo, hi = _utc(start, "parameters.start"), _utc(end, "parameters.end")
    if lo is not None and hi is not None and hi <= lo:
        raise ExportParamError("parameters.end", end, f"must be after start {start!r}")
    symbols = sorted(p.name.split("=", 1)[1] for p in root.glob("symbol=*")) if root.is_dir() else []
    if symbol is not None:
        if symbol not in symbols:
            raise ExportParamError("parameters.symbol", symbol, f"no {kind} stored; stored symbols: {symbols}")
        symbols = [symbol]
    files: list[Path] = []
    for sym in symbols:
        for part in sorted((root / f"symbol={sym}").glob("month=*")):
            month = pd.Timestamp(part.name.split("=", 1)[1] + "-01", tz="UTC")
            if (hi is not None and month >= hi) or (lo is not None and month + pd.offsets.MonthBegin(1) <= lo):
                continue  # partition entirely outside [start, end)
            files.extend(sorted(part.glob("*.parquet")))
    if not files:
        raise ExportSourceError(f"no {kind} in {root} for symbol={symbol!r} start={start!r} end={end!r}")
    src = from_parquet(files, name=kind)
    if lo is None and hi is None:
        return src
    def keep(b: pa.RecordBatch) -> pa.RecordBatch:
        mask = None
        col = b.column(time_col)
        if lo is not None:
            mask = pc.greater_equal(col, pa.scalar(lo.to_pydatetime(), col.type))
        if hi is not None:
            m2 = pc.less(col, pa.scalar(hi.to_pydatetime(), col.type))
            mask = m2 if mask is None else pc.and_(mask, m2)
        return b.filter(mask)

    # With a time filter the footers cannot give the total: count it exactly with one cheap
    # pass over the time column only (constant memory, a few ms per million rows).
    total = 0
    for f in files:
        for b in pq.ParquetFile(f).iter_batches(batch_size=BATCH_ROWS, columns=[time_col]):
            total += keep(b).num_rows
    return Source(kind, src.schema, (kb for b in src.batches if (kb := keep(b)).num_rows), total)


_STORE_PARAMS = (
    SourceParam("symbol", str, None, help="one symbol (default: all stored symbols)"),
    SourceParam("start", str, None, help="inclusive start time, UTC"),
    SourceParam("end", str, None, help="exclusive end time, UTC"),
)


@register_source("bars", _STORE_PARAMS, "OHLCV bars from the Parquet store")
def bars_source(symbol: str | None, start: str | None, end: str | None) -> Source:
    """Stored bars of ``symbol`` (or all symbols) with ``start <= timestamp < end``."""
    return _store_source("bars", "timestamp", symbol, start, end)


@register_source("trades", _STORE_PARAMS, "trade prints from the Parquet store")
def trades_source(symbol: str | None, start: str | None, end: str | None) -> Source:
    """Stored trade prints of ``symbol`` (or all symbols) with ``start <= ts < end``."""
    return _store_source("trades", "ts", symbol, start, end)


# ------------------------------------------------------------------------- synthetic fills
SYNTHETIC_SCHEMA = pa.schema([
    ("ts", pa.timestamp("ns", tz="UTC")), ("symbol", pa.string()), ("side", pa.string()),
    ("price", pa.float64()), ("qty", pa.float64()), ("fee", pa.float64()), ("id", pa.int64()),
])


def synthetic_fill_batches(rows: int, seed: int = 42, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
                           batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Seeded fills (``ts, symbol, side, price, qty, fee, id``) generated one batch at a time.

    Batch *i* draws from its own generator seeded ``(seed, i)``: the same ``rows`` and
    ``seed`` give the same bytes whatever the consumer does.
    """
    from spark_research.data.synthetic import generate_trades

    t0 = pd.Timestamp("2024-01-01")  # naive: generate_trades localises to UTC
    done, i = 0, 0
    while done < rows:
        n = min(batch_rows, rows - done)
        sym = symbols[i % len(symbols)]
        tr = generate_trades(sym, n=n, seed=seed * 1_000_003 + i, start=t0 + pd.Timedelta(minutes=25 * i))  # 65,536 fills at 50/s span < 25 min
        fee = np.round(tr["price"].to_numpy() * tr["qty"].to_numpy() * 0.0004, 8)
        yield pa.record_batch([
            pa.array(tr["ts"].to_numpy(dtype="datetime64[ns]"), pa.timestamp("ns")).cast(SYNTHETIC_SCHEMA.field("ts").type),
            pa.array(tr["symbol"].to_numpy(dtype=object), pa.string()),
            pa.array(tr["side"].to_numpy(dtype=object), pa.string()),
            pa.array(tr["price"].to_numpy()), pa.array(tr["qty"].to_numpy()), pa.array(fee),
            pa.array(np.arange(done + 1, done + n + 1, dtype=np.int64)),
        ], schema=SYNTHETIC_SCHEMA)
        done += n
        i += 1


@register_source("synthetic_trades", (
    SourceParam("rows", int, 10_000, help="number of fills", low=1, high=100_000_000),
    SourceParam("seed", int, 42, low=0),
    SourceParam("fail_after", int, None, help="raise after this many rows (fault drills)", low=0),
), "seeded synthetic fills for demos, tests and benchmarks")
def synthetic_trades_source(rows: int, seed: int, fail_after: int | None) -> Source:
    """``rows`` seeded fills; ``fail_after`` makes the source fail part-way (fault drills)."""
    def batches() -> Iterator[pa.RecordBatch]:
        done = 0
        for b in synthetic_fill_batches(rows, seed):
            if fail_after is not None and done + b.num_rows > fail_after:
                raise ExportSourceError(f"synthetic_trades: injected failure after {done} rows (fail_after={fail_after})")
            done += b.num_rows
            yield b

    return Source("synthetic_trades", SYNTHETIC_SCHEMA, batches(), rows)


# ------------------------------------------------------------------------- backtest trades
@register_source("backtest_trades", (
    # a name over HTTP; in-process (a notebook's render_report) also the Strategy class itself
    SourceParam("strategy", (str, type), "sma_cross"),
    SourceParam("symbol", str, "BTCUSDT"),
    SourceParam("params", dict, None, help="strategy parameters (default: the strategy's defaults)"),
    SourceParam("start", str, None), SourceParam("end", str, None),
    SourceParam("fees", float, 0.001, low=0, high=0.5), SourceParam("slippage", float, 0.0005, low=0, high=0.5),
    SourceParam("direction", str, "longonly", help="longonly, shortonly or both"),
    SourceParam("synthetic_bars", int, None, help="use this many seeded synthetic bars instead of the store",
                low=100, high=5_000_000),
    SourceParam("seed", int, 42, low=0),
), "round trips of a backtest on stored or seeded synthetic bars")
def backtest_trades_source(strategy: Any, symbol: str, params: dict | None, start: str | None, end: str | None,
                           fees: float, slippage: float, direction: str, synthetic_bars: int | None, seed: int) -> Source:
    """Run a backtest and export its trades; ``context["result"]`` keeps the result for reports
    (``context["frame"]``: the bars it ran on)."""
    from spark_research.backtest import ParameterError, get_strategy, run_backtest
    from spark_research.data import default_store, generate_bars

    if direction not in ("longonly", "shortonly", "both"):
        raise ExportParamError("parameters.direction", direction, "must be longonly, shortonly or both")
    from spark_research.backtest.registry import SCHEMES, strategy_names

    if isinstance(strategy, str) and ":" in strategy and strategy.partition(":")[0] not in SCHEMES \
            and strategy not in strategy_names():
        # an export request must not make the server import an arbitrary module or file ("model:ID"
        # names a registered model: the registry is read, nothing is imported)
        raise ExportParamError("parameters.strategy", strategy, "exports take a strategy by a name the platform "
                               "lists (`spark strategies list`); put your strategy files on SPARK_STRATEGY_PATH")
    if isinstance(strategy, str) and strategy.partition(":")[0] in SCHEMES \
            and not _SAFE_ID.fullmatch(strategy.partition(":")[2]):
        raise ExportParamError("parameters.strategy", strategy, "expected <scheme>:<id>, the id of letters, digits, "
                               "'_', '-' and '.' (e.g. model:3b07a574b7df, `spark model list`)")
    try:
        get_strategy(strategy)
    except (KeyError, ValueError) as exc:
        raise ExportParamError("parameters.strategy", strategy, str(exc)) from exc
    if synthetic_bars is not None:
        bars = generate_bars(symbol, n=synthetic_bars, seed=seed)
    else:
        store = default_store()  # a path or an s3:// URL (SPARK_STORE)
        if symbol not in store.symbols("bars"):
            raise ExportSourceError(f"no bars stored for symbol {symbol!r} in {store.root}")
        bars = store.load_bars(symbol, start=start, end=end)
    try:
        res = run_backtest(strategy, bars, params or {}, fees=fees, slippage=slippage, direction=direction)
    except ParameterError as exc:
        raise ExportParamError("parameters.params", params, str(exc)) from exc
    # The result rides along for reports; its stats are computed only if a report asks for them.
    return from_table("backtest_trades", res.trades, context={"result": res, "bars": len(bars), "frame": bars})


# ------------------------------------------------------------------------- other capabilities' files
# These read the files the optimizer, gates and streams write under ``settings().var_dir`` (their
# documented layouts), never those packages' modules: an export needs no Dask or WebSocket.
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


def _sqlite_source(name: str, db: Path, sql: str, args: tuple = (), count_sql: str | None = None,
                   derive: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None) -> Source:
    """Rows of ``sql`` on the SQLite file ``db`` (opened read-only), fetched ``BATCH_ROWS`` at a time."""
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, check_same_thread=False)
    total = con.execute(count_sql, args).fetchone()[0] if count_sql else None
    cur = con.execute(sql, args)
    names = [d[0] for d in cur.description]
    first = cur.fetchmany(BATCH_ROWS)

    def to_batch(rows: list[tuple]) -> pa.RecordBatch:
        b = pa.RecordBatch.from_arrays([pa.array(col) for col in zip(*rows)], names=names)
        return derive(b) if derive else b

    if first:
        schema = to_batch(first[:1]).schema
    else:
        schema = pa.schema([(n, pa.string()) for n in names])
        if derive:
            schema = derive(pa.RecordBatch.from_pylist([], schema=schema)).schema

    def batches() -> Iterator[pa.RecordBatch]:
        rows = first
        try:
            while rows:
                yield to_batch(rows).cast(schema)
                rows = cur.fetchmany(BATCH_ROWS)
        finally:
            con.close()

    return Source(name, schema, batches(), total)


@register_source("sweep_results", (SourceParam("sweep_id", str, None, help="one sweep (default: all stored)"),),
                 "optimizer sweep results (var/sweeps/<id>/results.parquet)")
def sweep_results_source(sweep_id: str | None) -> Source:
    """Results of optimizer sweeps: one row per (symbol, parameter combination) with its stats."""
    base = settings().var_dir / "sweeps"
    if sweep_id is not None:
        if not _SAFE_ID.fullmatch(sweep_id):
            raise ExportParamError("parameters.sweep_id", sweep_id, f"must match {_SAFE_ID.pattern}")
        files = [base / sweep_id / "results.parquet"]
        if not files[0].is_file():
            raise ExportSourceError(f"sweep {sweep_id!r} has no results.parquet under {base}")
        return from_parquet(files, name="sweep_results")
    files = sorted(base.glob("*/results.parquet")) if base.is_dir() else []
    if not files:
        raise ExportSourceError(f"no sweep results under {base}")
    # Sweeps of different strategies have different parameter columns: one file per export keeps
    # a rectangular CSV, so "all sweeps" unifies the schemas (missing columns become empty).
    tables = [pq.read_schema(f) for f in files]
    schema = pa.unify_schemas(tables, promote_options="permissive")
    if any(t != tables[0] for t in tables):
        src = [from_parquet(f) for f in files]
        total = sum(s.total_rows or 0 for s in src)

        def batches() -> Iterator[pa.RecordBatch]:
            for f, one in zip(files, src):
                for b in one.batches:
                    cols = {n: b.column(n) if n in b.schema.names else pa.nulls(b.num_rows, schema.field(n).type)
                            for n in schema.names}
                    out = pa.record_batch([cols[n].cast(schema.field(n).type) for n in schema.names], schema=schema)
                    yield out

        return Source("sweep_results", schema, batches(), total)
    return from_parquet(files, name="sweep_results")


@register_source("fills", (SourceParam("symbol", str, None),), "paper/live fills (Parquet under var/gates/fills)")
def fills_source(symbol: str | None) -> Source:
    """Paper and live fills recorded as Parquet under ``var/gates/fills`` (columns of ``gates.model.FILL_COLUMNS``)."""
    base = settings().var_dir / "gates" / "fills"
    files = sorted(base.rglob("*.parquet")) if base.is_dir() else []
    if not files:
        raise ExportSourceError(f"no fills recorded under {base}")
    src = from_parquet(files, name="fills")
    if symbol is None:
        return src
    return Source("fills", src.schema,
                  (f for b in src.batches if (f := b.filter(pc.equal(b.column("symbol"), symbol))).num_rows))


def _with_time(batch: pa.RecordBatch) -> pa.RecordBatch:
    ts = pc.cast(batch.column("ts_ns").cast(pa.int64()), pa.timestamp("ns", tz="UTC"))
    return pa.record_batch([ts, *batch.columns], names=["time", *batch.schema.names])


@register_source("audit_log", (SourceParam("gate", str, None, help="one gate, e.g. sma_cross/BTCUSDT"),),
                 "the gates' append-only audit log (var/audit/gates.db)")
def audit_log_source(gate: str | None) -> Source:
    """Every entry of the gates' audit log, oldest first, with a readable UTC ``time`` column."""
    db = settings().var_dir / "audit" / "gates.db"
    if not db.is_file():
        raise ExportSourceError(f"no audit log at {db}")
    cols = "seq, ts_ns, actor, kind, gate, old_state, new_state, reason, vals, prev_hash, hash"
    where, args = ("WHERE gate = ?", (gate,)) if gate is not None else ("", ())
    return _sqlite_source("audit_log", db, f"SELECT {cols} FROM audit {where} ORDER BY seq", args,
                          f"SELECT count(*) FROM audit {where}", derive=_with_time)


@register_source("ingested_trades", (
    SourceParam("symbol", str, "BTCUSDT"), SourceParam("exchange", str, "binance"),
), "trades ingested from the live stream (var/ingest/<exchange>-<symbol>.sqlite)")
def ingested_trades_source(symbol: str, exchange: str) -> Source:
    """Trades the stream ingest stored, in trade-id order, with UTC ``time`` from ``time_us``."""
    for field_name, value in (("parameters.symbol", symbol), ("parameters.exchange", exchange)):
        if not _SAFE_ID.fullmatch(value):
            raise ExportParamError(field_name, value, f"must match {_SAFE_ID.pattern}")
    db = settings().var_dir / "ingest" / f"{exchange}-{symbol}.sqlite"
    if not db.is_file():
        raise ExportSourceError(f"no ingest journal at {db}")

    def derive(b: pa.RecordBatch) -> pa.RecordBatch:
        ts = pc.cast(pc.multiply(b.column("time_us").cast(pa.int64()), 1000), pa.timestamp("ns", tz="UTC"))
        return pa.record_batch([ts, *b.columns], names=["time", *b.schema.names])

    return _sqlite_source("ingested_trades", db, "SELECT id, price, qty, time_us, buyer_maker FROM trades ORDER BY id",
                          count_sql="SELECT count(*) FROM trades", derive=derive)
