"""Durable store of ingested trades and bars: SQLite in WAL mode, one file per exchange/symbol.

Every batch (trades plus the bars they closed) is one transaction. A committed batch is
*acknowledged*: WAL with ``synchronous=NORMAL`` (``durability="process"``, the default) survives
a ``kill -9`` of the ingest process; ``durability="power"`` (``synchronous=FULL``) also survives
a power cut at the price of an fsync per batch. A restart reads the last stored trade id and
the trades of the still-open bars, so it continues without gaps or duplicates.

Trades and bars can be exported to the Parquet :class:`~spark_research.data.BarStore` with
:meth:`IngestJournal.export_to`.

Example::

    >>> import tempfile, pathlib
    >>> from spark_research.streams.adapters import Trade
    >>> j = IngestJournal(pathlib.Path(tempfile.mkdtemp()) / "x.sqlite", "binance", "BTCUSDT")
    >>> j.commit([Trade("BTCUSDT", 1, 10.0, 1.0, 5, 5, False)], [])
    >>> j.last_id()
    1
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pandas as pd

from spark_research.streams.adapters import Trade, TradeBatch
from spark_research.streams.bars import Bar

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trades (
    id INTEGER NOT NULL, price REAL NOT NULL, qty REAL NOT NULL, time_us INTEGER NOT NULL,
    buyer_maker INTEGER NOT NULL, event_us INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS trades_by_id ON trades(id);
CREATE TABLE IF NOT EXISTS bars (
    interval TEXT NOT NULL, start_us INTEGER NOT NULL, open REAL, high REAL, low REAL, close REAL,
    volume REAL, trades INTEGER, first_id INTEGER, last_id INTEGER, PRIMARY KEY (interval, start_us));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""
log = logging.getLogger(__name__)

# Trade ids deliberately carry no UNIQUE constraint: the client's sequencing is what prevents
# duplicates, and the tests count them instead of letting the database hide them.


class IngestJournal:
    """Trades and closed bars of one ``exchange``/``symbol`` in the SQLite file ``path``."""

    def __init__(self, path: str | Path, exchange: str, symbol: str, durability: str = "process",
                 checkpoint_every_s: float | None = None):
        if durability not in ("process", "power"):
            raise ValueError(f"durability must be 'process' or 'power', got {durability!r}")
        if checkpoint_every_s is not None and not checkpoint_every_s > 0:
            raise ValueError(f"checkpoint_every_s must be > 0 or None, got {checkpoint_every_s!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.exchange, self.symbol = exchange, symbol
        self.con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute(f"PRAGMA synchronous={'NORMAL' if durability == 'process' else 'FULL'}")
        self.con.executescript(_SCHEMA)
        self.con.execute("INSERT OR IGNORE INTO meta VALUES ('exchange', ?), ('symbol', ?)", (exchange, symbol))
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if checkpoint_every_s is not None:
            # A WAL checkpoint fsyncs; done by the committing connection it would stall the
            # ingest's event loop now and then. Here a second connection runs it in a thread
            # (sqlite releases the GIL), and the writer never checkpoints itself.
            self.con.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(checkpoint_every_s,),
                                                  name=f"wal-checkpoint-{symbol}", daemon=True)
            self._checkpointer.start()

    def _checkpoint_loop(self, every_s: float) -> None:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop_checkpoints.wait(every_s):
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # busy or closing: try again next round
                    log.debug("WAL checkpoint of %s skipped: %s", self.path, exc)
        finally:
            con.close()

    def commit(self, trades: TradeBatch | list[Trade], bars: list[Bar]) -> None:
        """Persist ``trades`` (a :class:`TradeBatch` or :class:`Trade` s) and ``bars`` atomically; when this
        returns they are acknowledged."""
        if isinstance(trades, TradeBatch):
            rows = zip(trades.ids, trades.prices, trades.qtys, trades.times_us, trades.events_us, trades.buyer_maker)
        else:  # Trade is (symbol, id, price, qty, time_us, event_us, buyer_maker): bind t[1:] as is
            rows = [t[1:] for t in trades]
        con = self.con
        con.execute("BEGIN")
        try:
            con.executemany("INSERT INTO trades (id, price, qty, time_us, event_us, buyer_maker) "
                            "VALUES (?,?,?,?,?,?)", rows)
            if bars:
                con.executemany("INSERT OR REPLACE INTO bars VALUES (?,?,?,?,?,?,?,?,?,?)",
                                [(b.interval, b.start_us, b.open, b.high, b.low, b.close, b.volume, b.trades,
                                  b.first_id, b.last_id) for b in bars])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def last_id(self) -> int | None:
        """Highest stored trade id, None when nothing is stored."""
        return self.con.execute("SELECT max(id) FROM trades").fetchone()[0]

    def trades_since(self, time_us: int) -> list[Trade]:
        """Stored trades with ``time_us >= time_us``, by id (to rebuild open bars)."""
        rows = self.con.execute("SELECT id, price, qty, time_us, event_us, buyer_maker FROM trades "
                                "WHERE time_us >= ? ORDER BY id", (time_us,)).fetchall()
        return [Trade(self.symbol, i, p, q, t, e, bool(m)) for i, p, q, t, e, m in rows]

    def last_trade(self) -> Trade | None:
        """The stored trade with the highest id."""
        row = self.con.execute("SELECT id, price, qty, time_us, event_us, buyer_maker FROM trades "
                               "ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else Trade(self.symbol, row[0], row[1], row[2], row[3], row[4], bool(row[5]))

    def trades(self) -> pd.DataFrame:
        """All stored trades in the trade schema (``seq, ts, price, qty, side, symbol``), by id."""
        df = pd.read_sql_query("SELECT id AS seq, time_us, price, qty, buyer_maker FROM trades ORDER BY id", self.con)
        df["ts"] = pd.to_datetime(df.pop("time_us") * 1000, utc=True).astype("datetime64[ns, UTC]")
        df["side"] = df.pop("buyer_maker").map({1: "sell", 0: "buy"}).astype(str)
        df["symbol"] = self.symbol
        return df[["seq", "ts", "price", "qty", "side", "symbol"]]

    def bars(self, interval: str = "1m") -> pd.DataFrame:
        """Closed bars of ``interval`` in the bar schema, by time."""
        df = pd.read_sql_query("SELECT start_us, open, high, low, close, volume FROM bars WHERE interval = ? "
                               "ORDER BY start_us", self.con, params=(interval,))
        df.insert(0, "timestamp", pd.to_datetime(df.pop("start_us") * 1000, utc=True).astype("datetime64[ns, UTC]"))
        df["symbol"] = self.symbol
        return df

    def export_to(self, store, intervals: tuple[str, ...] = ("1m",)) -> int:
        """Write stored trades and ``1m`` bars into a :class:`~spark_research.data.BarStore`; returns bytes."""
        written = 0
        trades = self.trades()
        if len(trades):
            written += store.write_trades(trades)
        for iv in intervals:
            bars = self.bars(iv)
            if len(bars):
                written += store.write_bars(bars)
        return written

    def stop_checkpoints(self) -> None:
        """Stop the background checkpointer (the connection stays open for reads and writes)."""
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join(10)
            self._checkpointer = None

    def close(self) -> None:
        """Stop the checkpointer (if any) and close the database connection."""
        self.stop_checkpoints()
        self.con.close()
