"""Durable state of the risk engine: trading states and the day's counters, across restarts and ``kill -9``.

One SQLite database in WAL mode (the same choice, for the same reasons, as the gates' audit
log): each save is one transaction, so a killed process leaves either the previous or the new
snapshot, never half of one. ``synchronous=NORMAL`` (the default) survives a killed process;
``FULL`` also a power cut. Rows are keyed documents (JSON): ``state:<scope>`` per trading-state
scope (written by the engine and by ``spark risk halt|reduce|resume``), ``day`` (the day, its
start and peak equity), ``book`` and ``strategy:<name>`` (portfolio snapshots: cash, realised
PnL, positions), ``gates`` (gates seen CLOSED), ``config_version`` (bumped by ``spark risk reload``).

Another process's commit is seen through ``PRAGMA data_version`` (:meth:`RiskStore.changed`), so
a running engine adopts CLI changes on its next bar without polling the rows.

Example::

    >>> import tempfile, pathlib
    >>> s = RiskStore(pathlib.Path(tempfile.mkdtemp()) / "risk.db")
    >>> s.save({"day": {"day": 20000, "start_equity": 1e5}})
    >>> s.load()["day"]["start_equity"]
    100000.0
"""
from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Mapping

import orjson

from spark_research.config import settings
from spark_research.risk.errors import RiskError

_SCHEMA = "CREATE TABLE IF NOT EXISTS risk_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def default_risk_dir() -> Path:
    """``$SPARK_VAR/risk``: the state database and the risk audit log."""
    return settings().var_dir / "risk"


class RiskStore:
    """Keyed JSON documents in SQLite (WAL). Thread-safe; several processes may write."""

    def __init__(self, path: str | Path | None = None, *, synchronous: str = "NORMAL", timeout_s: float = 10.0):
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = Path(path) if path is not None else default_risk_dir() / "state.db"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise RiskError(f"cannot open risk state at {self.path}: {exc}") from exc
        self._version = self._data_version()

    def _data_version(self) -> int:
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def save(self, docs: Mapping[str, Any]) -> None:
        """Write every ``key: document`` of ``docs`` in one transaction (all or none)."""
        rows = [(k, orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode()) for k, v in docs.items()]
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany("INSERT INTO risk_kv (key, value) VALUES (?, ?) "
                                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value", rows)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise RiskError(f"risk state save to {self.path} failed for {sorted(docs)}: {exc}") from exc

    def load(self, prefix: str = "") -> dict[str, Any]:
        """Every document (whose key starts with ``prefix``)."""
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM risk_kv WHERE key >= ? AND key < ?",
                                    (prefix, prefix + "\U0010ffff")).fetchall()
            self._version = self._data_version()
        return {k: orjson.loads(v) for k, v in rows}

    def changed(self) -> bool:
        """True when another connection committed since the last :meth:`load` or :meth:`changed`."""
        with self._lock:
            v = self._data_version()
            if v != self._version:
                self._version = v
                return True
            return False

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "RiskStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def risk_paths(root: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """``(state db, audit db)`` under ``root`` (default :func:`default_risk_dir`)."""
    base = Path(root) if root is not None else default_risk_dir()
    return base / "state.db", base / "audit.db"
