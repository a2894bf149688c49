"""Finished (and running) sweeps on disk: one directory per sweep id.

Layout under ``settings().var_dir / "sweeps"``::

    <id>/spec.json       the SweepSpec (reload and re-run it)
    <id>/status.json     status, progress, timings, error (rewritten as the sweep runs)
    <id>/results.parquet one row per (symbol, combination): parameters and stats
    <id>/cancel          present when someone asked to cancel (``spark sweep cancel``)

Files are written to a temporary name and renamed into place, so readers never see a torn
file. DuckDB queries across every stored sweep: ``SweepStore().query("SELECT ...")``.

Example::

    >>> import tempfile, pandas as pd
    >>> from spark_research.optimizer.spec import SweepSpec
    >>> store = SweepStore(tempfile.mkdtemp())
    >>> spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"])
    >>> store.save_results("s1", spec, pd.DataFrame({"symbol": ["BTCUSDT"], "fast": [5], "slow": [20], "sharpe": [1.0]}))
    >>> store.load_results("s1")["fast"].tolist()
    [5]
"""
from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from spark_research.config import settings
from spark_research.optimizer.spec import SweepSpec

# no leading dot: "." and ".." would name the sweeps folder itself or its parent
_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")


class SweepNotFound(KeyError):
    """No stored sweep has this id."""


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class SweepStore:
    """Sweeps stored under ``root`` (default ``settings().var_dir / "sweeps"``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root) if root is not None else settings().var_dir / "sweeps"

    def path(self, sweep_id: str) -> Path:
        """Directory of ``sweep_id`` (validated: letters, digits, ``_.-``)."""
        if not isinstance(sweep_id, str) or not _ID.match(sweep_id):
            raise ValueError(f"sweep id must match {_ID.pattern}, got {sweep_id!r}")
        return self.root / sweep_id

    def save_spec(self, sweep_id: str, spec: SweepSpec) -> None:
        _atomic_write(self.path(sweep_id) / "spec.json", spec.to_json().encode())

    def save_status(self, sweep_id: str, status: dict[str, Any]) -> None:
        _atomic_write(self.path(sweep_id) / "status.json", json.dumps(status, default=str, sort_keys=True).encode())

    def save_results(self, sweep_id: str, spec: SweepSpec, table: pd.DataFrame) -> None:
        """Write the spec and the results table (Parquet) of ``sweep_id``."""
        self.save_spec(sweep_id, spec)
        d = self.path(sweep_id)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".results.{uuid.uuid4().hex}.parquet"
        table.to_parquet(tmp, index=False)
        os.replace(tmp, d / "results.parquet")

    def _require(self, sweep_id: str) -> Path:
        d = self.path(sweep_id)
        if not (d / "spec.json").exists():
            raise SweepNotFound(f"no sweep {sweep_id!r} under {self.root}")
        return d

    def load_spec(self, sweep_id: str) -> SweepSpec:
        """The stored spec; one whose strategy cannot be found here (a notebook class) loads unresolved."""
        from spark_research.backtest.registry import StrategyError
        from spark_research.optimizer.spec import SpecError

        d = json.loads((self._require(sweep_id) / "spec.json").read_text())
        try:
            return SweepSpec.from_dict(d)
        except (SpecError, StrategyError) as exc:
            if not str(exc).startswith("strategy"):
                raise
            return SweepSpec.from_dict(d, resolve=False)

    def load_status(self, sweep_id: str) -> dict[str, Any]:
        p = self._require(sweep_id) / "status.json"
        return json.loads(p.read_text()) if p.exists() else {"id": sweep_id, "status": "unknown"}

    def load_results(self, sweep_id: str) -> pd.DataFrame:
        p = self._require(sweep_id) / "results.parquet"
        if not p.exists():
            raise SweepNotFound(f"sweep {sweep_id!r} has no results (status: {self.load_status(sweep_id).get('status')})")
        return pd.read_parquet(p)

    def request_cancel(self, sweep_id: str) -> None:
        """Leave a cancel marker the running sweep's process picks up."""
        _atomic_write(self._require(sweep_id) / "cancel", b"cancel\n")

    def cancel_requested(self, sweep_id: str) -> bool:
        return (self.path(sweep_id) / "cancel").exists()

    def ids(self) -> list[str]:
        """Stored sweep ids, oldest first."""
        if not self.root.is_dir():
            return []
        dirs = [p for p in self.root.iterdir() if (p / "spec.json").exists()]
        return [p.name for p in sorted(dirs, key=lambda p: ((p / "spec.json").stat().st_mtime, p.name))]

    def list(self) -> pd.DataFrame:
        """One row per stored sweep: id, strategy, user, status, steps, created, finished."""
        rows = []
        for sid in self.ids():
            spec, st = self.load_spec(sid), self.load_status(sid)
            rows.append({"id": sid, "strategy": spec.strategy_name, "symbols": ",".join(spec.symbols), "user": spec.user,
                         "priority": spec.priority, "status": st.get("status"), "steps_done": st.get("steps_done"),
                         "steps_total": st.get("steps_total"), "created": st.get("created"),
                         "finished": st.get("finished")})
        df = pd.DataFrame(rows, columns=["id", "strategy", "symbols", "user", "priority", "status",
                                         "steps_done", "steps_total", "created", "finished"])
        for col in ("created", "finished"):  # epoch seconds -> UTC timestamps
            df[col] = pd.to_datetime(pd.to_numeric(df[col], errors="coerce"), unit="s", utc=True).dt.floor("s")
        return df

    def query(self, sql: str) -> pd.DataFrame:
        """DuckDB SQL over view ``results`` (every stored results file, with a ``sweep_id`` column)."""
        import duckdb

        with duckdb.connect() as con:
            glob = str(self.root / "*" / "results.parquet")
            con.execute(f"CREATE VIEW results AS SELECT *, regexp_extract(filename, '([^/]+)/results.parquet$', 1) "
                        f"AS sweep_id FROM read_parquet('{glob}', filename=true, union_by_name=true)")
            return con.sql(sql).to_arrow_table().to_pandas()
