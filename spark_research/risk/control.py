"""Operator control of risk states from outside the trading process (CLI, app).

The trading process's :class:`~spark_research.risk.engine.RiskEngine` owns the checks; an
operator elsewhere writes the new state to the shared store (``state:<scope>``) after
appending it to the audit log, and the engine adopts it on its next bar
(:meth:`RiskEngine.sync`, through SQLite's ``data_version``: no polling of rows). A reload
request bumps ``config_version`` once the file validated; the engine then reloads and audits
the change. Authentication: :func:`authenticate_operator` (the gates' bcrypt user directory).

Example::

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> ctl = RiskControl(root)
    >>> ctl.set_state("global", "HALTED", actor="cli:alice", reason="exchange incident")
    'HALTED'
    >>> ctl.states()["global"]
    'HALTED'
    >>> ctl.close()
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from spark_research.gates.audit import AuditLog
from spark_research.gates.auth import UserDirectory
from spark_research.risk.config import RiskConfig
from spark_research.risk.engine import GLOBAL, TradingState, _scope_name
from spark_research.risk.errors import RiskPermissionError
from spark_research.risk.store import RiskStore, risk_paths


def authenticate_operator(user: str | None, password: str | None, users: UserDirectory | None = None) -> str:
    """The user name if ``user``/``password`` are an operator's, else :class:`RiskPermissionError`."""
    users = users or UserDirectory.default()
    if not user or not users.authenticate(user, password or ""):
        raise RiskPermissionError(f"user {user!r}: unknown user or wrong password")
    if not users.is_operator(user):
        raise RiskPermissionError(f"user {user!r} has role {users.role(user)!r}: "
                                  "only an operator may change risk states")
    return user


class RiskControl:
    """The store and audit log under ``root`` (default ``$SPARK_VAR/risk``), for operators."""

    def __init__(self, root: str | Path | None = None):
        state_db, audit_db = risk_paths(root)
        self.store, self.audit = RiskStore(state_db), AuditLog(audit_db)

    def states(self) -> dict[str, str]:
        """Every scope's state as stored (``global`` always present)."""
        out = {GLOBAL: "ACTIVE"}
        docs = self.store.load("state:")
        out.update({k[6:]: v["state"] for k, v in sorted(docs.items())})
        gates = self.store.load("gates").get("gates", {})
        for strat, symbols in gates.items():
            if symbols and out.get(f"strategy:{strat}", "ACTIVE") == "ACTIVE":
                out[f"strategy:{strat}"] = "REDUCING"
        return out

    def status(self) -> dict[str, Any]:
        """States, the day's counters and the book as the trading process last persisted them."""
        docs = self.store.load()
        book = docs.get("book", {})
        day = docs.get("day", {})
        marks = book.get("marks", {})
        exposure = sum(q * marks.get(s, a) for s, (q, a, _) in book.get("positions", {}).items())
        equity = book.get("cash", 0.0) + exposure if book else None
        return {"states": self.states(), "day": day.get("day"), "day_start_equity": day.get("start_equity"),
                "day_peak_equity": day.get("peak_equity"), "equity": equity,
                "day_pnl": None if equity is None or "start_equity" not in day else equity - day["start_equity"],
                "realised": book.get("realised"), "positions": book.get("positions", {})}

    def set_state(self, scope: str, state: str, *, actor: str, reason: str) -> str:
        """Audit, then store, ``scope``'s new state; a running engine adopts it on its next bar."""
        scope = _scope_name(scope)
        new = TradingState[state].name if isinstance(state, str) else TradingState(state).name
        if not reason or not reason.strip():
            raise ValueError(f"reason must be a non-empty text to set {scope} to {new}, got {reason!r}")
        old = self.states().get(scope, "ACTIVE")
        now = time.time_ns()
        self.audit.append(actor=actor, gate=f"risk/{scope}", old_state=old, new_state=new, reason=reason.strip(),
                          values={"cause": "manual", "via": "control"}, kind="risk_state", ts_ns=now)
        self.store.save({f"state:{scope}": {"state": new, "cause": "manual", "actor": actor,
                                            "reason": reason.strip(), "ts": now}})
        return new

    def refuse(self, scope: str, action: str, *, actor: str, reason: str) -> None:
        """Record a refused attempt (wrong password, not an operator)."""
        cur = self.states().get(scope, "ACTIVE")
        self.audit.append(actor=actor or "anonymous", gate=f"risk/{scope}", old_state=cur, new_state=cur,
                          reason=f"refused {action}: {reason}", values={"action": action}, kind="risk_refused")

    def request_reload(self, path: str | Path | None = None, *, actor: str) -> RiskConfig:
        """Validate the config file (raises naming the field), then ask running engines to reload it."""
        cfg = RiskConfig.load(path)
        version = self.store.load("config_version").get("config_version", {}).get("version", 0) + 1
        self.audit.append(actor=actor, gate="risk/config", old_state="", new_state="", kind="risk_config",
                          reason=f"reload requested: {cfg.source}", values={"digest": cfg.digest, "version": version})
        self.store.save({"config_version": {"version": version, "actor": actor, "digest": cfg.digest}})
        return cfg

    def close(self) -> None:
        self.store.close()
        self.audit.close()
