"""The point-in-time feature store: features on Parquet beside the bars, joined as-of with DuckDB.

Layout under the store root (the bars' root, ``data/store`` or ``$SPARK_STORE``)::

    bars/symbol=BTCUSDT/month=2024-01/data.parquet                       (the BarStore's)
    features/freq=bar/symbol=BTCUSDT/month=2024-01/part-<first ns>.parquet
    features/freq=1h/symbol=BTCUSDT/month=2024-01/part-<first ns>.parquet  (bars resampled to 1h)

Each file holds ``timestamp`` plus one float64 column per feature output, and in its Parquet
key-value metadata (key ``spark_research.features``) every feature's name, code hash,
parameters, lookback and columns, the universe of cross-asset features, and the file's first
and last timestamp. Reading checks those hashes against the registered definitions: a
changed definition raises :class:`StaleFeatureError` instead of serving stale values, and
:meth:`FeatureStore.build` recomputes it.

**Point in time.** A feature row is stamped with the time of the last bar it uses: a native
bar's own timestamp (the platform's bars are stamped at their open and signals act on their
close), and for a resampled frequency the *end* of the period (a 1h bar built from 10:00-10:59
is stamped 11:00, when it is complete; incomplete trailing periods are not stored). The
as-of join gives each row the latest feature row stamped at or before the row's time.

**Incremental.** :meth:`FeatureStore.build` computes only the bars after the last stored one,
with the features' largest lookback of earlier bars as context, and appends a part file;
the shipped features are window-local, so the result is identical to a full recompute.

**Trades.** Trade-flow features (``trades=True``) are built for symbols with trades in the
BarStore (``trades/symbol=...``): the trades are aggregated onto the bars
(:mod:`spark_research.features.trades`; a resampled bar stamped at its end takes the trades
of its period). The bar interval and the time from which trades are stored (bars before it have
no flow: NaN) are fixed by the full build and kept in the metadata (``trades``), so an
incremental build aggregates exactly as a recompute would. By default (``features=None``) a
symbol without stored trades gets every other feature; naming a trade-flow feature for it is an
error that names the feature and the symbol.

Example::

    >>> import tempfile
    >>> from spark_research.data import BarStore, generate_bars
    >>> bars = BarStore(tempfile.mkdtemp())
    >>> _ = bars.write_bars(generate_bars("BTCUSDT", n=1_000, seed=1))
    >>> store = FeatureStore(bars.root)
    >>> store.build("BTCUSDT", ["ret_1", "rsi_14"])["BTCUSDT"].rows
    1000
    >>> _ = bars.write_bars(generate_bars("BTCUSDT", n=1_010, seed=1).iloc[1_000:])
    >>> r = store.build("BTCUSDT", ["ret_1", "rsi_14"])["BTCUSDT"]
    >>> r.mode, r.rows
    ('incremental', 10)
    >>> store.load("BTCUSDT").shape
    (1010, 2)
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from spark_research.config import settings
from spark_research.data.schema import TS_DTYPE
from spark_research.data.store import BarStore
from spark_research.features.registry import (BAR_FIELDS, Feature, FeatureError, _compute_columns, as_bars,
                                              resolve_features)
from spark_research.features.trades import bar_interval, with_trade_flow

#: Parquet key-value metadata key holding the features' hashes and parameters.
META_KEY = b"spark_research.features"
META_VERSION = 1
BASE_FREQ = "bar"
_COMPRESSION = "lz4"


class StaleFeatureError(FeatureError):
    """Stored values were computed by another definition (code hash) of the feature."""


@dataclass(frozen=True)
class BuildResult:
    """What :meth:`FeatureStore.build` did for one symbol: ``mode`` is ``full``, ``incremental`` or ``current``."""

    symbol: str
    freq: str
    mode: str
    rows: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    seconds: float
    reason: str = ""


def _utc(value: object) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _freq_offset(freq: str) -> pd.Timedelta:
    try:
        off = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
    except (ValueError, TypeError) as exc:
        raise FeatureError(f"freq: {freq!r} is not a fixed pandas frequency like '5min' or '1h': {exc}") from None
    if off <= pd.Timedelta(0):
        raise FeatureError(f"freq must be a positive duration, got {freq!r}")
    return off


def resample_bars(bars: pd.DataFrame, freq: str) -> pd.DataFrame:
    """OHLCV bars aggregated to ``freq``, each stamped with its period's *end* (when it is complete);
    a trailing period not yet complete is dropped.

    Example::

        >>> from spark_research.data import generate_bars
        >>> h = resample_bars(generate_bars("BTCUSDT", n=150, seed=1), "1h")
        >>> h.index.tolist()   # 00:00-00:59 and 01:00-01:59 are complete; 02:00-02:29 is not
        [Timestamp('2024-01-01 01:00:00+0000', tz='UTC'), Timestamp('2024-01-01 02:00:00+0000', tz='UTC')]
    """
    frame = as_bars(bars)
    off = _freq_offset(freq)
    if len(frame) == 0:
        return frame
    step = pd.Timedelta(int(np.median(np.diff(frame.index.asi8)))) if len(frame) > 1 else pd.Timedelta(0)
    out = frame.resample(off, label="right", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}).dropna(subset=["close"])
    # the last period is complete only when its last base bar (ending at +step) reaches the period end
    end_of_data = frame.index[-1] + step
    return out[out.index <= end_of_data].rename_axis("timestamp")


class FeatureStore:
    """Features of the bars in a :class:`~spark_research.data.store.BarStore`, on Parquet beside them.

    ``root`` is the store root (default ``settings().store_dir``); the bars are read from
    ``bars`` (default: the BarStore at the same root).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, bars: BarStore | None = None):
        if root is not None and "://" in str(root):
            raise FeatureError(f"root: the feature store needs a local directory, got {str(root)!r}; "
                               f"pass the remote bars as bars=BarStore(url)")
        self.root = Path(root) if root is not None else settings().store_dir
        self.bars = bars or BarStore(self.root)
        self.base = self.root / "features"
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ layout
    def _dir(self, symbol: str, freq: str) -> Path:
        return self.base / f"freq={freq}" / f"symbol={symbol}"

    def _files(self, symbol: str, freq: str) -> list[Path]:
        return sorted(self._dir(symbol, freq).glob("month=*/part-*.parquet"), key=lambda p: (p.parent.name, p.name))

    def _last_file(self, symbol: str, freq: str) -> Path | None:
        """The newest part file (last month, latest first bar) without listing every month's files."""
        for month in sorted(_listdir(self._dir(symbol, freq), "month="), reverse=True):
            parts = sorted(_listdir(self._dir(symbol, freq) / month, "part-"))
            parts = [p for p in parts if p.endswith(".parquet")]
            if parts:
                return self._dir(symbol, freq) / month / parts[-1]
        return None

    def symbols(self, freq: str = BASE_FREQ) -> list[str]:
        """Symbols with stored features at ``freq``, sorted. Example: ``FeatureStore().symbols("1h")``."""
        d = self.base / f"freq={freq}"
        return sorted(p.name.split("=", 1)[1] for p in d.glob("symbol=*") if p.is_dir()) if d.is_dir() else []

    def metadata(self, symbol: str, freq: str = BASE_FREQ) -> list[dict[str, Any]]:
        """The feature metadata of each stored file of ``symbol`` (oldest first).

        Example: ``store.metadata("BTCUSDT")[-1]["features"]["rsi_14"]["code_hash"]``.
        """
        return [_read_meta(p) for p in self._files(symbol, freq)]

    # ------------------------------------------------------------------ building
    def build(self, symbols: str | Sequence[str] | None = None,
              features: str | Feature | Iterable[str | Feature] | None = None, *, freq: str | None = None,
              universe: Sequence[str] | None = None, full: bool = False) -> dict[str, BuildResult]:
        """Compute and store ``features`` (default: all registered) for ``symbols`` (default: every
        symbol with bars), incrementally when the stored set is current, else from scratch.

        ``freq`` resamples the bars first (e.g. ``"1h"``); ``universe`` lists the symbols whose
        closes feed cross-asset features (default: every symbol with bars). ``full=True``
        recomputes everything. Returns one :class:`BuildResult` per symbol.

        Example: ``FeatureStore().build(["BTCUSDT", "ETHUSDT"], ["ret_1", "rsi_14"], freq="1h")``.
        """
        feats = resolve_features(features, trades=True)
        freq = freq or BASE_FREQ
        if freq != BASE_FREQ:
            _freq_offset(freq)
        syms = [symbols] if isinstance(symbols, str) else list(symbols or self.bars.symbols("bars"))
        if not syms:
            raise FeatureError(f"symbols: no bars in {self.bars.root}; write bars first (spark data generate --sample)")
        uni = sorted(universe or self.bars.symbols("bars")) if any(f.universe for f in feats) else None
        traded = set(self.bars.symbols("trades")) if any(f.trades for f in feats) else set()
        return {s: self._build_one(s, self._feats_for(s, feats, traded, features is None), freq, uni, full)
                for s in syms}

    def _feats_for(self, symbol: str, feats: list[Feature], traded: set[str], default: bool) -> list[Feature]:
        """``feats`` for ``symbol``: without the trade-flow ones when it has no stored trades (by default)."""
        need = [f.name for f in feats if f.trades]
        if not need or symbol in traded:
            return feats
        if not default:
            which = f"feature {need[0]!r} needs" if len(need) == 1 else f"features {need} need"
            raise FeatureError(f"{which} trades, but the store {self.bars.root} has no trades for symbol {symbol!r}; "
                               f"write them first (BarStore.write_trades, spark data download --trades) or leave "
                               f"the trade-flow features out")
        return [f for f in feats if not f.trades]

    def _spec(self, feats: list[Feature], freq: str, uni: list[str] | None) -> dict[str, Any]:
        return {"freq": freq, "universe": uni, "features": {f.name: f.describe() for f in feats}}

    def _build_one(self, symbol: str, feats: list[Feature], freq: str, uni: list[str] | None,
                   full: bool) -> BuildResult:
        t0 = time.perf_counter()
        spec = self._spec(feats, freq, uni)
        last_file = self._last_file(symbol, freq)
        last_meta = _read_meta(last_file) if last_file else None
        reason = "full=True" if full else "nothing stored" if last_meta is None else _spec_change(last_meta, spec)
        needed = [symbol, *(u for u in uni or [] if u != symbol)]
        if reason:
            data = self._read_bars(needed, None, needed[1:])
            flow = self._flow(symbol, freq, data[symbol], None) if any(f.trades for f in feats) else None
            frame = self._compute(feats, freq, uni, data, symbol, flow)
            self._replace(symbol, freq, frame, {**spec, "trades": flow[1]} if flow else spec)
            return BuildResult(symbol, freq, "full", len(frame), _first(frame), _last(frame),
                               time.perf_counter() - t0, reason)
        last = pd.Timestamp(last_meta["last"])
        lookback = max(f.lookback for f in feats)
        data = self._bars_since(needed, last, lookback, freq, last_meta.get("step_ns", 0))
        flow = None
        if any(f.trades for f in feats) and len(data[symbol]):
            flow = self._flow(symbol, freq, data[symbol], last_meta.get("trades"))
            spec = {**spec, "trades": flow[1]}
        frame = self._compute(feats, freq, uni, data, symbol, flow)
        new = frame.after(last)
        if len(new):
            with self._lock:
                self._write_parts(self._dir(symbol, freq), new, spec, symbol,
                                  last_meta.get("step_ns") or _step_ns(frame.index))
        return BuildResult(symbol, freq, "incremental" if len(new) else "current", len(new), _first(new), _last(new),
                           time.perf_counter() - t0)

    def _read_bars(self, symbols: list[str], start: pd.Timestamp | None = None,
                   closes_only: Sequence[str] = ()) -> dict[str, pd.DataFrame]:
        """``{symbol: bars indexed by time}`` from ``start`` on, for several symbols at once.

        A local bar store is read with pyarrow, opening only the month partitions from ``start``'s
        month on and the row groups that reach ``start``; any other store goes through
        ``BarStore.load_bars``.
        """
        if not isinstance(self.bars.root, Path):
            out = {}
            for sym in symbols:
                try:
                    out[sym] = as_bars(self.bars.load_bars(sym, start=start))
                except KeyError as exc:
                    raise FeatureError(f"symbol {sym!r}: {exc.args[0] if exc.args else exc}; write its bars "
                                       f"first (spark data generate / spark data import)") from None
            return out
        first_month = f"month={start.strftime('%Y-%m')}" if start is not None else ""
        out = {}
        for sym in symbols:
            cols = ["timestamp", "close"] if sym in closes_only else ["timestamp", *BAR_FIELDS]
            sym_dir = self.bars.root / "bars" / f"symbol={sym}"
            months = sorted(_listdir(sym_dir, "month="))
            if not months:
                raise FeatureError(f"symbol {sym!r}: no bars stored under {sym_dir}; write its bars first "
                                   f"(spark data generate / spark data import)")
            files = [str(sym_dir / m / f) for m in months if m >= first_month
                     for f in sorted(_listdir(sym_dir / m, "")) if f.endswith(".parquet") and not f.startswith(".")]
            if not files:
                out[sym] = pd.DataFrame({c: pd.Series([], dtype="float64") for c in cols[1:]},
                                        index=pd.DatetimeIndex([], tz="UTC", name="timestamp"))
                continue
            # pyarrow straight from the month files: no connection to set up on the incremental path
            table = (pq.read_table(files, columns=cols, partitioning=None) if start is None
                     else _read_since(files, cols, start))
            # arrays straight from Arrow: to_pandas() rebuilds the writer's pandas metadata, which
            # costs more than the read on the incremental path
            ts = table.column("timestamp").cast(pa.timestamp("ns")).to_numpy().view(np.int64)
            keep = slice(int(np.searchsorted(ts, start.value)) if start is not None else 0, None)
            index = pd.DatetimeIndex(ts[keep].view("datetime64[ns]"), name="timestamp").tz_localize("UTC")
            df = pd.DataFrame({c: table.column(c).to_numpy()[keep] for c in cols[1:]}, index=index)
            out[sym] = df if index.is_monotonic_increasing else df.sort_index()  # float64 columns already
        return out

    def _bars_since(self, symbols: list[str], last: pd.Timestamp, lookback: int, freq: str,
                    step_ns: int) -> dict[str, pd.DataFrame]:
        """Bars after ``last`` plus enough earlier bars to give the first new row its full lookback."""
        if freq != BASE_FREQ:
            off = _freq_offset(freq)
            return self._read_bars(symbols, (last - (lookback + 2) * off).floor(off), symbols[1:])  # whole periods
        # ask for twice the time span of the context, wider while gaps leave it short (bounded)
        span = pd.Timedelta(max(int(step_ns), 1) * 2 * (lookback + 1), "ns")
        for _ in range(8):
            data = self._read_bars(symbols, last - span, symbols[1:])
            if int((data[symbols[0]].index <= last).sum()) >= lookback + 1:
                break
            span *= 4
        else:
            data = self._read_bars(symbols, None, symbols[1:])
        own = data[symbols[0]]
        before = int((own.index <= last).sum())
        first = own.index[max(0, before - lookback - 1)] if len(own) else None
        return {s: (f if first is None else f[f.index >= first]) for s, f in data.items()}

    def _flow(self, symbol: str, freq: str, bars: pd.DataFrame,
              stored: Mapping[str, Any] | None) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The trades of ``symbol`` from its first bar in ``bars`` on, and how they are aggregated:
        ``{"interval_ns", "from_ns"}``, fixed by the full build (``stored`` None) and kept after."""
        off = _freq_offset(freq) if freq != BASE_FREQ else None
        start = bars.index[0] if off is None else bars.index[0].floor(off)  # a resampled bar's whole period
        trades = self.bars.load_trades(symbol, start=start, columns=["ts", "price", "qty", "side"])
        how = dict(stored or {})
        if "interval_ns" not in how:
            how["interval_ns"] = bar_interval(bars.index) if off is None else int(off.value)
        if how.get("from_ns") is None:  # the first stored trade: no trade is stored before it
            how["from_ns"] = int(pd.DatetimeIndex(trades["ts"]).as_unit("ns").asi8.min()) if len(trades) else None
        return trades, how

    def _compute(self, feats: list[Feature], freq: str, uni: list[str] | None, data: Mapping[str, pd.DataFrame],
                 symbol: str, flow: tuple[pd.DataFrame, Mapping[str, Any]] | None = None) -> _Computed:
        frame = data[symbol]
        universe = None
        if uni:
            closes = [data[u]["close"] if data[u].index.equals(frame.index) else data[u]["close"].reindex(frame.index)
                      for u in uni]
            universe = pd.DataFrame(np.column_stack([c.to_numpy() for c in closes]), index=frame.index, columns=uni)
        if freq != BASE_FREQ:
            off = _freq_offset(freq)
            if universe is not None:
                universe = universe.resample(off, label="right", closed="left").last()
            frame = resample_bars(frame, freq)
        if flow is not None:
            trades, how = flow
            frame = with_trade_flow(frame, trades, interval=pd.Timedelta(how["interval_ns"], "ns"),
                                    trades_from=how["from_ns"], label="open" if freq == BASE_FREQ else "close")
        return _Computed(frame.index, _compute_columns(feats, frame, universe))

    # ------------------------------------------------------------------ writing
    def _replace(self, symbol: str, freq: str, frame: _Computed, spec: dict[str, Any]) -> None:
        """Write a symbol's features into a fresh directory and swap it in (never half-written)."""
        final = self._dir(symbol, freq)
        tmp = final.with_name(f".tmp-{final.name}-{uuid.uuid4().hex}")
        with self._lock:
            try:
                self._write_parts(tmp, frame, spec, symbol)
                old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex}")
                if final.exists():
                    os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def _write_parts(self, sym_dir: Path, frame: _Computed, spec: dict[str, Any], symbol: str,
                     step_ns: int = 0) -> None:
        if len(frame) == 0:
            return
        ts = frame.index.asi8
        step_ns = step_ns or _step_ns(frame.index)
        cols_all = frame.columns_dict()
        month_no = ts.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
        starts = np.flatnonzero(np.r_[True, month_no[1:] != month_no[:-1]])
        bounds = list(zip(starts, list(starts[1:]) + [len(frame)]))

        def write(a: int, b: int) -> None:
            first, last = frame.index[a], frame.index[b - 1]
            meta = {"version": META_VERSION, "symbol": symbol, **spec, "step_ns": step_ns,
                    "first": first.isoformat(), "last": last.isoformat(), "rows": int(b - a)}
            cols = {"timestamp": pa.array(ts[a:b], type=pa.timestamp("ns", tz="UTC"))}
            cols.update({c: pa.array(v[a:b]) for c, v in cols_all.items()})
            table = pa.table(cols).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
            path = sym_dir / f"month={first.strftime('%Y-%m')}" / f"part-{ts[a]}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.parquet")
            pq.write_table(table, tmp, compression=_COMPRESSION, use_dictionary=False)
            os.replace(tmp, path)

        if len(bounds) == 1:
            write(*bounds[0])
            return
        # pyarrow releases the GIL while encoding and writing: months go out two at a time
        with ThreadPoolExecutor(max_workers=2) as pool:
            for done in [pool.submit(write, a, b) for a, b in bounds]:
                done.result()

    def compact(self, symbol: str, freq: str = BASE_FREQ) -> int:
        """Merge each month's part files (appended by incremental builds) into one; returns files removed.

        Example: ``store.compact("BTCUSDT")``.
        """
        removed = 0
        with self._lock:
            for month in sorted(self._dir(symbol, freq).glob("month=*")):
                parts = sorted(month.glob("part-*.parquet"))
                if len(parts) < 2:
                    continue
                meta = _read_meta(parts[-1])
                table = pa.concat_tables([pq.read_table(p) for p in parts])
                meta.update(first=_read_meta(parts[0])["first"], rows=table.num_rows)
                table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
                tmp = month / f".tmp-{uuid.uuid4().hex}.parquet"
                pq.write_table(table, tmp, compression=_COMPRESSION, use_dictionary=False)
                os.replace(tmp, parts[0])
                for p in parts[1:]:
                    p.unlink()
                removed += len(parts) - 1
        return removed

    def clear(self, symbol: str | None = None, freq: str | None = None) -> None:
        """Delete stored features (of one symbol and/or frequency, or all). Example: ``store.clear("BTCUSDT")``."""
        target = self.base
        if freq:
            target = target / f"freq={freq}"
        if symbol:
            dirs = [self._dir(symbol, freq)] if freq else list(self.base.glob(f"freq=*/symbol={symbol}"))
        else:
            dirs = [target]
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ reading
    def _checked_files(self, symbol: str, freq: str, feats: list[Feature] | None) -> tuple[list[Path], list[str]]:
        files = self._files(symbol, freq)
        if not files:
            raise FeatureError(f"no features stored for symbol {symbol!r} at freq {freq!r} under {self.base}; "
                               f"run `spark features build --symbol {symbol}`")
        metas = [_read_meta(p) for p in files]
        stored = metas[-1]["features"]
        names = [f.name for f in feats] if feats is not None else list(stored)
        for name in names:
            current = feats[names.index(name)] if feats is not None else _current(name)
            for path, meta in zip(files, metas):
                got = meta["features"].get(name)
                if got is None:
                    raise FeatureError(f"feature {name!r} is not stored for {symbol!r} at freq {freq!r} (stored: "
                                       f"{sorted(stored)}); run `spark features build --symbol {symbol} --features {name}`")
                if current is not None and got["code_hash"] != current.code_hash:
                    raise StaleFeatureError(
                        f"feature {name!r} of {symbol!r} in {path.name} was computed by code hash {got['code_hash']} "
                        f"(params {got['params']}), but the registered definition has hash {current.code_hash} "
                        f"(params {current.params}); rebuild: `spark features build --symbol {symbol} --features {name}`")
        columns = [c for n in names for c in metas[-1]["features"][n]["columns"]]
        return files, columns

    def load(self, symbol: str, features: str | Feature | Iterable[str | Feature] | None = None,
             start: object = None, end: object = None, freq: str | None = None) -> pd.DataFrame:
        """Stored feature columns of ``symbol`` with ``start <= timestamp < end``, indexed by timestamp.

        Raises :class:`StaleFeatureError` when a stored feature's code hash differs from the
        registered definition (rebuild it), :class:`FeatureError` when it is not stored.

        Example: ``FeatureStore().load("BTCUSDT", ["rsi_14"], start="2024-01-15")``.
        """
        freq = freq or BASE_FREQ
        feats = resolve_features(features) if features is not None else None
        files, columns = self._checked_files(symbol, freq, feats)
        where, args = [], [[str(f) for f in files]]
        for op, value in ((">=", start), ("<", end)):
            if (v := _utc(value)) is not None:
                where.append(f"timestamp {op} ?")
                args.append(v.to_pydatetime())
        sel = ", ".join(["timestamp", *(f'"{c}"' for c in columns)])
        sql = f"SELECT {sel} FROM read_parquet(?, union_by_name=true)"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY timestamp"
        with duckdb.connect() as con:
            con.execute("SET TimeZone='UTC'")
            df = con.sql(sql, params=args).to_arrow_table().to_pandas()
        df["timestamp"] = df["timestamp"].astype(TS_DTYPE)
        return df.set_index("timestamp")

    def summary(self) -> pd.DataFrame:
        """One row per stored (freq, symbol): features, rows, first/last time, files, bytes.

        Example: ``FeatureStore().summary()`` (what ``spark features status`` prints).
        """
        rows = []
        for fdir in sorted(self.base.glob("freq=*")) if self.base.is_dir() else []:
            freq = fdir.name.split("=", 1)[1]
            for sym in self.symbols(freq):
                files = self._files(sym, freq)
                metas = [_read_meta(p) for p in files]
                if not metas:
                    continue
                rows.append({"freq": freq, "symbol": sym, "features": len(metas[-1]["features"]),
                             "rows": sum(m["rows"] for m in metas), "first": metas[0]["first"],
                             "last": metas[-1]["last"], "files": len(files),
                             "bytes": sum(p.stat().st_size for p in files)})
        return pd.DataFrame(rows, columns=["freq", "symbol", "features", "rows", "first", "last", "files", "bytes"])


def _read_since(files: list[str], cols: list[str], start: pd.Timestamp) -> pa.Table:
    """The row groups of ``files`` whose last timestamp is at or after ``start`` (by their statistics;
    a group without statistics is read), on one thread: the incremental path's small read."""
    tables = []
    for f in files:
        pf = pq.ParquetFile(f)
        md = pf.metadata
        ts_col = pf.schema_arrow.get_field_index("timestamp")
        groups = []
        for i in range(md.num_row_groups):
            stats = md.row_group(i).column(ts_col).statistics
            if stats is None or not stats.has_min_max or _utc(stats.max) >= start:
                groups.append(i)
        if groups:
            tables.append(pf.read_row_groups(groups, columns=cols, use_threads=False))
    if not tables:
        return pq.read_table(files[:1], columns=cols, partitioning=None).slice(0, 0)
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _listdir(path: Path, prefix: str) -> list[str]:
    """Names in ``path`` starting with ``prefix`` ([] when it does not exist): no stat per entry."""
    try:
        return [n for n in os.listdir(path) if n.startswith(prefix)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read_meta(path: Path) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata or {}
    if META_KEY not in meta:
        raise FeatureError(f"{path}: no {META_KEY.decode()} metadata; not written by the feature store")
    return json.loads(meta[META_KEY])


def _current(name: str) -> Feature | None:
    from spark_research.features.registry import UnknownFeature, get_feature

    try:
        return get_feature(name)
    except UnknownFeature:
        return None


def _spec_change(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> str:
    """Why the stored set cannot be extended incrementally ('' when it can)."""
    if meta.get("version") != META_VERSION:
        return f"stored metadata version {meta.get('version')} != {META_VERSION}"
    if meta.get("universe") != spec["universe"]:
        return f"universe changed: {meta.get('universe')} -> {spec['universe']}"
    stored, wanted = meta["features"], spec["features"]
    if list(stored) != list(wanted):
        return f"feature set changed: {sorted(stored)} -> {sorted(wanted)}"
    for name, desc in wanted.items():
        if stored[name]["code_hash"] != desc["code_hash"]:
            return f"feature {name!r} changed: code hash {stored[name]['code_hash']} -> {desc['code_hash']}"
    return ""


def _step_ns(index: pd.DatetimeIndex) -> int:
    """Median bar spacing in nanoseconds (0 for fewer than two bars)."""
    return int(np.median(np.diff(index.asi8))) if len(index) > 1 else 0


@dataclass(frozen=True)
class _Computed:
    """Computed feature columns on their bar times (kept as arrays all the way to Parquet)."""

    index: pd.DatetimeIndex
    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.index)

    def columns_dict(self) -> dict[str, np.ndarray]:
        return self.cols

    def after(self, last: pd.Timestamp) -> _Computed:
        """The rows stamped after ``last``."""
        i = int(self.index.searchsorted(last, side="right"))
        return _Computed(self.index[i:], {c: v[i:] for c, v in self.cols.items()})


def _first(frame: pd.DataFrame | _Computed) -> pd.Timestamp | None:
    return frame.index[0] if len(frame) else None


def _last(frame: pd.DataFrame | _Computed) -> pd.Timestamp | None:
    return frame.index[-1] if len(frame) else None


def _freq_suffix(freq: str) -> str:
    return "" if freq == BASE_FREQ else f"@{freq}"


def asof_matrix(spine: pd.DataFrame, store: FeatureStore | None = None,
                features: Mapping[str, Sequence[str] | None] | Sequence[str] | None = None,
                *, with_times: bool = False) -> pd.DataFrame:
    """A training matrix: each spine row (``symbol``, ``timestamp``, any other columns) joined with
    the latest stored feature row of its symbol stamped at or before the row's time (DuckDB
    ``ASOF LEFT JOIN``), for every frequency asked for; nothing stamped later is ever used.

    ``features`` maps a frequency (``"bar"`` for the native bars, or e.g. ``"1h"``) to feature
    names (None: all stored); a plain list means native bars. Columns of other frequencies get
    the suffix ``@<freq>``. ``with_times=True`` adds ``feature_time[@freq]``, the stamp of
    the feature row each value came from. Rows keep the spine's order.

    Example::

        >>> import tempfile
        >>> from spark_research.data import BarStore, generate_bars
        >>> bars = BarStore(tempfile.mkdtemp())
        >>> _ = bars.write_bars(generate_bars("BTCUSDT", n=300, seed=1))
        >>> store = FeatureStore(bars.root)
        >>> _ = store.build("BTCUSDT", ["ret_1"]); _ = store.build("BTCUSDT", ["ret_1"], freq="1h")
        >>> spine = pd.DataFrame({"symbol": ["BTCUSDT"], "timestamp": [pd.Timestamp("2024-01-01 02:30:30", tz="UTC")]})
        >>> m = asof_matrix(spine, store, {"bar": ["ret_1"], "1h": ["ret_1"]}, with_times=True)
        >>> str(m.loc[0, "feature_time"]), str(m.loc[0, "feature_time@1h"])
        ('2024-01-01 02:30:00+00:00', '2024-01-01 02:00:00+00:00')
    """
    store = store or FeatureStore()
    for col in ("symbol", "timestamp"):
        if col not in spine.columns:
            raise FeatureError(f"spine: missing column {col!r}; need symbol and timestamp (columns: {list(spine.columns)})")
    sources = {BASE_FREQ: features} if features is None or not isinstance(features, Mapping) else dict(features)
    left = spine.reset_index(drop=True).copy()
    left["timestamp"] = pd.to_datetime(left["timestamp"], utc=True).astype(TS_DTYPE)
    left["__row"] = np.arange(len(left))
    symbols = sorted(left["symbol"].astype(str).unique())
    with duckdb.connect() as con:
        con.execute("SET TimeZone='UTC'")
        con.register("spine", left)
        select, joins = ["s.*"], []
        for i, (freq, names) in enumerate(sources.items()):
            frames = []
            for sym in symbols:
                df = store.load(sym, names, freq=freq).reset_index()
                df.insert(0, "symbol", sym)
                frames.append(df)
            table = pd.concat(frames, ignore_index=True)
            suffix = _freq_suffix(freq)
            con.register(f"f{i}", table)
            cols = [c for c in table.columns if c not in ("symbol", "timestamp")]
            select += [f'f{i}."{c}" AS "{c}{suffix}"' for c in cols]
            if with_times:
                select.append(f'f{i}.timestamp AS "feature_time{suffix}"')
            joins.append(f"ASOF LEFT JOIN f{i} ON s.symbol = f{i}.symbol AND s.timestamp >= f{i}.timestamp")
        sql = f"SELECT {', '.join(select)} FROM spine s {' '.join(joins)} ORDER BY s.__row"
        out = con.sql(sql).to_arrow_table().to_pandas()
    for col in out.columns:
        if col == "timestamp" or col.startswith("feature_time"):
            out[col] = out[col].astype(TS_DTYPE)
    return out.drop(columns="__row")


__all__ = ["BASE_FREQ", "BuildResult", "FeatureStore", "META_KEY", "StaleFeatureError", "asof_matrix",
           "resample_bars"]
