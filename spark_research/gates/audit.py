"""Append-only, hash-chained audit log of gate decisions, durable before a decision takes effect.

Storage: an embedded SQLite database in WAL mode. Why SQLite: it is in the standard library,
a committed WAL transaction survives a killed process (SIGKILL) by construction, and with
``synchronous=FULL`` (the default here) the WAL is fsynced on every commit, so an
acknowledged entry also survives a power cut. Several processes (the gate control app, the
``spark gate`` CLI, a paper session) can append to the same file: each append runs in a
``BEGIN IMMEDIATE`` transaction that reads the previous hash and inserts the new entry
atomically, so the chain stays linear.

Every entry stores who, when, which gate, old/new state, the reason, the measured values and
the SHA-256 of the previous entry; its own hash covers all of that. :meth:`AuditLog.verify`
recomputes the chain and detects an edited, deleted (also the last one, through SQLite's
AUTOINCREMENT high-water mark) or reordered entry.

Example::

    >>> import tempfile, pathlib
    >>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "audit.db")
    >>> e = log.append(actor="alice", gate="sma_cross/BTCUSDT", old_state="OPEN", new_state="CLOSED",
    ...                reason="manual: exchange incident", values={"drift_bps": 3.2})
    >>> e.seq, log.verify().ok
    (1, True)
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import orjson
import pandas as pd

from spark_research.config import settings
from spark_research.gates.errors import AuditError

GENESIS = "0" * 64
SYNC_MODES = ("FULL", "NORMAL", "EXTRA")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    kind       TEXT NOT NULL,
    gate       TEXT NOT NULL,
    old_state  TEXT NOT NULL,
    new_state  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    vals       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_gate ON audit(gate, seq);
"""
_COLS = "seq, ts_ns, actor, kind, gate, old_state, new_state, reason, vals, prev_hash, hash"


def default_audit_path() -> Path:
    """``settings().var_dir / "audit" / "gates.db"``."""
    return settings().var_dir / "audit" / "gates.db"


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log. ``values`` are the measurements behind the decision."""

    seq: int
    ts_ns: int
    actor: str
    kind: str
    gate: str
    old_state: str
    new_state: str
    reason: str
    values: dict[str, Any]
    prev_hash: str
    hash: str

    @property
    def time(self) -> pd.Timestamp:
        """``ts_ns`` as a UTC timestamp."""
        return pd.Timestamp(self.ts_ns, unit="ns", tz="UTC")


def _canonical_values(values: dict[str, Any] | None) -> str:
    return orjson.dumps(values or {}, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


def entry_hash(seq: int, ts_ns: int, actor: str, kind: str, gate: str, old_state: str, new_state: str,
               reason: str, vals: str, prev_hash: str) -> str:
    """SHA-256 (hex) over the canonical JSON of an entry's fields and the previous hash."""
    payload = orjson.dumps([seq, ts_ns, actor, kind, gate, old_state, new_state, reason, vals, prev_hash])
    return hashlib.sha256(payload).hexdigest()


@dataclass
class VerifyReport:
    """Result of :meth:`AuditLog.verify`: ``ok`` and the problems found, first one first."""

    entries: int
    head: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"audit OK: {self.entries} entries, head {self.head[:16]}"
        return f"audit BROKEN ({len(self.problems)} problem(s)):\n  " + "\n  ".join(self.problems)


def _row_entry(row: tuple) -> AuditEntry:
    seq, ts_ns, actor, kind, gate, old, new, reason, vals, prev, h = row
    return AuditEntry(seq, ts_ns, actor, kind, gate, old, new, reason, orjson.loads(vals), prev, h)


class AuditLog:
    """The durable audit log (SQLite, WAL). ``path`` defaults to :func:`default_audit_path`.

    ``synchronous``: ``"FULL"`` (fsync per append, survives power loss; the default) or
    ``"NORMAL"`` (no fsync: survives a killed process, not a power cut); None reads
    ``SPARK_AUDIT_SYNC`` (default FULL). Thread-safe; several processes may append.
    """

    durable = True

    def __init__(self, path: str | Path | None = None, *, synchronous: str | None = None, timeout_s: float = 10.0):
        synchronous = synchronous or os.environ.get("SPARK_AUDIT_SYNC") or "FULL"
        if synchronous.upper() not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {SYNC_MODES}, got {synchronous!r}")
        self.path = Path(path) if path is not None else default_audit_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.last: AuditEntry | None = None  #: the last entry this object appended
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise AuditError(f"cannot open audit log at {self.path}: {exc}") from exc

    def append(self, *, actor: str, gate: str, old_state: str, new_state: str, reason: str,
               values: dict[str, Any] | None = None, kind: str = "transition", ts_ns: int | None = None) -> AuditEntry:
        """Append one entry and return it once it is committed (durable per ``synchronous``)."""
        ts_ns = time.time_ns() if ts_ns is None else int(ts_ns)
        vals = _canonical_values(values)
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                    hw = db.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
                    seq = max(last[0] if last else 0, hw[0] if hw else 0) + 1
                    prev = last[1] if last else GENESIS
                    h = entry_hash(seq, ts_ns, actor, kind, gate, old_state, new_state, reason, vals, prev)
                    db.execute(f"INSERT INTO audit ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                               (seq, ts_ns, actor, kind, gate, old_state, new_state, reason, vals, prev, h))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise AuditError(f"audit append to {self.path} failed for gate {gate!r}: {exc}") from exc
        self.last = AuditEntry(seq, ts_ns, actor, kind, gate, old_state, new_state, reason, orjson.loads(vals), prev, h)
        return self.last

    def entries(self, *, gate: str | None = None, since_seq: int = 0, limit: int | None = None,
                newest_first: bool = False) -> list[AuditEntry]:
        """Entries with ``seq > since_seq`` (optionally of one ``gate``), oldest first unless ``newest_first``."""
        sql = f"SELECT {_COLS} FROM audit WHERE seq > ?"
        args: list[Any] = [since_seq]
        if gate is not None:
            sql += " AND gate = ?"
            args.append(gate)
        sql += " ORDER BY seq " + ("DESC" if newest_first else "ASC")
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_row_entry(r) for r in rows]

    def tail(self, n: int = 20, gate: str | None = None) -> list[AuditEntry]:
        """The last ``n`` entries, oldest first."""
        return list(reversed(self.entries(gate=gate, limit=n, newest_first=True)))

    def frame(self, gate: str | None = None) -> pd.DataFrame:
        """Entries as a frame (``time`` column in UTC), oldest first."""
        rows = [asdict(e) | {"time": e.time} for e in self.entries(gate=gate)]
        cols = ["seq", "time", "actor", "kind", "gate", "old_state", "new_state", "reason", "values", "hash"]
        return pd.DataFrame(rows, columns=cols + ["ts_ns", "prev_hash"])[cols]

    def verify(self) -> VerifyReport:
        """Recompute the hash chain; report every edited, deleted or reordered entry."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLS} FROM audit ORDER BY seq ASC").fetchall()
            hw = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
        return verify_rows(rows, high_water=hw[0] if hw else 0)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verify_rows(rows: Iterable[tuple], high_water: int = 0) -> VerifyReport:
    """Check raw ``(seq, ts_ns, actor, kind, gate, old, new, reason, vals, prev_hash, hash)`` rows."""
    problems: list[str] = []
    prev, expected_seq, n = GENESIS, 1, 0
    for row in rows:
        seq, ts_ns, actor, kind, gate, old, new, reason, vals, prev_hash, h = row
        n += 1
        if seq != expected_seq:
            problems.append(f"entry seq={seq}: expected seq={expected_seq} (entry deleted or reordered)")
        if prev_hash != prev:
            problems.append(f"entry seq={seq}: prev_hash does not match the hash of the entry before it "
                            "(entry deleted, inserted or reordered)")
        if entry_hash(seq, ts_ns, actor, kind, gate, old, new, reason, vals, prev_hash) != h:
            problems.append(f"entry seq={seq}: content does not match its hash (entry edited)")
        prev, expected_seq = h, seq + 1
    if high_water > expected_seq - 1:
        problems.append(f"entries seq={expected_seq}..{high_water} were written and are missing (tail deleted)")
    return VerifyReport(entries=n, head=prev, problems=problems)


class MemoryAudit:
    """The same hash chain kept in memory only: for tests and the no-durable-write benchmark."""

    durable = False

    def __init__(self) -> None:
        self._entries: list[AuditEntry] = []
        self._lock = threading.Lock()

    def append(self, *, actor: str, gate: str, old_state: str, new_state: str, reason: str,
               values: dict[str, Any] | None = None, kind: str = "transition", ts_ns: int | None = None) -> AuditEntry:
        ts_ns = time.time_ns() if ts_ns is None else int(ts_ns)
        vals = _canonical_values(values)
        with self._lock:
            seq = len(self._entries) + 1
            prev = self._entries[-1].hash if self._entries else GENESIS
            h = entry_hash(seq, ts_ns, actor, kind, gate, old_state, new_state, reason, vals, prev)
            e = AuditEntry(seq, ts_ns, actor, kind, gate, old_state, new_state, reason, orjson.loads(vals), prev, h)
            self._entries.append(e)
        return e

    def entries(self, *, gate: str | None = None, since_seq: int = 0, limit: int | None = None,
                newest_first: bool = False) -> list[AuditEntry]:
        out = [e for e in self._entries if e.seq > since_seq and (gate is None or e.gate == gate)]
        out = out[::-1] if newest_first else out
        return out[:limit] if limit is not None else out

    def tail(self, n: int = 20, gate: str | None = None) -> list[AuditEntry]:
        return list(reversed(self.entries(gate=gate, limit=n, newest_first=True)))

    def verify(self) -> VerifyReport:
        rows = [(e.seq, e.ts_ns, e.actor, e.kind, e.gate, e.old_state, e.new_state, e.reason,
                 _canonical_values(e.values), e.prev_hash, e.hash) for e in self._entries]
        return verify_rows(rows)

    def close(self) -> None:
        pass
