"""One SQLite file for every symbol of a venue feed, so one transaction commits all of them.

A feed carrying 25 symbols at 100 trades/s each would otherwise commit 2,500 small
transactions a second into 25 files; here the batches of every symbol that received trades
in one event-loop turn go into one transaction (group commit), with the same durability as
:class:`~spark_research.streams.journal.IngestJournal` (WAL, ``synchronous=NORMAL`` or ``FULL``).

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

import pandas as pd

from spark_research.streams.adapters import Trade
from spark_research.streams.bars import Bar

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trades (
    symbol TEXT NOT NULL, id INTEGER NOT NULL, price REAL NOT NULL, qty REAL NOT NULL, time_us INTEGER NOT NULL,
    buyer_maker INTEGER NOT NULL, event_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS trades_by_symbol_id ON trades(symbol, id);
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
        self.con.executescript(_SCHEMA)
        self.con.execute("INSERT OR IGNORE INTO meta VALUES ('exchange', ?)", (exchange,))
        self._in_group = False
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
        except BaseException:
            self._in_group = False
            self.con.execute("ROLLBACK")
            raise
        self._in_group = False
        self.con.execute("COMMIT")

    def _write(self, symbol: str, trades: list[Trade], bars: list[Bar]) -> None:
        con = self.con
        con.executemany("INSERT INTO trades (symbol, id, price, qty, time_us, event_us, buyer_maker) "
                        "VALUES (?,?,?,?,?,?,?)", trades)  # Trade is (symbol, id, price, qty, time_us, event_us, bm)
        if bars:
            con.executemany("INSERT OR REPLACE INTO bars VALUES (?,?,?,?,?,?,?,?,?,?,?)",
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


class SymbolJournal:
    """One symbol's view of a :class:`VenueJournal`, with :class:`~spark_research.streams.journal.IngestJournal`'s interface."""

    def __init__(self, venue: VenueJournal, symbol: str):
        self.venue, self.symbol, self.exchange = venue, symbol, venue.exchange
        self.path = venue.path

    def commit(self, trades: list[Trade], bars: list[Bar]) -> None:
        """Persist ``trades`` and ``bars``: inside the venue's group transaction, or as a transaction of their own."""
        v = self.venue
        if v._in_group:
            v._write(self.symbol, trades, bars)
            return
        with v.group():
            v._write(self.symbol, trades, bars)

    def last_id(self) -> int | None:
        """Highest stored trade id of this symbol, None when nothing is stored."""
        return self.venue.con.execute("SELECT max(id) FROM trades WHERE symbol = ?", (self.symbol,)).fetchone()[0]

    def trades_since(self, time_us: int) -> list[Trade]:
        """Stored trades with ``time_us >= time_us``, by id (to rebuild open bars)."""
        rows = self.venue.con.execute("SELECT id, price, qty, time_us, event_us, buyer_maker FROM trades "
                                      "WHERE symbol = ? AND time_us >= ? ORDER BY id", (self.symbol, time_us)).fetchall()
        return [Trade(self.symbol, i, p, q, t, e, bool(m)) for i, p, q, t, e, m in rows]

    def last_trade(self) -> Trade | None:
        """The stored trade with the highest id."""
        row = self.venue.con.execute("SELECT id, price, qty, time_us, event_us, buyer_maker FROM trades WHERE symbol = ? "
                                     "ORDER BY id DESC LIMIT 1", (self.symbol,)).fetchone()
        return None if row is None else Trade(self.symbol, row[0], row[1], row[2], row[3], row[4], bool(row[5]))

    def trades(self) -> pd.DataFrame:
        """Stored trades in the trade schema (``seq, ts, price, qty, side, symbol``), by id."""
        df = pd.read_sql_query("SELECT id AS seq, time_us, price, qty, buyer_maker FROM trades WHERE symbol = ? "
                               "ORDER BY id", self.venue.con, params=(self.symbol,))
        df["ts"] = pd.to_datetime(df.pop("time_us") * 1000, utc=True).astype("datetime64[ns, UTC]")
        df["side"] = df.pop("buyer_maker").map({1: "sell", 0: "buy"}).astype(str)
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
