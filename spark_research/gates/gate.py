"""The trading gate per strategy/symbol: OPEN -> CLOSED -> HALF_OPEN (probation) -> OPEN.

Rules (all thresholds in :class:`GateThresholds`):

* OPEN -> CLOSED when a fill breaches a threshold (single-fill drift, rolling mean drift,
  absolute price drift, rolling PnL delta), the error rate is too high, or data is missing or
  stale (fail closed: no bar for ``max_stale_s`` closes the gate).
* CLOSED -> HALF_OPEN after ``cooldown_s`` (automatic closes only; a manual close holds until
  an operator opens the gate). Probation trades ``probation_size`` of the normal size.
* HALF_OPEN -> OPEN after ``probation_fills`` clean fills; any breach sends it back to CLOSED.
* Manual close/open by an operator, with a mandatory reason.

Every state change is appended to the audit log *before* it takes effect: if the audit write
fails, the state does not change and the error propagates. Orders are refused while CLOSED.

Example::

    >>> from spark_research.gates.audit import MemoryAudit
    >>> gate = Gate("sma_cross", "BTCUSDT", GateThresholds(max_fill_drift_bps=50), MemoryAudit())
    >>> gate.heartbeat(0)
    >>> gate.close("alice", "manual: venue maintenance", now_ns=1)
    <GateState.CLOSED: 2>
    >>> gate.open("alice", "manual: maintenance over", now_ns=2)
    <GateState.OPEN: 0>
"""
from __future__ import annotations

import functools
import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any, Protocol

import pandas as pd

from spark_research import metrics
from spark_research.gates.audit import AuditEntry
from spark_research.gates.drift import FillDrift, RollingDrift
from spark_research.gates.errors import (
    EmptyReasonError,
    GatePermissionError,
    InvalidMeasurementError,
    OrderRefusedError,
    UnknownGateError,
)

NS = 1_000_000_000
SYSTEM = "system"


class GateState(IntEnum):
    """Gate states; the value is what ``gate_state`` reports."""

    OPEN = 0
    HALF_OPEN = 1
    CLOSED = 2


class AuditSink(Protocol):
    """What a gate needs from an audit log (:class:`~spark_research.gates.audit.AuditLog`)."""

    def append(self, *, actor: str, gate: str, old_state: str, new_state: str, reason: str,
               values: dict[str, Any] | None = None, kind: str = "transition",
               ts_ns: int | None = None) -> AuditEntry: ...


@dataclass(frozen=True)
class GateThresholds:
    """Limits of one gate. ``None`` disables a check.

    Example::

        >>> GateThresholds(max_drift_bps=10).probation_fills
        5
    """

    max_fill_drift_bps: float | None = 100.0  #: one fill's |drift| in bps
    max_drift_bps: float | None = 25.0  #: rolling mean |drift| in bps over ``window`` fills
    max_price_drift_abs: float | None = None  #: one fill's |drift| in price units
    max_pnl_delta: float | None = 50.0  #: |rolling sum of live - paper PnL| (quote currency)
    max_error_rate: float | None = 0.2  #: errors / (errors + fills) over the last ``window`` events
    min_events_for_rate: int = 5  #: events needed before the error rate counts
    max_stale_s: float | None = 180.0  #: seconds without a bar before the gate closes
    window: int = 20  #: rolling window length (fills / events)
    min_fills_for_mean: int = 3  #: fills needed before the rolling mean counts
    cooldown_s: float = 300.0  #: CLOSED -> HALF_OPEN after this many seconds (auto closes)
    probation_fills: int = 5  #: clean fills in HALF_OPEN before OPEN
    probation_size: float = 0.25  #: order size factor in HALF_OPEN

    def __post_init__(self) -> None:
        for name in ("max_fill_drift_bps", "max_drift_bps", "max_price_drift_abs", "max_pnl_delta",
                     "max_error_rate", "max_stale_s"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"threshold {name} must be a finite number > 0 or None, got {v!r}")
        for name in ("window", "probation_fills", "min_events_for_rate", "min_fills_for_mean"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"threshold {name} must be an integer >= 1, got {v!r}")
        if not (math.isfinite(self.cooldown_s) and self.cooldown_s >= 0):
            raise ValueError(f"threshold cooldown_s must be >= 0, got {self.cooldown_s!r}")
        if not (0 < self.probation_size <= 1):
            raise ValueError(f"threshold probation_size must be in (0, 1], got {self.probation_size!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of one gate evaluation."""

    old: GateState
    new: GateState
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.old != self.new


def _require_reason(reason: str, action: str, gate: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise EmptyReasonError(f"reason must be a non-empty text to {action} gate {gate}, got {reason!r}")
    return reason.strip()


def _check_time(name: str, value: int) -> int:
    if not isinstance(value, (int,)) or isinstance(value, bool):
        if isinstance(value, float) and math.isfinite(value):
            return int(value)
        raise InvalidMeasurementError(f"{name} must be integer nanoseconds, got {value!r}")
    return value


def _locked(method):
    """Run a gate method under the gate's lock: a manual action from the app's thread and an
    automatic decision from the bar feed's thread never interleave."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class Gate:
    """One gate (strategy x symbol). Thread-safe: every decision runs under the gate's lock."""

    def __init__(self, strategy: str, symbol: str, thresholds: GateThresholds | None = None,
                 audit: AuditSink | None = None, *, state: GateState = GateState.OPEN,
                 created_ns: int | None = None):
        if audit is None:
            from spark_research.gates.audit import MemoryAudit

            audit = MemoryAudit()
        self.strategy, self.symbol = strategy, symbol
        self._lock = threading.RLock()
        self.name = f"{strategy}/{symbol}"
        self.thresholds = thresholds or GateThresholds()
        self.audit = audit
        self.state = state
        self.manual_hold = False
        self.closed_ns: int | None = None
        self.close_reason = ""
        self.created_ns = time.time_ns() if created_ns is None else created_ns
        self.last_data_ns: int | None = None
        self.clean_fills = 0
        self.rolling = RollingDrift(self.thresholds.window)
        self._events: deque[int] = deque()  # 1 = error, 0 = fill
        self._errors = 0
        self.last_drift: FillDrift | None = None
        # label children resolved once: the hot path only calls .set/.inc/.observe
        self._m_state = metrics.GATE_STATE.labels(strategy=strategy, symbol=symbol)
        self._m_drift_abs = metrics.DRIFT_PRICE_ABS.labels(strategy=strategy, symbol=symbol)
        self._m_drift_bps = metrics.DRIFT_BPS.labels(strategy=strategy, symbol=symbol)
        self._m_pnl = metrics.PAPER_LIVE_DELTA_PNL.labels(strategy=strategy, symbol=symbol)
        self._m_latency = metrics.GATE_DECISION_LATENCY_MS
        self.cum_pnl_delta = 0.0
        self._m_state.set(int(self.state))

    # ------------------------------------------------------------------ inputs
    @_locked
    def heartbeat(self, data_ts_ns: int) -> None:
        """Record that market data up to ``data_ts_ns`` arrived (a bar closed)."""
        data_ts_ns = _check_time("data_ts_ns", data_ts_ns)
        if self.last_data_ns is None or data_ts_ns > self.last_data_ns:
            self.last_data_ns = data_ts_ns

    @_locked
    def observe_fill(self, drift: FillDrift, now_ns: int | None = None) -> Decision:
        """Account one live fill's drift and decide. Raises on NaN/inf measurements."""
        t0 = time.perf_counter_ns()
        drift.check_finite()
        now_ns = drift.ts if now_ns is None else _check_time("now_ns", now_ns)
        th = self.thresholds
        self.last_drift = drift
        self.rolling.add(drift.drift_bps, drift.pnl_delta)
        self.cum_pnl_delta += drift.pnl_delta
        self._push_event(0)
        self._m_drift_abs.set(drift.price_drift_abs)
        self._m_drift_bps.set(self.rolling.mean_bps)
        self._m_pnl.set(self.cum_pnl_delta)
        old = self.state
        decision = self._expire(now_ns)
        if decision is None:
            breach = self._breach(drift)
            if breach is not None and self.state != GateState.CLOSED:
                decision = self._transition(GateState.CLOSED, breach, SYSTEM, now_ns)
            elif self.state == GateState.HALF_OPEN:
                self.clean_fills += 1
                if self.clean_fills >= th.probation_fills:
                    decision = self._transition(GateState.OPEN, f"probation passed: {self.clean_fills} clean fills",
                                                SYSTEM, now_ns)
        self._m_latency.observe((time.perf_counter_ns() - t0) / 1e6)
        return decision or Decision(old, self.state)

    @_locked
    def observe_error(self, reason: str, now_ns: int) -> Decision:
        """Account one venue error (reject, timeout) and decide on the error rate."""
        t0 = time.perf_counter_ns()
        now_ns = _check_time("now_ns", now_ns)
        self._push_event(1)
        old = self.state
        decision = self._expire(now_ns)
        th = self.thresholds
        if decision is None and self.state != GateState.CLOSED and th.max_error_rate is not None:
            n = len(self._events)
            if n >= th.min_events_for_rate and self._errors / n > th.max_error_rate:
                decision = self._transition(GateState.CLOSED, "error_rate", SYSTEM, now_ns,
                                            extra={"last_error": reason})
        self._m_latency.observe((time.perf_counter_ns() - t0) / 1e6)
        return decision or Decision(old, self.state)

    @_locked
    def tick(self, now_ns: int) -> Decision:
        """Time-driven checks: stale/missing data closes; an expired cooldown starts probation."""
        t0 = time.perf_counter_ns()
        now_ns = _check_time("now_ns", now_ns)
        old = self.state
        decision = self._expire(now_ns)
        if decision is None and self.state == GateState.CLOSED and not self.manual_hold:
            cooled = self.closed_ns is not None and now_ns - self.closed_ns >= self.thresholds.cooldown_s * NS
            if cooled and self._data_fresh(now_ns):  # probation only on live data
                self.rolling.clear()
                self._events.clear()
                self._errors = 0
                decision = self._transition(GateState.HALF_OPEN, "cooldown elapsed: probation", SYSTEM, now_ns)
        self._m_latency.observe((time.perf_counter_ns() - t0) / 1e6)
        return decision or Decision(old, self.state)

    @_locked
    def check_order(self, now_ns: int) -> float:
        """Size factor for an order now (1.0 OPEN, ``probation_size`` HALF_OPEN).

        Raises :class:`OrderRefusedError` while CLOSED; evaluates staleness first (fail closed).
        """
        self.tick(now_ns)
        if self.state == GateState.CLOSED:
            raise OrderRefusedError(f"gate {self.name} is CLOSED ({self.close_reason}): order refused")
        return 1.0 if self.state == GateState.OPEN else self.thresholds.probation_size

    # ------------------------------------------------------------------ manual
    @_locked
    def close(self, actor: str, reason: str, now_ns: int | None = None) -> GateState:
        """Close the gate by hand (holds until opened by hand). ``reason`` is mandatory."""
        reason = _require_reason(reason, "close", self.name)
        actor = _require_actor(actor, self.name)
        now_ns = time.time_ns() if now_ns is None else _check_time("now_ns", now_ns)
        self._transition(GateState.CLOSED, reason, actor, now_ns, kind="manual", manual=True)
        return self.state

    @_locked
    def open(self, actor: str, reason: str, now_ns: int | None = None) -> GateState:
        """Open the gate by hand (ends a manual hold and any probation). ``reason`` is mandatory."""
        reason = _require_reason(reason, "open", self.name)
        actor = _require_actor(actor, self.name)
        now_ns = time.time_ns() if now_ns is None else _check_time("now_ns", now_ns)
        self.rolling.clear()
        self._events.clear()
        self._errors = 0
        self._transition(GateState.OPEN, reason, actor, now_ns, kind="manual")
        return self.state

    # ------------------------------------------------------------------ internals
    def _push_event(self, is_error: int) -> None:
        self._events.append(is_error)
        self._errors += is_error
        if len(self._events) > self.thresholds.window:
            self._errors -= self._events.popleft()

    def _data_fresh(self, now_ns: int) -> bool:
        limit = self.thresholds.max_stale_s
        if limit is None:
            return True
        return self.last_data_ns is not None and now_ns - self.last_data_ns <= limit * NS

    def _expire(self, now_ns: int) -> Decision | None:
        """Fail closed on missing or stale data."""
        limit = self.thresholds.max_stale_s
        if limit is None or self.state == GateState.CLOSED:
            return None
        if self.last_data_ns is None:
            if now_ns - self.created_ns > limit * NS:
                return self._transition(GateState.CLOSED, "missing_data", SYSTEM, now_ns)
            return None
        if now_ns - self.last_data_ns > limit * NS:
            return self._transition(GateState.CLOSED, "stale_data", SYSTEM, now_ns,
                                    extra={"data_age_s": (now_ns - self.last_data_ns) / NS})
        return None

    def _breach(self, d: FillDrift) -> str | None:
        th, r = self.thresholds, self.rolling
        if th.max_fill_drift_bps is not None and d.drift_bps > th.max_fill_drift_bps:
            return "fill_drift_bps"
        if th.max_price_drift_abs is not None and d.price_drift_abs > th.max_price_drift_abs:
            return "price_drift"
        if th.max_drift_bps is not None and r.count >= th.min_fills_for_mean and r.mean_bps > th.max_drift_bps:
            return "drift_bps"
        if th.max_pnl_delta is not None and abs(r.pnl_delta) > th.max_pnl_delta:
            return "pnl_delta"
        return None

    def measured(self) -> dict[str, Any]:
        """The values a decision is based on (recorded in the audit entry)."""
        d = self.last_drift
        n = len(self._events)
        return {
            "last_fill_drift_bps": None if d is None else d.drift_bps,
            "last_fill_price_drift_abs": None if d is None else d.price_drift_abs,
            "rolling_mean_bps": self.rolling.mean_bps,
            "rolling_pnl_delta": self.rolling.pnl_delta,
            "rolling_fills": self.rolling.count,
            "error_rate": self._errors / n if n else 0.0,
            "last_data_ns": self.last_data_ns,
            "clean_fills": self.clean_fills,
        }

    def _transition(self, new: GateState, reason: str, actor: str, now_ns: int, *, kind: str = "transition",
                    manual: bool = False, extra: dict[str, Any] | None = None) -> Decision:
        old = self.state
        values = self.measured()
        if extra:
            values.update(extra)
        # durable first: if the append raises, nothing below runs and the state is unchanged
        self.audit.append(actor=actor, gate=self.name, old_state=old.name, new_state=new.name, reason=reason,
                          values=values, kind=kind, ts_ns=now_ns)
        self.state = new
        self.clean_fills = 0
        if new == GateState.CLOSED:
            self.closed_ns, self.close_reason, self.manual_hold = now_ns, reason, manual
            metrics.GATE_CLOSE.labels(strategy=self.strategy, symbol=self.symbol,
                                      reason="manual" if manual else reason).inc()
        else:
            self.manual_hold = False
        self._m_state.set(int(new))
        return Decision(old, new, reason)

    @_locked
    def apply_entry(self, entry: AuditEntry) -> None:
        """Adopt the state recorded by an audit entry written elsewhere (another process)."""
        new = GateState[entry.new_state]
        self.state = new
        self.clean_fills = 0
        if new == GateState.CLOSED:
            self.closed_ns, self.close_reason = entry.ts_ns, entry.reason
            self.manual_hold = entry.kind == "manual"
        else:
            self.manual_hold = False
        self._m_state.set(int(new))

    def snapshot(self) -> dict[str, Any]:
        """State and measurements as a flat dict (status tables, the app)."""
        return {"gate": self.name, "strategy": self.strategy, "symbol": self.symbol, "state": self.state.name,
                "manual_hold": self.manual_hold, "close_reason": self.close_reason if self.state != GateState.OPEN else "",
                **self.measured()}

    def __repr__(self) -> str:
        return f"Gate({self.name!r}, {self.state.name})"


def _require_actor(actor: str, gate: str) -> str:
    if not isinstance(actor, str) or not actor.strip():
        raise GatePermissionError(f"actor must be a logged-in user to change gate {gate}, got {actor!r}")
    return actor.strip()


class GateBook:
    """All gates of a process, sharing one audit log; thread-safe; follows other writers.

    ``authorize(actor) -> bool`` (optional) decides who may act by hand; a refused attempt is
    written to the audit log (kind ``refused``) and raises :class:`GatePermissionError`.

    Example::

        >>> from spark_research.gates.audit import MemoryAudit
        >>> book = GateBook(MemoryAudit())
        >>> _ = book.add("sma_cross", "BTCUSDT")
        >>> book.close("sma_cross", "BTCUSDT", actor="alice", reason="manual test").name
        'CLOSED'
        >>> book.get("sma_cross", "ETHUSDT")
        Traceback (most recent call last):
        ...
        spark_research.gates.errors.UnknownGateError: unknown gate 'sma_cross/ETHUSDT'; known: ['sma_cross/BTCUSDT']
    """

    def __init__(self, audit: AuditSink, *, thresholds: GateThresholds | None = None, authorize=None):
        self.audit = audit
        self.thresholds = thresholds or GateThresholds()
        self.authorize = authorize
        self._gates: dict[str, Gate] = {}
        self._lock = threading.RLock()
        self._seen_seq = 0

    @classmethod
    def from_audit(cls, audit: AuditSink, **kw: Any) -> "GateBook":
        """A book whose gates and states are rebuilt from the audit log's entries."""
        book = cls(audit, **kw)
        book.sync()
        return book

    def add(self, strategy: str, symbol: str, thresholds: GateThresholds | None = None,
            now_ns: int | None = None) -> Gate:
        """Register a gate (idempotent); a new gate starts OPEN and is recorded in the audit log."""
        with self._lock:
            self.sync()
            name = f"{strategy}/{symbol}"
            gate = self._gates.get(name)
            if gate is None:
                gate = Gate(strategy, symbol, thresholds or self.thresholds, self.audit, created_ns=now_ns)
                self.audit.append(actor=SYSTEM, gate=name, old_state="NONE", new_state=gate.state.name,
                                  reason="gate created", values=asdict(gate.thresholds), kind="created",
                                  ts_ns=gate.created_ns)
                self._gates[name] = gate
            elif thresholds is not None:
                gate.thresholds = thresholds
            return gate

    def get(self, strategy: str, symbol: str | None = None) -> Gate:
        """The gate of ``strategy``/``symbol`` (or a ``"strategy/symbol"`` name)."""
        name = strategy if symbol is None else f"{strategy}/{symbol}"
        try:
            return self._gates[name]
        except KeyError:
            raise UnknownGateError(f"unknown gate {name!r}; known: {sorted(self._gates)}") from None

    def __iter__(self):
        return iter(list(self._gates.values()))

    def __len__(self) -> int:
        return len(self._gates)

    def close(self, strategy: str, symbol: str, *, actor: str, reason: str, now_ns: int | None = None) -> GateState:
        """Manual close (operator only when ``authorize`` is set)."""
        with self._lock:
            self.sync()
            gate = self.get(strategy, symbol)
            self._check_actor(gate, actor, "close", reason)
            return gate.close(actor, reason, now_ns)

    def open(self, strategy: str, symbol: str, *, actor: str, reason: str, now_ns: int | None = None) -> GateState:
        """Manual open (operator only when ``authorize`` is set)."""
        with self._lock:
            self.sync()
            gate = self.get(strategy, symbol)
            self._check_actor(gate, actor, "open", reason)
            return gate.open(actor, reason, now_ns)

    def _check_actor(self, gate: Gate, actor: str | None, action: str, reason: str) -> None:
        if self.authorize is None or self.authorize(actor):
            return
        self.audit.append(actor=actor or "anonymous", gate=gate.name, old_state=gate.state.name,
                          new_state=gate.state.name, reason=f"refused {action}: {reason or ''}".strip(),
                          values={"action": action}, kind="refused")
        raise GatePermissionError(f"actor {actor!r} is not authorised to {action} gate {gate.name}")

    def sync(self) -> int:
        """Adopt entries other processes appended since the last call; returns how many."""
        with self._lock:
            new = self.audit.entries(since_seq=self._seen_seq)
            last: dict[str, AuditEntry] = {}
            for e in new:
                if e.kind == "created" and e.gate not in self._gates:
                    strategy, _, symbol = e.gate.partition("/")
                    th = _thresholds_from(e.values, self.thresholds)
                    self._gates[e.gate] = Gate(strategy, symbol, th, self.audit, created_ns=e.ts_ns)
                elif e.kind in ("transition", "manual"):
                    last[e.gate] = e
            for name, e in last.items():
                gate = self._gates.get(name)
                hold = e.kind == "manual" and e.new_state == "CLOSED"
                if gate is not None and (gate.state.name != e.new_state or gate.manual_hold != hold):
                    gate.apply_entry(e)
            if new:
                self._seen_seq = new[-1].seq
            return len(new)

    def status(self) -> pd.DataFrame:
        """One row per gate: state, hold, close reason and the current measurements."""
        with self._lock:
            self.sync()
            return pd.DataFrame([g.snapshot() for g in self._gates.values()])


def _thresholds_from(values: dict[str, Any], default: GateThresholds) -> GateThresholds:
    try:
        return GateThresholds(**{k: v for k, v in values.items() if k in GateThresholds.__dataclass_fields__})
    except (TypeError, ValueError):
        return default
