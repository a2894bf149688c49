"""One SQLite file for every symbol of a venue feed, so one transaction commits all of them.

A feed carrying 25 symbols at 100 trades/s each would otherwise commit 2,500 small
transactions a second into 25 files; here the batches of every symbol that received trades
in one event-loop turn go into one transaction (group commit), with the same durability as
:class:`~spark_research.streams.journal.IngestJournal` (WAL, ``synchronous=NORMAL`` or ``FULL``).

Each symbol's committed batch is one row of ``trade_batches``: its trades as a JSON array of
``[id, price, qty, time_us, buyer_maker]`` rows (``event_us`` a separate array, NULL when every
event time is the trade time, as for every venue here), with the first/last id, count and
latest time beside it for lookups. A row per trade costs SQLite 1–2 µs of binding and index
upkeep per print (more than parsing the print); a batch row, encoding included, about 0.25 µs.
The ``trades`` *view* shows one row per trade with the columns of the per-symbol journal
(``symbol, id, price, qty, time_us, buyer_maker, event_us``), so SQL readers see trades as
before. A file written by the earlier one-row-per-trade layout is converted when opened.

:meth:`VenueJournal.for_symbol` hands out a :class:`SymbolJournal` per symbol with
``IngestJournal``'s interface (``commit``, ``last_id``, ``trades``, ``bars``...), which is what
the per-symbol :class:`~spark_research.streams.ingest.IngestClient` uses.

Example::

    >>> import tempfile, pathlib
    >>> from spark_research.streams.adapters import Trade
    >>> vj = VenueJournal(pathlib.Path(tempfile.mkdtemp()) / "okx.sqlite", "okx")
    >>> btc, eth = vj.for_symbol("BTCUSDT"), vj.for_symbol("ETHUSDT")
    >>> with vj.group():
    ...     btc.commit([Trade("BTCUSDT", 1, 10.0, 1.0, 5, 5, False)], [])
    ...     eth.commit([Trade("ETHUSDT", 7, 2.0, 1.0, 5, 5, True)], [])
    >>> btc.last_id(), eth.last_id()
    (1, 7)
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

import orjson
import pandas as pd

from spark_research.streams.adapters import Trade, TradeBatch
from spark_research.streams.bars import Bar

log = logging.getLogger(__name__)

#: ``rows``: ``[[id, price, qty, time_us, buyer_maker], ...]`` in arrival order; ``event_us``: ``[event_us, ...]``
#: or NULL when they equal the trade times (both JSON, stored as BLOB: no text decoding on the hot path)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS trade_batches (
    symbol TEXT NOT NULL, first_id INTEGER NOT NULL, last_id INTEGER NOT NULL, n INTEGER NOT NULL,
    max_time_us INTEGER NOT NULL, rows BLOB NOT NULL, event_us BLOB);
CREATE INDEX IF NOT EXISTS trade_batches_by_symbol ON trade_batches(symbol, last_id);
CREATE VIEW IF NOT EXISTS trades AS
    SELECT b.symbol AS symbol, json_extract(r.value, '$[0]') AS id, json_extract(r.value, '$[1]') AS price,
           json_extract(r.value, '$[2]') AS qty, json_extract(r.value, '$[3]') AS time_us,
           json_extract(r.value, '$[4]') AS buyer_maker,
           CASE WHEN b.event_us IS NULL THEN json_extract(r.value, '$[3]')
                ELSE json_extract(CAST(b.event_us AS TEXT), '$[' || r.key || ']') END AS event_us
    FROM trade_batches AS b, json_each(CAST(b.rows AS TEXT)) AS r;
CREATE TABLE IF NOT EXISTS bars (
    symbol TEXT NOT NULL, interval TEXT NOT NULL, start_us INTEGER NOT NULL, open REAL, high REAL, low REAL,
    close REAL, volume REAL, trades INTEGER, first_id INTEGER, last_id INTEGER,
    PRIMARY KEY (symbol, interval, start_us));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class VenueJournal:
    """Trades and closed bars of every symbol of ``exchange`` in the SQLite file ``path``."""

    def __init__(self, path: str | Path, exchange: str, durability: str = "process",
                 checkpoint_every_s: float | None = 1.0):
        if durability not in ("process", "power"):
            raise ValueError(f"durability must be 'process' or 'power', got {durability!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.exchange = exchange
        self.con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute(f"PRAGMA synchronous={'NORMAL' if durability == 'process' else 'FULL'}")
        self._convert_row_per_trade_layout()
        self.con.executescript(_SCHEMA)
        self.con.execute("INSERT OR IGNORE INTO meta VALUES ('exchange', ?)", (exchange,))
        self._in_group = False
        self._rows: list[tuple] = []  #: batch rows of the open group, inserted with one executemany
        self._closed = False
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if checkpoint_every_s is not None:  # as IngestJournal: checkpoints off the ingest's loop
            self.con.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(checkpoint_every_s,),
                                                  name=f"wal-checkpoint-{exchange}", daemon=True)
            self._checkpointer.start()

    def _checkpoint_loop(self, every_s: float) -> None:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(every_s):
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.debug("WAL checkpoint of %s skipped: %s", self.path, exc)
        finally:
            con.close()

    def _convert_row_per_trade_layout(self, chunk: int = 10_000) -> None:
        """A file of the earlier layout (a ``trades`` table, one row per trade) moves into ``trade_batches``."""
        con = self.con
        kind = con.execute("SELECT type FROM sqlite_master WHERE name = 'trades'").fetchone()
        if kind is None or kind[0] != "table":
            return
        con.execute("BEGIN")
        try:
            for stmt in _SCHEMA.split("CREATE VIEW")[0].split(";"):  # executescript would commit
                if stmt.strip():
                    con.execute(stmt)
            for (symbol,) in con.execute("SELECT DISTINCT symbol FROM trades").fetchall():
                cur = con.execute("SELECT id, price, qty, time_us, event_us, buyer_maker FROM trades WHERE symbol = ? "
                                  "ORDER BY rowid", (symbol,))
                while rows := cur.fetchmany(chunk):
                    con.execute("INSERT INTO trade_batches VALUES (?,?,?,?,?,?,?)",
                                _batch_row(symbol, [(symbol, *r[:5], bool(r[5])) for r in rows]))
            n = con.execute("SELECT count(*) FROM trades").fetchone()[0]
            con.execute("DROP TABLE trades")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        log.info("%s: %d trades moved to the batch layout", self.path, n)

    def for_symbol(self, symbol: str) -> "SymbolJournal":
        """The journal of one symbol (IngestJournal's interface) inside this file."""
        return SymbolJournal(self, symbol)

    @contextlib.contextmanager
    def group(self):
        """One transaction around every :meth:`SymbolJournal.commit` inside the block (rolled back on error)."""
        self.con.execute("BEGIN")
        self._in_group = True
        try:
            yield self
            if self._rows:
                self.con.executemany("INSERT INTO trade_batches VALUES (?,?,?,?,?,?,?)", self._rows)
        except BaseException:
            self._in_group = False
            self._rows = []
            self.con.execute("ROLLBACK")
            raise
        self._in_group = False
        self._rows = []
        self.con.execute("COMMIT")

    def _write(self, symbol: str, trades: TradeBatch | list[Trade], bars: list[Bar]) -> None:
        if len(trades.ids if isinstance(trades, TradeBatch) else trades):
            self._rows.append(_batch_row(symbol, trades))
        if bars:
            self.con.executemany("INSERT OR REPLACE INTO bars VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                 [(symbol, b.interval, b.start_us, b.open, b.high, b.low, b.close, b.volume, b.trades,
                                   b.first_id, b.last_id) for b in bars])

    def stop_checkpoints(self) -> None:
        """Stop the background checkpointer."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(10)
            self._checkpointer = None

    def close(self) -> None:
        """Stop the checkpointer and close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.stop_checkpoints()
        self.con.close()


def stored_last_id(con: sqlite3.Connection, symbol: str) -> int | None:
    """Highest trade id of ``symbol`` in the venue journal open on ``con`` (None: none stored).

    One index lookup in ``trade_batches`` (``max(id)`` on the ``trades`` view would decode every
    stored trade); a file still in the row-per-trade layout is read as it is, not converted.
    """
    try:
        return con.execute("SELECT max(last_id) FROM trade_batches WHERE symbol = ?", (symbol,)).fetchone()[0]
    except sqlite3.OperationalError:  # no trade_batches: the earlier layout (or an empty file: raises again)
        return con.execute("SELECT max(id) FROM trades WHERE symbol = ?", (symbol,)).fetchone()[0]


def _batch_row(symbol: str, trades: TradeBatch | list[Trade]) -> tuple:
    """The ``trade_batches`` row of ``trades`` (columns, or Trade tuples: a few accepted one by one)."""
    if isinstance(trades, TradeBatch):
        ids, times, events = trades.ids, trades.times_us, trades.events_us
        rows = list(zip(ids, trades.prices, trades.qtys, times, trades.buyer_maker))
        same = events is times or events == times
    elif len(trades) == 1:  # the usual batch at a few trades per symbol and commit
        _, i, p, q, t, e, bm = trades[0]
        return symbol, i, i, 1, t, orjson.dumps(((i, p, q, t, bm),)), None if e == t else orjson.dumps((e,))
    else:
        rows = [(t[1], t[2], t[3], t[4], t[6]) for t in trades]  # Trade: symbol, id, price, qty, time, event, bm
        ids, times, events = [r[0] for r in rows], [r[3] for r in rows], [t[5] for t in trades]
        same = events == times
    return symbol, min(ids), max(ids), len(ids), max(times), orjson.dumps(rows), None if same else orjson.dumps(events)


class SymbolJournal:
    """One symbol's view of a :class:`VenueJournal`, with :class:`~spark_research.streams.journal.IngestJournal`'s interface."""

    def __init__(self, venue: VenueJournal, symbol: str):
        self.venue, self.symbol, self.exchange = venue, symbol, venue.exchange
        self.path = venue.path

    def commit(self, trades: TradeBatch | list[Trade], bars: list[Bar]) -> None:
        """Persist ``trades`` (a :class:`TradeBatch` or :class:`Trade` s) and ``bars``: inside the venue's group
        transaction, or as a transaction of their own."""
        v = self.venue
        if v._in_group:
            v._write(self.symbol, trades, bars)
            return
        with v.group():
            v._write(self.symbol, trades, bars)

    def last_id(self) -> int | None:
        """Highest stored trade id of this symbol, None when nothing is stored."""
        return stored_last_id(self.venue.con, self.symbol)

    def _trades(self, where: str = "", args: tuple = ()) -> list[Trade]:
        """Stored trades of the batches matching ``where``, by id."""
        out: list[Trade] = []
        sym = self.symbol
        for rows, events in self.venue.con.execute(
                f"SELECT rows, event_us FROM trade_batches WHERE symbol = ? {where} ORDER BY first_id", (sym, *args)):
            rows = orjson.loads(rows)
            evs = orjson.loads(events) if events is not None else [r[3] for r in rows]
            out += [Trade(sym, i, p, q, t, e, bm) for (i, p, q, t, bm), e in zip(rows, evs)]
        out.sort(key=lambda t: t.id)  # stable: a duplicate id (a bug upstream) stays visible, next to its twin
        return out

    def trades_since(self, time_us: int) -> list[Trade]:
        """Stored trades with ``time_us >= time_us``, by id (to rebuild open bars)."""
        return [t for t in self._trades("AND max_time_us >= ?", (time_us,)) if t.time_us >= time_us]

    def last_trade(self) -> Trade | None:
        """The stored trade with the highest id."""
        last = self.last_id()
        return None if last is None else self._trades("AND last_id = ?", (last,))[-1]

    def trades(self) -> pd.DataFrame:
        """Stored trades in the trade schema (``seq, ts, price, qty, side, symbol``), by id."""
        df = pd.DataFrame(self._trades(), columns=list(Trade._fields)).astype(
            {"id": "int64", "price": "float64", "qty": "float64", "time_us": "int64", "buyer_maker": "bool"})
        df = df.rename(columns={"id": "seq"})
        df["ts"] = pd.to_datetime(df.pop("time_us") * 1000, utc=True).astype("datetime64[ns, UTC]")
        df["side"] = df.pop("buyer_maker").map({True: "sell", False: "buy"}).astype(str)
        df["symbol"] = self.symbol
        return df[["seq", "ts", "price", "qty", "side", "symbol"]]

    def bars(self, interval: str = "1m") -> pd.DataFrame:
        """Closed bars of ``interval`` in the bar schema, by time."""
        df = pd.read_sql_query("SELECT start_us, open, high, low, close, volume FROM bars WHERE symbol = ? AND "
                               "interval = ? ORDER BY start_us", self.venue.con, params=(self.symbol, interval))
        df.insert(0, "timestamp", pd.to_datetime(df.pop("start_us") * 1000, utc=True).astype("datetime64[ns, UTC]"))
        df["symbol"] = self.symbol
        return df

    def stop_checkpoints(self) -> None:
        """The venue journal's checkpointer serves every symbol: stopped by :meth:`VenueJournal.close`."""

    def close(self) -> None:
        """Closed with the venue journal (:meth:`VenueJournal.close`)."""
