"""Import a directory of exchange kline dumps into a store: parallel, resumable, row-level errors.

Binance publishes 1-minute klines as monthly (``BTCUSDT-1m-2024-01.zip``) and daily
(``BTCUSDT-1m-2024-01-15.zip``) archives, each holding one CSV of 12 columns, with or without a
header, open times in ms (µs for spot since 2025). :func:`import_klines` takes a directory of
them (``.zip`` or ``.csv``, in sub-directories too) and:

* runs files in parallel processes, grouped by target partition (symbol, month) so two
  processes never upsert the same partition;
* checks every row and reports each bad one as a :class:`BadRecord` (file, line, field, value,
  reason) while the file's good rows land; a file that cannot be read at all (not a zip, no
  CSV inside, a name that is not ``SYMBOL-1m-YYYY-MM[-DD]``) is reported with ``row=None``;
* is resumable: after a file's rows are in the store, a marker named by the file's SHA-256 goes
  to ``_imports/`` in the store; a re-run skips those files (``reimport=True`` forces them);
* never half-writes a partition (the store publishes each one atomically).

Example::

    >>> import tempfile, pathlib
    >>> from spark_research.data import BarStore
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "BTCUSDT-1m-2024-01.csv").write_text(
    ...     "1704067200000,42283.58,42298.62,42261.02,42298.61,35.9,1704067259999,1517839.6,1327,20.0,845600.0,0\\n"
    ...     "1704067260000,42298.62,42320.0,42298.61,-1,21.6,1704067319999,914000.0,900,10.0,423000.0,0\\n")
    >>> report = import_klines(d, BarStore(tempfile.mkdtemp()), workers=1, progress=False)
    >>> report.bars, [(b.file, b.row, b.field) for b in report.bad]
    (1, [('BTCUSDT-1m-2024-01.csv', 2, 'close')])
"""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import re
import zipfile
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spark_research.data.fs import write_atomic
from spark_research.data.loaders import KLINE_COLUMNS, epoch_to_utc
from spark_research.data.schema import DataValidationError, validate_bars
from spark_research.data.store import BarStore, default_store

#: ``SYMBOL-INTERVAL-YYYY-MM[-DD].(zip|csv)``, as Binance names its dumps.
DUMP_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+)-(?P<interval>\w+)-(?P<year>\d{4})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?"
                       r"\.(?P<ext>zip|csv)$")
MANIFEST_DIR = "_imports"
#: At most this many bad rows of one file are kept in the report (the count is always exact).
MAX_BAD_ROWS_PER_FILE = 1_000


@dataclass(frozen=True)
class BadRecord:
    """One rejected file (``row`` None) or row (``row`` = 1-based line number in the CSV)."""

    file: str
    row: int | None
    field: str | None
    value: Any
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f" line {self.row}" if self.row is not None else "")
        what = f" field {self.field!r} = {self.value!r}" if self.field else ""
        return f"{where}:{what} {self.reason}"


@dataclass
class FileResult:
    """What happened to one file (a worker's answer to the parent)."""

    file: str
    sha256: str
    rows: int = 0  #: rows written
    bad_rows: int = 0  #: rows rejected (exact, even when the list is capped)
    bytes: int = 0
    bad: list[BadRecord] = field(default_factory=list)
    failed: bool = False  #: the whole file was rejected


@dataclass
class ImportReport:
    """Outcome of :func:`import_klines`."""

    imported: list[str] = field(default_factory=list)  #: files whose good rows are in the store
    skipped: list[str] = field(default_factory=list)  #: files imported by an earlier run
    failed: list[str] = field(default_factory=list)  #: files rejected whole
    bad: list[BadRecord] = field(default_factory=list)  #: every bad file and (capped per file) row
    bad_rows: int = 0
    bars: int = 0
    bytes: int = 0

    @property
    def ok(self) -> bool:
        """No bad file and no bad row."""
        return not self.failed and not self.bad_rows


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_text(path: Path) -> str:
    """The CSV text of a dump: the file itself, or the single ``.csv`` member of a zip."""
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if m.lower().endswith(".csv")]
                if len(members) != 1:
                    raise ValueError(f"a kline zip holds exactly one .csv, found {members or 'none'}")
                return zf.read(members[0]).decode("utf-8")
        except zipfile.BadZipFile as exc:
            raise ValueError(f"not a zip archive ({exc})") from exc
    return path.read_bytes().decode("utf-8")


def parse_klines(text: str, name: str, symbol: str) -> tuple[pd.DataFrame, list[BadRecord], int]:
    """Parse a kline CSV, keeping the good rows as validated bars.

    Returns ``(bars, bad, n_bad)``: each bad row (wrong field count, a field that is not a number,
    non-positive or non-finite price, negative volume, high < low, open/close outside the range,
    a time not after the previous good row) is one :class:`BadRecord` naming the line and the
    first failing field; ``bad`` is capped at :data:`MAX_BAD_ROWS_PER_FILE`, ``n_bad`` is exact.
    """
    lines = text.splitlines()
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    header = first < len(lines) and not lines[first].lstrip()[:1].isdigit()
    body_start = first + 1 if header else first
    bad: list[BadRecord] = []
    good_lines: list[str] = []
    line_no: list[int] = []
    for i in range(body_start, len(lines)):
        ln = lines[i]
        if not ln.strip():
            continue
        n_fields = ln.count(",") + 1
        if n_fields != len(KLINE_COLUMNS):
            bad.append(BadRecord(name, i + 1, "columns", n_fields, f"a kline row has {len(KLINE_COLUMNS)} fields"))
            continue
        good_lines.append(ln)
        line_no.append(i + 1)
    if not good_lines:
        return pd.DataFrame(columns=["timestamp", "open", "high", "low", "close", "volume", "symbol"]), bad, len(bad)
    raw = pd.read_csv(io.StringIO("\n".join(good_lines)), header=None, names=list(KLINE_COLUMNS), dtype=str,
                      keep_default_na=False)
    rows = np.asarray(line_no)
    reason = np.full(len(raw), None, dtype=object)
    fld = np.full(len(raw), None, dtype=object)

    def flag(mask: np.ndarray, name_: str, why: str) -> None:
        new = mask & (reason == None)  # noqa: E711 - elementwise on an object array
        reason[new], fld[new] = why, name_

    t = pd.to_numeric(raw["open_time"].str.strip(), errors="coerce")
    flag(t.isna().to_numpy() | (t.to_numpy() <= 0), "open_time", "not a positive epoch integer")
    num = {}
    for c in ("open", "high", "low", "close", "volume"):
        num[c] = pd.to_numeric(raw[c].str.strip(), errors="coerce").to_numpy(dtype="float64")
        flag(np.isnan(num[c]), c, "not a number")
        flag(~np.isfinite(num[c]), c, "infinite")
    for c in ("open", "high", "low", "close"):
        flag(num[c] <= 0, c, "price must be > 0")
    flag(num["volume"] < 0, "volume", "volume must be >= 0")
    flag(num["high"] < num["low"], "high", "high < low")
    for c in ("open", "close"):
        flag((num[c] < num["low"]) | (num[c] > num["high"]), c, "outside [low, high]")
    ok = reason == None  # noqa: E711
    ts = np.zeros(len(raw), dtype="int64")
    if ok.any():
        ts[ok] = epoch_to_utc(t[ok].astype("int64").to_numpy(), "open_time").astype("int64").to_numpy()
        # strictly increasing times among the rows kept so far: a repeat or a step back is bad
        idx = np.flatnonzero(ok)
        prev_max = np.maximum.accumulate(ts[idx])
        back = np.zeros(len(idx), dtype=bool)
        back[1:] = ts[idx][1:] <= prev_max[:-1]
        reason[idx[back]], fld[idx[back]] = "time not after the previous row (duplicate or out of order)", "open_time"
        ok = reason == None  # noqa: E711
    for j in np.flatnonzero(~ok):
        col = fld[j]
        bad.append(BadRecord(name, int(rows[j]), col, raw[col].iloc[j], str(reason[j])))
    bad.sort(key=lambda b: b.row or 0)
    n_bad = len(bad)
    bars = pd.DataFrame({"timestamp": pd.to_datetime(ts[ok], unit="ns", utc=True),
                         **{c: num[c][ok] for c in ("open", "high", "low", "close", "volume")}})
    bars = validate_bars(bars, symbol)  # belt and braces: what lands passes the store's own rules
    return bars, bad[:MAX_BAD_ROWS_PER_FILE], n_bad


def import_file(path: str | os.PathLike[str], store: BarStore, name: str | None = None,
                sha256: str | None = None) -> FileResult:
    """Import one dump into ``store``; never raises for bad data (it is in the result)."""
    p = Path(path)
    name = name or p.name
    res = FileResult(name, sha256 or _sha256(p))
    m = DUMP_NAME.match(p.name)
    if m is None:
        res.failed = True
        res.bad.append(BadRecord(name, None, "file name", p.name, "expected SYMBOL-1m-YYYY-MM[-DD].zip or .csv"))
        return res
    if m["interval"] != "1m":
        res.failed = True
        res.bad.append(BadRecord(name, None, "interval", m["interval"], "the store holds 1-minute bars (1m)"))
        return res
    try:
        bars, bad, n_bad = parse_klines(_read_text(p), name, m["symbol"])
    except (ValueError, UnicodeDecodeError, OSError, DataValidationError) as exc:
        res.failed = True
        res.bad.append(BadRecord(name, None, None, None, f"unreadable: {exc}"))
        return res
    res.bad, res.bad_rows = bad, n_bad
    if len(bars):
        res.bytes = store.write_bars(bars)
        res.rows = len(bars)
    elif not n_bad:
        res.failed = True
        res.bad.append(BadRecord(name, None, None, None, "no rows"))
    return res


def _import_group(root: str, storage_options: dict[str, Any] | None,
                  files: list[tuple[str, str, str]]) -> list[FileResult]:
    """Worker: import the files of one partition in order, in this process."""
    store = BarStore(root, storage_options)
    return [import_file(path, store, name, sha) for path, name, sha in files]


def _done_markers(store: BarStore) -> set[str]:
    base = store._loc.join(MANIFEST_DIR)
    try:
        names = store.fs.ls(base, detail=False, refresh=True)
    except FileNotFoundError:
        return set()
    return {n.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json") for n in names if n.endswith(".json")}


def _mark_done(store: BarStore, res: FileResult) -> None:
    marker = {"file": res.file, "sha256": res.sha256, "rows": res.rows, "bad_rows": res.bad_rows,
              "bytes": res.bytes, "at": pd.Timestamp.now(tz="UTC").isoformat()}
    write_atomic(store._loc, store._loc.join(MANIFEST_DIR, f"{res.sha256}.json"), json.dumps(marker).encode())


def imported_files(store: BarStore) -> pd.DataFrame:
    """The import manifest: one row per imported file (name, sha256, rows, bad rows, bytes, when)."""
    base = store._loc.join(MANIFEST_DIR)
    try:
        paths = [p for p in store.fs.ls(base, detail=False, refresh=True) if p.endswith(".json")]
    except FileNotFoundError:
        paths = []
    rows = [json.loads(store.fs.cat_file(p)) for p in sorted(paths)]
    return pd.DataFrame(rows, columns=["file", "sha256", "rows", "bad_rows", "bytes", "at"])


def import_klines(directory: str | os.PathLike[str], store: BarStore | None = None, workers: int | None = None,
                  progress: bool = True, reimport: bool = False) -> ImportReport:
    """Import every ``*.zip`` / ``*.csv`` kline dump under ``directory`` into ``store``.

    ``workers`` processes (default: CPU count, capped at 4; ``1`` runs in this process). Files
    already imported (same SHA-256) are skipped unless ``reimport``. Returns an
    :class:`ImportReport`; bad files and rows are in ``report.bad``, never raised.
    """
    d = Path(directory)
    if not d.is_dir():
        raise NotADirectoryError(f"import: directory {str(d)!r} does not exist")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"import: workers must be a positive int, got {workers!r}")
    store = store or default_store()
    files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in (".zip", ".csv"))
    done = set() if reimport else _done_markers(store)
    report = ImportReport()
    groups: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for p in files:
        name = str(p.relative_to(d))
        sha = _sha256(p)
        if sha in done:
            report.skipped.append(name)
            continue
        m = DUMP_NAME.match(p.name)
        key = (m["symbol"], f"{m['year']}-{m['month']}") if m else ("", name)
        groups.setdefault(key, []).append((str(p), name, sha))
    total = sum(len(g) for g in groups.values())
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="file", desc=f"import {d.name}")

    def collect(results: list[FileResult]) -> None:
        for res in results:
            report.bad.extend(res.bad)
            report.bad_rows += res.bad_rows
            if res.failed:
                report.failed.append(res.file)
            else:
                _mark_done(store, res)  # only after its rows are in the store
                report.imported.append(res.file)
                report.bars += res.rows
                report.bytes += res.bytes
            if bar is not None:
                bar.update(1)

    n_workers = min(workers or min(os.cpu_count() or 1, 4), max(1, len(groups)))
    try:
        if n_workers == 1:
            for group in groups.values():
                collect([import_file(path, store, name, sha) for path, name, sha in group])
        else:
            # spawn: the parent may hold DuckDB / s3fs threads, which fork would copy half-alive
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
                root = store.url
                pending: set[Future] = {pool.submit(_import_group, root, store._storage_options, g)
                                        for g in groups.values()}
                while pending:  # bounded: each pass retires at least one future
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        collect(fut.result())
    finally:
        if bar is not None:
            bar.close()
    report.imported.sort()
    report.failed.sort()
    report.bad.sort(key=lambda b: (b.file, b.row or 0))
    return report


__all__ = ["BadRecord", "FileResult", "ImportReport", "DUMP_NAME", "import_klines", "import_file", "parse_klines",
           "imported_files"]
