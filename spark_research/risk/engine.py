"""The pre-trade risk engine: every order is checked here before any venue sees it.

Checks, in order (the first failing one denies; limits are inclusive: a value may reach its
limit, never exceed it):

1. ``side`` / ``qty`` / ``price``: well-formed (finite, > 0);
2. ``lot_size`` / ``tick_size``: off-grid quantities are rounded down to the lot and prices to
   the nearest tick (``rounding: round``), or refused (``rounding: reject``);
3. ``min_qty`` / ``max_qty``, ``min_notional`` / ``max_notional`` (instrument),
   ``max_order_notional`` (global);
4. ``mark_price`` / ``price_collar``: the order price within ``price_collar_bps`` of the last
   trade or mark; without any price for the symbol the order is refused (fail closed);
5. ``halted`` / ``reduce_only``: the trading state, the strictest of global, the instrument's
   and the strategy's (a CLOSED drift gate makes its strategy at least REDUCING). REDUCING lets
   an order through only if it shrinks the position without crossing zero: a **flip is refused**
   (send the closing part alone, then the opening one once ACTIVE);
6. ``max_position`` (instrument), ``max_gross_exposure`` / ``max_net_exposure`` (global),
   ``budget`` (the strategy's gross exposure): worst case with the open orders; an order that
   reduces the position is never refused by these;
7. ``max_open_orders`` (global), ``strategy_open_orders`` (per strategy);
8. ``submit_rate``: a token bucket (cancels have their own, :meth:`RiskEngine.check_cancel`).

The daily loss (realised + unrealised since the day's start, book and per strategy) and the
drawdown from the day's peak equity are watched on every fill, price and bar; a breach moves
the scope to REDUCING or HALTED as configured (``on_daily_loss`` / ``on_drawdown``). A new
UTC day resets those automatic states; operator states stay until an operator resumes.

Every denial returns a :class:`Denial` naming the check, the limit and the value; it is counted
in ``risk_denials_total{check,strategy}`` and written to the hash-chained audit log with the
order (by a writer thread: the check never waits for the disk). Every state change is written
to the audit log *before* it takes effect, with who and why, and persisted with the day's
counters (:class:`~spark_research.risk.store.RiskStore`), so a restart -- even after ``kill -9``
-- keeps the states and today's realised loss.

Example::

    >>> from spark_research.gates.model import Order
    >>> from spark_research.risk.config import RiskConfig
    >>> eng = RiskEngine(RiskConfig.from_dict({"instruments": {"BTCUSDT": {"max_qty": 1, "lot_size": 0.001}}}))
    >>> eng.on_price("BTCUSDT", 30_000.0)
    >>> eng.evaluate(Order("o1", "sma", "BTCUSDT", 0, "buy", 0.5004, 30_000.0)).size
    0.5
    >>> d = eng.evaluate(Order("o2", "sma", "BTCUSDT", 0, "buy", 2.0, 30_000.0))
    >>> d.check, d.limit, d.value
    ('max_qty', 1.0, 2.0)
    >>> eng.halt("global", actor="alice", reason="exchange incident").name
    'HALTED'
    >>> eng.evaluate(Order("o3", "sma", "BTCUSDT", 0, "sell", 0.1, 30_000.0)).check
    'halted'
"""
from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Callable

from spark_research import metrics
from spark_research.gates.audit import AuditLog, MemoryAudit
from spark_research.gates.model import Fill, Order
from spark_research.risk.config import RiskConfig
from spark_research.risk.errors import OrderDeniedError, RiskConfigError, RiskPermissionError
from spark_research.risk.portfolio import Portfolio
from spark_research.risk.store import RiskStore, risk_paths

DAY_NS = 86_400 * 1_000_000_000
SYSTEM = "system"
_EPS = 1e-9
_INF = math.inf


class TradingState(IntEnum):
    """Trading states; the value is what ``risk_state`` reports."""

    ACTIVE = 0
    REDUCING = 1
    HALTED = 2


ACTIVE, REDUCING, HALTED = 0, 1, 2
_STATE_NAMES = ("ACTIVE", "REDUCING", "HALTED")
GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class Denial:
    """Why an order was denied: ``check`` (the name of the limit), ``limit`` and the ``value`` found."""

    check: str
    limit: Any
    value: Any
    order: Order
    message: str

    @property
    def ok(self) -> bool:
        return False


def _fmt(v: Any) -> str:
    return f"{v:.10g}" if isinstance(v, float) else str(v)


class _Inst:
    """An instrument's limits unpacked for the hot path (None -> inf / 0)."""

    __slots__ = ("tick", "lot", "reject", "min_qty", "max_qty", "min_notional", "max_notional", "collar",
                 "max_position")

    def __init__(self, lim) -> None:
        self.tick = lim.tick_size or 0.0
        self.lot = lim.lot_size or 0.0
        self.reject = lim.rounding == "reject"
        self.min_qty = lim.min_qty or 0.0
        self.max_qty = lim.max_qty if lim.max_qty is not None else _INF
        self.min_notional = lim.min_notional or 0.0
        self.max_notional = lim.max_notional if lim.max_notional is not None else _INF
        self.collar = lim.price_collar_bps if lim.price_collar_bps is not None else _INF
        self.max_position = lim.max_position if lim.max_position is not None else _INF


class _Bucket:
    """Token bucket: ``rate`` tokens per second up to ``burst``; clock in ns."""

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float | None, burst: int | None, now: int) -> None:
        self.rate = rate or 0.0
        self.burst = float(burst or 0)
        self.tokens = self.burst
        self.last = now

    def refill(self, now: int) -> float:
        dt = now - self.last
        if dt > 0:
            self.tokens = min(self.burst, self.tokens + dt * self.rate / 1e9)
            self.last = now
        return self.tokens


class _DenialWriter:
    """Writes denials to the audit log on a thread of its own, in order; :meth:`flush` waits for it.

    Under a burst it writes one entry per batch (up to :attr:`BATCH` denials, each with its order),
    so a denial spike costs a few durable writes, not one fsync per order.
    """

    BATCH = 256
    IDLE_S = 2.0  #: the thread ends after this long without work (a backtest's engine leaves no thread behind)

    def __init__(self, audit) -> None:
        self.audit = audit
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.errors = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, denial: "Denial", state: str) -> None:
        self._put((denial, state))

    def _put(self, item: Any) -> None:
        with self._lock:
            self._q.put(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="risk-denial-audit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=self.IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._q.empty():
                        self._thread = None
                        return
                continue
            batch: list = []
            events: list[threading.Event] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    events.append(item)
                else:
                    batch.append(item)
                if len(batch) >= self.BATCH:
                    break
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._write(batch)
                except Exception:  # an audit outage must not stop the checks; counted. State changes fail loudly.
                    self.errors += len(batch)
            for e in events:
                e.set()
            if stop:
                with self._lock:
                    self._thread = None
                return

    def _write(self, batch: list) -> None:
        if len(batch) == 1:
            d, state = batch[0]
            o = d.order
            self.audit.append(actor=o.strategy or SYSTEM, gate=f"risk/{o.strategy}/{o.symbol}", old_state=state,
                              new_state=state, reason=d.message, kind="risk_denial", values=_denial_values(d))
            return
        counts: dict[str, int] = {}
        for d, _ in batch:
            counts[d.check] = counts.get(d.check, 0) + 1
        self.audit.append(actor=SYSTEM, gate="risk/denials", old_state=batch[0][1], new_state=batch[-1][1],
                          kind="risk_denials", reason=f"{len(batch)} orders denied: "
                          + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())),
                          values={"denials": [_denial_values(d) | {"message": d.message} for d, _ in batch]})

    def flush(self, timeout: float = 10.0) -> bool:
        with self._lock:
            if self._thread is None and self._q.empty():
                return True
        done = threading.Event()
        self._put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        with self._lock:
            thread = self._thread
            if thread is not None:
                self._q.put(None)
        if thread is not None:
            thread.join(timeout)


def _denial_values(d: "Denial") -> dict[str, Any]:
    o = d.order
    return {"check": d.check, "limit": d.limit, "value": d.value,
            "order": {"order_id": o.order_id, "strategy": o.strategy, "symbol": o.symbol, "ts": o.ts, "side": o.side,
                      "size": o.size, "ref_price": o.ref_price}}


def _scope_name(scope: str) -> str:
    if scope == GLOBAL or scope.startswith(("strategy:", "instrument:")) and scope.split(":", 1)[1]:
        return scope
    raise ValueError(f"scope must be 'global', 'strategy:<name>' or 'instrument:<symbol>', got {scope!r}")


#: Every check a denial can name (``risk_denials_total{check}``), in the order the engine runs them.
CHECKS: tuple[str, ...] = (
    "side", "qty", "price", "lot_size", "tick_size", "min_qty", "max_qty", "min_notional", "max_notional",
    "max_order_notional", "mark_price", "price_collar", "halted", "max_position", "max_gross_exposure",
    "max_net_exposure", "budget", "max_open_orders", "strategy_open_orders", "submit_rate", "reduce_only",
    "cancel_rate",
)


class RiskEngine:
    """Pre-trade checks, trading states, the book and its breakers. Thread-safe.

    ``config``: the limits (default: every limit off). ``audit``: where denials and state changes
    go (default :class:`~spark_research.gates.audit.MemoryAudit`). ``store``: where the states and
    the day's counters persist (default: nowhere). ``clock``: ns since the epoch (default
    ``time.time_ns``; a backtest passes the bar time). ``authorize(actor) -> bool``: who may change
    states by hand (default: anyone named). Use :meth:`from_config` for the durable defaults.
    """

    def __init__(self, config: RiskConfig | None = None, *, audit=None, store: RiskStore | None = None,
                 clock: Callable[[], int] | None = None, authorize: Callable[[str], bool] | None = None,
                 config_path: str | Path | None = None, publish: bool = True):
        self.config = config or RiskConfig.from_dict({})
        self.config_path = Path(config_path) if config_path is not None else None
        self.audit = audit if audit is not None else MemoryAudit()
        self.store = store
        self.clock = clock or time.time_ns
        self.authorize = authorize
        self.publish = publish
        self._lock = threading.RLock()
        self._writer = _DenialWriter(self.audit)
        now = self.clock()
        settings = self.config.portfolio
        self.book = Portfolio(settings.cash, var_window=settings.var_window, publish=publish)
        self.strategy_books: dict[str, Portfolio] = {}
        self._states: dict[str, int] = {}
        self._causes: dict[str, str] = {}
        self._gates_closed: dict[str, set[str]] = {}
        self._eff: dict[str, int] = {}  # strategy -> effective state (own state and gate floor)
        self._global = ACTIVE
        self._inst_state: dict[str, int] = {}
        self._open: dict[str, list] = {}  # order_id -> [strategy, symbol, sign, qty remaining, price]
        self._open_buy: dict[str, float] = {}
        self._open_sell: dict[str, float] = {}
        self._open_notional = 0.0
        self._strat_open: dict[str, int] = {}
        self._strat_open_notional: dict[str, float] = {}
        self._sopen: dict[tuple[str, str], list[float]] = {}  # (strategy, symbol) -> [open buy, open sell]
        self.denials: deque[Denial] = deque(maxlen=1000)  #: the latest denials, oldest first
        self.approved = 0
        self.denied = 0
        self._m_latency = metrics.RISK_CHECK_LATENCY_US
        self._m_denials: dict[tuple[str, str], Any] = {}
        self._m_util: dict[str, Any] = {}
        self._day = now // DAY_NS
        self._day_start_equity = self.book.equity
        self._day_peak = self._day_start_equity
        self._strat_day_start: dict[str, float] = {}
        self._gross = self._net = 0.0
        self._config_version = 0
        self._apply_config(self.config, now)
        if store is not None:
            self._restore(store.load())
        self._roll_day(now)
        self._publish_states()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, path: str | Path | None = None, *, root: str | Path | None = None,
                    **kw: Any) -> "RiskEngine":
        """The engine a session runs: limits from ``risk.yml`` (default
        :func:`~spark_research.risk.config.default_config_path`), states and counters in ``<root>/state.db``,
        audit log ``<root>/audit.db`` (root default ``$SPARK_VAR/risk``).

        Example::

            engine = RiskEngine.from_config()           # config/risk.yml, var/risk/
            venue = RiskGuardedVenue(SimulatedVenue(), engine, strategy="sma_cross")
        """
        config = RiskConfig.load(path)
        state_db, audit_db = risk_paths(root)
        kw.setdefault("store", RiskStore(state_db))
        kw.setdefault("audit", AuditLog(audit_db))
        return cls(config, config_path=path if path is not None else Path(config.source), **kw)

    def set_clock(self, clock: Callable[[], int]) -> None:
        """Run on another clock from now on (a backtest's bar time): the throttles and the trading
        day restart from its current time; the day's counters are kept."""
        with self._lock:
            self.clock = clock
            now = clock()
            for bucket in (self._submit, self._cancel):
                if bucket is not None:
                    bucket.last = now
            self._day = now // DAY_NS

    def _apply_config(self, config: RiskConfig, now: int) -> None:
        g = config.limits
        self.config = config
        self._insts: dict[str, _Inst] = {}
        self._strats: dict[str, Any] = {}
        self._max_order_notional = g.max_order_notional if g.max_order_notional is not None else _INF
        self._max_gross = g.max_gross_exposure if g.max_gross_exposure is not None else _INF
        self._max_net = g.max_net_exposure if g.max_net_exposure is not None else _INF
        self._max_open = g.max_open_orders if g.max_open_orders is not None else 1 << 62
        old_submit, old_cancel = getattr(self, "_submit", None), getattr(self, "_cancel", None)
        self._submit = _Bucket(g.submit_rate, g.submit_burst, now) if g.submit_rate else None
        self._cancel = _Bucket(g.cancel_rate, g.cancel_burst, now) if g.cancel_rate else None
        for new, old in ((self._submit, old_submit), (self._cancel, old_cancel)):
            if new is not None and old is not None:  # a reload keeps the tokens used, not a fresh burst
                new.tokens, new.last = min(new.burst, old.refill(now)), old.last

    def _inst(self, symbol: str) -> _Inst:
        inst = self._insts.get(symbol)
        if inst is None:
            inst = self._insts[symbol] = _Inst(self.config.instrument(symbol))
        return inst

    def _strat(self, name: str):
        lim = self._strats.get(name)
        if lim is None:
            s = self.config.strategy(name)
            lim = self._strats[name] = (s.budget if s.budget is not None else _INF,
                                        s.max_open_orders if s.max_open_orders is not None else 1 << 62,
                                        s.max_daily_loss)
        return lim

    # ------------------------------------------------------------------ the check
    def evaluate(self, order: Order) -> Order | Denial:
        """Check ``order``: the order to send (rounded to the lot/tick grid), or a :class:`Denial`.

        An approved order counts as open until :meth:`on_order_done` (or fills covering it).
        """
        t0 = time.perf_counter_ns()
        with self._lock:
            out = self._evaluate(order)
        self._m_latency.observe((time.perf_counter_ns() - t0) / 1e3)
        return out

    def check(self, order: Order) -> Order:
        """:meth:`evaluate`, raising :class:`~spark_research.risk.errors.OrderDeniedError` on a denial."""
        out = self.evaluate(order)
        if type(out) is Denial:
            raise OrderDeniedError(out)
        return out

    def _evaluate(self, order: Order) -> Order | Denial:  # noqa: C901 - one flat pass is the fast path
        sym, strat, side = order.symbol, order.strategy, order.side
        qty, price = order.size, order.ref_price
        if side == "buy":
            sign = 1.0
        elif side == "sell":
            sign = -1.0
        else:
            return self._deny("side", "buy|sell", side, order)
        if not (0.0 < qty < _INF):
            return self._deny("qty", "> 0", qty, order)
        if not (0.0 < price < _INF):
            return self._deny("price", "> 0", price, order)
        inst = self._insts.get(sym) or self._inst(sym)
        changed = False
        if inst.lot:
            units = qty / inst.lot
            whole = math.floor(units + 1e-9)
            if units - whole > 1e-9 * max(1.0, units):
                if inst.reject:
                    return self._deny("lot_size", inst.lot, qty, order)
                if whole <= 0:
                    return self._deny("lot_size", inst.lot, qty, order)
                qty, changed = round(whole * inst.lot, 12), True
        if inst.tick:
            ticks = price / inst.tick
            near = round(ticks)
            if abs(ticks - near) > 1e-9 * max(1.0, ticks):
                if inst.reject or near <= 0:
                    return self._deny("tick_size", inst.tick, price, order)
                price, changed = round(near * inst.tick, 12), True
        if qty < inst.min_qty:
            return self._deny("min_qty", inst.min_qty, qty, order)
        if qty > inst.max_qty:
            return self._deny("max_qty", inst.max_qty, qty, order)
        notional = qty * price
        if notional < inst.min_notional:
            return self._deny("min_notional", inst.min_notional, notional, order)
        if notional > inst.max_notional:
            return self._deny("max_notional", inst.max_notional, notional, order)
        if notional > self._max_order_notional:
            return self._deny("max_order_notional", self._max_order_notional, notional, order)
        mark = self.book.marks.get(sym)
        if mark is None:
            return self._deny("mark_price", "a last trade or mark price", None, order)
        if inst.collar != _INF:
            dev = abs(price - mark) / mark * 1e4
            if dev > inst.collar + 1e-9:
                return self._deny("price_collar", inst.collar, dev, order)
        # trading state: the strictest of global, instrument and strategy
        book_state = self._global
        st = self._inst_state.get(sym, ACTIVE)
        if st > book_state:
            book_state = st
        strat_state = self._eff.get(strat, ACTIVE)
        if book_state == HALTED or strat_state == HALTED:
            scope = (GLOBAL if self._global == HALTED else f"instrument:{sym}" if st == HALTED
                     else f"strategy:{strat}")
            return self._deny("halted", f"{scope} HALTED", side, order)
        pos = self.book.positions.get(sym)
        p = pos.qty if pos is not None else 0.0
        ob, os_ = self._open_buy.get(sym, 0.0), self._open_sell.get(sym, 0.0)
        after = p + ob + qty if sign > 0 else p - os_ - qty  # worst case, open orders of this side filled
        if book_state == REDUCING or strat_state == REDUCING:
            if book_state == REDUCING:
                d = self._reduce_only(p, ob, os_, sign, qty, order, GLOBAL if self._global else f"instrument:{sym}")
                if d is not None:
                    return d
            if strat_state == REDUCING:
                sb = self.strategy_books.get(strat)
                sp = sb.positions.get(sym) if sb is not None else None
                sq = sp.qty if sp is not None else 0.0
                so = self._sopen.get((strat, sym)) or (0.0, 0.0)
                d = self._reduce_only(sq, so[0], so[1], sign, qty, order, f"strategy:{strat}")
                if d is not None:
                    return d
        if abs(after) > abs(p) + _EPS:  # it adds risk: position, exposure and budget limits
            if abs(after) > inst.max_position * (1 + _EPS):
                return self._deny("max_position", inst.max_position, abs(after), order)
            exps = self.book.exposures
            e_old = exps.get(sym, 0.0)
            e_new = after * mark
            other_open = self._open_notional - (ob + os_) * mark
            gross = self._gross - abs(e_old) + abs(e_new) + (other_open if other_open > 0 else 0.0)
            if gross > self._max_gross * (1 + _EPS):
                return self._deny("max_gross_exposure", self._max_gross, gross, order)
            net = abs(self._net - e_old + e_new) + (other_open if other_open > 0 else 0.0)
            if net > self._max_net * (1 + _EPS):
                return self._deny("max_net_exposure", self._max_net, net, order)
            slim = self._strats.get(strat) or self._strat(strat)
            if slim[0] != _INF:
                sb = self.strategy_books.get(strat)
                sp = sb.positions.get(sym) if sb is not None else None
                sq = sp.qty if sp is not None else 0.0
                s_gross = (self._strategy_gross(strat) - abs(sq * mark) + abs((sq + sign * qty) * mark)
                           + self._strat_open_notional.get(strat, 0.0))
                if s_gross > slim[0] * (1 + _EPS):
                    return self._deny("budget", slim[0], s_gross, order)
        else:
            slim = self._strats.get(strat) or self._strat(strat)
        if len(self._open) >= self._max_open:
            return self._deny("max_open_orders", self._max_open, len(self._open) + 1, order)
        n_strat = self._strat_open.get(strat, 0)
        if n_strat >= slim[1]:
            return self._deny("strategy_open_orders", slim[1], n_strat + 1, order)
        bucket = self._submit
        if bucket is not None:
            if bucket.refill(self.clock()) < 1.0:
                return self._deny("submit_rate", f"{bucket.rate:g}/s burst {bucket.burst:g}",
                                  f"{bucket.tokens:.3f} tokens", order)
            bucket.tokens -= 1.0
        # approved: the order is open until filled or done
        if changed:
            order = Order(order.order_id, strat, sym, order.ts, side, qty, price)
        self._open[order.order_id] = [strat, sym, sign, qty, price]
        if sign > 0:
            self._open_buy[sym] = ob + qty
        else:
            self._open_sell[sym] = os_ + qty
        self._open_notional += notional
        so = self._sopen.get((strat, sym))
        if so is None:
            so = self._sopen[(strat, sym)] = [0.0, 0.0]
        so[0 if sign > 0 else 1] += qty
        self._strat_open[strat] = n_strat + 1
        self._strat_open_notional[strat] = self._strat_open_notional.get(strat, 0.0) + notional
        self.approved += 1
        return order

    def _reduce_only(self, p: float, ob: float, os_: float, sign: float, qty: float, order: Order,
                     scope: str) -> Denial | None:
        """None when the order shrinks position ``p`` without crossing zero (same-side open orders included)."""
        if sign * p >= 0:
            return self._deny("reduce_only", f"{scope} REDUCING: position {_fmt(p)} may only shrink",
                              f"{order.side} {_fmt(qty)}", order)
        room = abs(p) - (os_ if sign < 0 else ob)
        if qty > room + _EPS * max(1.0, abs(p)):
            return self._deny("reduce_only", f"{scope} REDUCING: at most {_fmt(max(room, 0.0))} (a flip is refused)",
                              qty, order)
        return None

    def _deny(self, check: str, limit: Any, value: Any, order: Order) -> Denial:
        msg = (f"order {order.order_id!r} ({order.strategy} {order.side} {_fmt(order.size)} {order.symbol} @ "
               f"{_fmt(order.ref_price)}) denied by {check}: value {_fmt(value)} over limit {_fmt(limit)}")
        d = Denial(check, limit, value, order, msg)
        self.denied += 1
        self.denials.append(d)
        key = (check, order.strategy)
        c = self._m_denials.get(key)
        if c is None:
            c = self._m_denials[key] = metrics.RISK_DENIALS.labels(check=check, strategy=order.strategy)
        c.inc()
        self._writer.put(d, _STATE_NAMES[max(self._global, self._inst_state.get(order.symbol, ACTIVE),
                                             self._eff.get(order.strategy, ACTIVE))])
        return d

    def check_cancel(self, order_id: str, strategy: str = "") -> Denial | None:
        """Count a cancel against the cancel-rate bucket; a :class:`Denial` when throttled, else None."""
        with self._lock:
            bucket = self._cancel
            if bucket is None:
                return None
            if bucket.refill(self.clock()) < 1.0:
                o = self._open.get(order_id)
                order = Order(order_id, strategy or (o[0] if o else ""), o[1] if o else "", 0,
                              "buy" if not o or o[2] > 0 else "sell", o[3] if o else 0.0, o[4] if o else 0.0)
                return self._deny("cancel_rate", f"{bucket.rate:g}/s burst {bucket.burst:g}",
                                  f"{bucket.tokens:.3f} tokens", order)
            bucket.tokens -= 1.0
            return None

    # ------------------------------------------------------------------ order lifecycle
    def on_order_done(self, order_id: str) -> None:
        """The order is no longer working (filled, cancelled, expired, rejected): release what is left of it."""
        with self._lock:
            o = self._open.pop(order_id, None)
            if o is not None:
                self._release(o, o[3])

    def _release(self, o: list, qty: float) -> None:
        strat, sym, sign, _, price = o
        if sign > 0:
            self._open_buy[sym] = max(0.0, self._open_buy.get(sym, 0.0) - qty)
        else:
            self._open_sell[sym] = max(0.0, self._open_sell.get(sym, 0.0) - qty)
        self._open_notional = max(0.0, self._open_notional - qty * price)
        self._strat_open_notional[strat] = max(0.0, self._strat_open_notional.get(strat, 0.0) - qty * price)
        so = self._sopen.get((strat, sym))
        if so is not None:
            i = 0 if sign > 0 else 1
            so[i] = max(0.0, so[i] - qty)
        o[3] -= qty
        if o[3] <= _EPS:
            self._strat_open[strat] = max(0, self._strat_open.get(strat, 0) - 1)

    def on_fill(self, fill: Fill) -> None:
        """Book a fill: positions, PnL, exposure, open orders, the breakers; persisted."""
        with self._lock:
            now = self.clock()
            self._roll_day(now)
            o = self._open.get(fill.order_id)
            if o is not None:
                part = min(fill.size, o[3])
                self._release(o, part)
                if o[3] <= _EPS:
                    del self._open[fill.order_id]
            sym = fill.symbol
            old_e = self.book.exposures.get(sym, 0.0)
            self.book.apply_fill(sym, fill.side, fill.size, fill.price, fill.fees)
            self._set_exposure_delta(old_e, self.book.exposures[sym])
            self._strategy_book(fill.strategy).apply_fill(sym, fill.side, fill.size, fill.price, fill.fees)
            self._check_breakers(now)
            self._persist()

    def _strategy_book(self, name: str) -> Portfolio:
        sb = self.strategy_books.get(name)
        if sb is None:
            sb = self.strategy_books[name] = Portfolio(0.0, publish=False)
            sb.marks = self.book.marks  # one set of marks for every book
            self._strat_day_start.setdefault(name, 0.0)
        return sb

    def _strategy_gross(self, name: str) -> float:
        sb = self.strategy_books.get(name)
        if sb is None:
            return 0.0
        marks = self.book.marks
        return sum(abs(p.qty * marks.get(s, p.avg_price)) for s, p in sb.positions.items() if p.qty)

    def _set_exposure_delta(self, old: float, new: float) -> None:
        self._gross += abs(new) - abs(old)
        self._net += new - old

    # ------------------------------------------------------------------ prices and bars
    def on_price(self, symbol: str, price: float) -> None:
        """A last trade or mark price: marks the book and watches the loss and drawdown limits."""
        if not (0.0 < price < _INF):
            raise ValueError(f"price of {symbol} must be a finite number > 0, got {price!r}")
        with self._lock:
            exps = self.book.exposures
            old = exps.get(symbol)
            self.book.mark(symbol, price)
            if old is not None:
                self._set_exposure_delta(old, exps[symbol])
            self._check_breakers(None)

    def on_bar(self, symbol: str, close: float, ts: int | None = None) -> None:
        """A closed bar of one symbol: mark at the close, then :meth:`end_bar`."""
        self.on_price(symbol, close)
        self.end_bar(ts)

    def on_bars(self, closes: dict[str, float], ts: int | None = None) -> None:
        """Closed bars of several symbols (same time): mark them all, then :meth:`end_bar` once."""
        with self._lock:
            for price in closes.values():
                if not (0.0 < price < _INF):
                    raise ValueError(f"bar closes must be finite numbers > 0, got {closes!r}")
            self.book.mark_many(closes)
        self.end_bar(ts)  # recomputes the exposure totals

    def end_bar(self, ts: int | None = None) -> None:
        """Bar end: equity curve, VaR/ES, breakers, utilisation gauges, day roll, other processes' changes."""
        self.sync()
        with self._lock:
            now = self.clock() if ts is None else ts
            self._roll_day(now)
            self._recompute_exposure()
            self.book.end_bar(now)
            self._check_breakers(now)
            self._persist(figures=True)  # the day's peak, the marks, and what the app shows
            if self.publish:
                self._publish_utilisation(now)

    def _recompute_exposure(self) -> None:
        exps = self.book.exposures
        self._gross = math.fsum(abs(e) for e in exps.values())
        self._net = math.fsum(exps.values())

    # ------------------------------------------------------------------ breakers and the day
    def day_pnl(self) -> float:
        """Book PnL since the day's start (realised + unrealised, fees included)."""
        return self.book.cash + self._net - self._day_start_equity

    def strategy_day_pnl(self, name: str) -> float:
        sb = self.strategy_books.get(name)
        return 0.0 if sb is None else self.strategy_equity(name) - self._strat_day_start.get(name, 0.0)

    def strategy_equity(self, name: str) -> float:
        """A strategy's cash flows plus its positions at the book's marks (0 before its first fill)."""
        sb = self.strategy_books.get(name)
        if sb is None:
            return 0.0
        marks = self.book.marks
        return sb.cash + sum(p.qty * marks.get(s, p.avg_price) for s, p in sb.positions.items() if p.qty)

    def drawdown(self) -> float:
        """Drawdown of the book's equity from the day's peak (positive fraction)."""
        eq = self.book.cash + self._net
        return 0.0 if self._day_peak <= 0 else max(0.0, 1.0 - eq / self._day_peak)

    def _check_breakers(self, now: int | None) -> None:
        g = self.config.limits
        eq = self.book.cash + self._net
        if eq > self._day_peak:
            self._day_peak = eq
        loss = self._day_start_equity - eq
        if g.max_daily_loss is not None and loss > g.max_daily_loss and \
                self._states.get(GLOBAL, ACTIVE) < TradingState[g.on_daily_loss]:
            self._auto(GLOBAL, g.on_daily_loss, "daily_loss",
                       f"daily loss {loss:.2f} over limit {g.max_daily_loss:g}", {"loss": loss}, now)
        dd = 0.0 if self._day_peak <= 0 else 1.0 - eq / self._day_peak
        if g.max_drawdown is not None and dd > g.max_drawdown and \
                self._states.get(GLOBAL, ACTIVE) < TradingState[g.on_drawdown]:
            self._auto(GLOBAL, g.on_drawdown, "drawdown",
                       f"drawdown {dd:.4f} from the day's peak {self._day_peak:.2f} over limit {g.max_drawdown:g}",
                       {"drawdown": dd, "peak": self._day_peak, "equity": eq}, now)
        for name, sb in self.strategy_books.items():
            limit = (self._strats.get(name) or self._strat(name))[2]
            if limit is None:
                continue
            sloss = self._strat_day_start.get(name, 0.0) - self.strategy_equity(name)
            scope = f"strategy:{name}"
            if sloss > limit and self._states.get(scope, ACTIVE) < TradingState[g.on_daily_loss]:
                self._auto(scope, g.on_daily_loss, "daily_loss",
                           f"strategy {name} daily loss {sloss:.2f} over limit {limit:g}", {"loss": sloss}, now)

    def _auto(self, scope: str, state: str, cause: str, reason: str, values: dict, now: int | None) -> None:
        self._transition(scope, TradingState[state], SYSTEM, reason, cause, values, now)

    def _roll_day(self, now: int) -> None:
        day = now // DAY_NS
        if day <= self._day:
            return
        self._day = day
        self._day_start_equity = self._day_peak = self.book.cash + self._net
        self._strat_day_start = {n: self.strategy_equity(n) for n in self.strategy_books}
        for scope, cause in list(self._causes.items()):
            if cause in ("daily_loss", "drawdown") and self._states.get(scope, ACTIVE) != ACTIVE:
                self._transition(scope, TradingState.ACTIVE, SYSTEM, f"new trading day {day}: {cause} reset",
                                 "day", {"day": day}, now)
        self._persist()

    # ------------------------------------------------------------------ states
    def state_of(self, strategy: str | None = None, symbol: str | None = None) -> TradingState:
        """The effective state for an order of ``strategy`` on ``symbol``: the strictest scope."""
        s = self._global
        if symbol is not None:
            s = max(s, self._inst_state.get(symbol, ACTIVE))
        if strategy is not None:
            s = max(s, self._eff.get(strategy, ACTIVE))
        return TradingState(s)

    def states(self) -> dict[str, str]:
        """Every scope with a state of its own (and strategies held REDUCING by a closed gate)."""
        out = {GLOBAL: TradingState(self._global).name}
        out.update({k: TradingState(v).name for k, v in sorted(self._states.items()) if k != GLOBAL})
        for strat, eff in self._eff.items():
            out[f"strategy:{strat}"] = TradingState(eff).name
        return out

    def halt(self, scope: str = GLOBAL, *, actor: str, reason: str) -> TradingState:
        """Operator: nothing passes in ``scope`` (``global``, ``strategy:<name>``, ``instrument:<symbol>``)."""
        return self.set_state(scope, TradingState.HALTED, actor=actor, reason=reason)

    def reduce(self, scope: str = GLOBAL, *, actor: str, reason: str) -> TradingState:
        """Operator: only orders that reduce exposure pass in ``scope``."""
        return self.set_state(scope, TradingState.REDUCING, actor=actor, reason=reason)

    def resume(self, scope: str = GLOBAL, *, actor: str, reason: str) -> TradingState:
        """Operator: back to ACTIVE in ``scope``."""
        return self.set_state(scope, TradingState.ACTIVE, actor=actor, reason=reason)

    def set_state(self, scope: str, state: TradingState | str, *, actor: str, reason: str) -> TradingState:
        """Set a scope's state by hand (audited before it takes effect; ``authorize`` checked)."""
        scope = _scope_name(scope)
        state = TradingState[state] if isinstance(state, str) else TradingState(state)
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"reason must be a non-empty text to set {scope} to {state.name}, got {reason!r}")
        if not isinstance(actor, str) or not actor.strip():
            raise RiskPermissionError(f"actor must be a logged-in user to set {scope} to {state.name}, got {actor!r}")
        with self._lock:
            if self.authorize is not None and not self.authorize(actor):
                cur = TradingState(self._states.get(scope, ACTIVE)).name
                self.audit.append(actor=actor, gate=f"risk/{scope}", old_state=cur, new_state=cur,
                                  reason=f"refused {state.name}: {reason}", kind="risk_refused",
                                  values={"action": state.name})
                raise RiskPermissionError(f"actor {actor!r} is not authorised to set {scope} to {state.name}")
            self._transition(scope, state, actor.strip(), reason.strip(), "manual", {}, None)
            return TradingState(self._states.get(scope, ACTIVE))

    def _transition(self, scope: str, state: TradingState, actor: str, reason: str, cause: str,
                    values: dict, now: int | None) -> None:
        old = TradingState(self._states.get(scope, ACTIVE))
        now = self.clock() if now is None else now
        values = {**values, "day_pnl": self.day_pnl(), "drawdown": self.drawdown(), "cause": cause}
        # durable first: if the append raises, the state does not change
        self.audit.append(actor=actor, gate=f"risk/{scope}", old_state=old.name, new_state=state.name,
                          reason=reason, values=values, kind="risk_state", ts_ns=now)
        self._set(scope, int(state), cause)
        if self.store is not None:
            self.store.save({f"state:{scope}": {"state": state.name, "cause": cause, "actor": actor,
                                                "reason": reason, "ts": now}})

    def _set(self, scope: str, state: int, cause: str) -> None:
        if state == ACTIVE:
            self._states.pop(scope, None)
            self._causes.pop(scope, None)
        else:
            self._states[scope] = state
            self._causes[scope] = cause
        if scope == GLOBAL:
            self._global = state
        elif scope.startswith("instrument:"):
            sym = scope.split(":", 1)[1]
            if state == ACTIVE:
                self._inst_state.pop(sym, None)
            else:
                self._inst_state[sym] = state
        else:
            self._refresh_strategy(scope.split(":", 1)[1])
        if self.publish:
            metrics.RISK_STATE.labels(scope=scope).set(self._effective(scope))

    def _effective(self, scope: str) -> int:
        if scope.startswith("strategy:"):
            return self._eff.get(scope.split(":", 1)[1], ACTIVE)
        return self._states.get(scope, ACTIVE)

    def _refresh_strategy(self, name: str) -> None:
        eff = self._states.get(f"strategy:{name}", ACTIVE)
        if self._gates_closed.get(name) and eff < REDUCING:
            eff = REDUCING
        if eff == ACTIVE:
            self._eff.pop(name, None)
        else:
            self._eff[name] = eff
        if self.publish:
            metrics.RISK_STATE.labels(scope=f"strategy:{name}").set(eff)

    def on_gate_state(self, strategy: str, state: Any, symbol: str = "", *, actor: str = "gate") -> TradingState:
        """Follow a drift gate: a CLOSED gate makes ``strategy`` at least REDUCING until every
        gate of it is open again (``state``: a ``GateState`` or its name). Audited when it changes
        the strategy's effective state. Returns that state.

        Example::

            >>> eng = RiskEngine()
            >>> eng.on_gate_state("sma", "CLOSED", "BTCUSDT").name
            'REDUCING'
            >>> eng.on_gate_state("sma", "OPEN", "BTCUSDT").name
            'ACTIVE'
        """
        name = getattr(state, "name", state)
        if name not in ("OPEN", "HALF_OPEN", "CLOSED"):
            raise ValueError(f"gate state must be OPEN, HALF_OPEN or CLOSED, got {state!r}")
        with self._lock:
            closed = self._gates_closed.setdefault(strategy, set())
            before = self._eff.get(strategy, ACTIVE)
            was = symbol in closed
            if name == "CLOSED":
                closed.add(symbol)
            else:
                closed.discard(symbol)
            if was == (name == "CLOSED"):
                return TradingState(before)
            self._refresh_strategy(strategy)
            after = self._eff.get(strategy, ACTIVE)
            scope = f"strategy:{strategy}"
            self.audit.append(actor=actor, gate=f"risk/{scope}", old_state=TradingState(before).name,
                              new_state=TradingState(after).name, kind="risk_state",
                              reason=f"gate {strategy}/{symbol} {name}: "
                                     f"{'strategy at least REDUCING' if name == 'CLOSED' else 'gate floor lifted'}",
                              values={"gate": f"{strategy}/{symbol}", "gate_state": name, "cause": "gate"})
            if self.store is not None:
                self.store.save({"gates": {s: sorted(v) for s, v in self._gates_closed.items() if v}})
            return TradingState(after)

    def follow_gates(self, book) -> None:
        """Adopt the state of every gate of a :class:`~spark_research.gates.gate.GateBook` (call per bar)."""
        for gate in book:
            self.on_gate_state(gate.strategy, gate.state, gate.symbol)

    # ------------------------------------------------------------------ config
    def reload(self, path: str | Path | None = None, *, actor: str = SYSTEM) -> RiskConfig:
        """Re-read the limits (validated first: an invalid file changes nothing), audited with both digests."""
        path = Path(path) if path is not None else self.config_path
        if path is None:
            raise RiskConfigError("reload: no config path (the engine was built from a RiskConfig object)")
        new = RiskConfig.load(path)
        with self._lock:
            old = self.config
            changed = _diff(old.to_dict(), new.to_dict())
            state = TradingState(self._global).name
            self.audit.append(actor=actor, gate="risk/config", old_state=state, new_state=state, kind="risk_config",
                              reason=f"limits reloaded from {path}: {len(changed)} change(s)",
                              values={"old_digest": old.digest, "new_digest": new.digest, "changes": changed[:50]})
            self._apply_config(new, self.clock())
            self.config_path = path
        return new

    def sync(self) -> bool:
        """Adopt what another process (``spark risk ...``) committed to the store; True if anything changed."""
        if self.store is None or not self.store.changed():
            return False
        docs = self.store.load()
        with self._lock:
            for key, doc in docs.items():
                if key.startswith("state:"):
                    scope = key[6:]
                    state = TradingState[doc["state"]]
                    if self._states.get(scope, ACTIVE) != state:
                        self._set(scope, int(state), doc.get("cause", "manual"))
            version = docs.get("config_version", {}).get("version", 0)
            if version != getattr(self, "_config_version", 0):
                self._config_version = version
                if self.config_path is not None:
                    self.reload(actor=docs["config_version"].get("actor", SYSTEM))
        return True

    # ------------------------------------------------------------------ persistence
    def _persist(self, figures: bool = False) -> None:
        if self.store is None:
            return
        docs: dict[str, Any] = {
            "day": {"day": self._day, "start_equity": self._day_start_equity, "peak_equity": self._day_peak,
                    "strategy_start": self._strat_day_start},
            "book": self.book.snapshot(),
        }
        for name, sb in self.strategy_books.items():
            docs[f"strategy:{name}"] = sb.snapshot()
        if figures:  # for operators elsewhere (the risk app, spark risk status): not needed to restart
            st = self.status()
            docs["figures"] = {k: st[k] for k in ("equity", "day_pnl", "drawdown", "gross_exposure", "net_exposure",
                                                  "open_orders", "approved", "denied", "utilisation", "var")}
            docs["figures"]["ts"] = self.clock()
            docs["denials"] = [{"check": d.check, "limit": _fmt(d.limit), "value": _fmt(d.value),
                                "order_id": d.order.order_id, "strategy": d.order.strategy, "symbol": d.order.symbol,
                                "side": d.order.side, "size": d.order.size, "price": d.order.ref_price,
                                "ts": d.order.ts, "message": d.message} for d in list(self.denials)[-50:]]
        self.store.save(docs)

    def _restore(self, docs: dict[str, Any]) -> None:
        if "book" in docs:
            self.book.restore(docs["book"])
        for key, doc in docs.items():
            if key.startswith("strategy:"):
                sb = self._strategy_book(key.split(":", 1)[1])
                sb.restore(doc)
                sb.marks = self.book.marks
            elif key.startswith("state:"):
                self._set(key[6:], int(TradingState[doc["state"]]), doc.get("cause", "manual"))
        for strat, symbols in docs.get("gates", {}).items():
            self._gates_closed[strat] = set(symbols)
            self._refresh_strategy(strat)
        self._config_version = docs.get("config_version", {}).get("version", 0)
        self._recompute_exposure()
        day = docs.get("day")
        if day is not None:
            self._day = day["day"]
            self._day_start_equity, self._day_peak = day["start_equity"], day["peak_equity"]
            self._strat_day_start = dict(day.get("strategy_start", {}))

    # ------------------------------------------------------------------ views
    def _publish_states(self) -> None:
        if not self.publish:
            return
        metrics.RISK_STATE.labels(scope=GLOBAL).set(self._global)
        for scope in self._states:
            metrics.RISK_STATE.labels(scope=scope).set(self._effective(scope))

    def utilisation(self, now: int | None = None) -> dict[str, float]:
        """Share of each book-wide limit in use (1.0 = at the limit; absent = no limit)."""
        g = self.config.limits
        now = self.clock() if now is None else now
        out: dict[str, float] = {}
        if g.max_daily_loss:
            out["daily_loss"] = max(0.0, -self.day_pnl()) / g.max_daily_loss
        if g.max_drawdown:
            out["drawdown"] = self.drawdown() / g.max_drawdown
        if g.max_gross_exposure:
            out["gross_exposure"] = self._gross / g.max_gross_exposure
        if g.max_net_exposure:
            out["net_exposure"] = abs(self._net) / g.max_net_exposure
        if g.max_open_orders:
            out["open_orders"] = len(self._open) / g.max_open_orders
        for name, bucket in (("submit_rate", self._submit), ("cancel_rate", self._cancel)):
            if bucket is not None and bucket.burst:
                out[name] = 1.0 - bucket.refill(now) / bucket.burst
        return out

    def _publish_utilisation(self, now: int) -> None:
        gauges = self._m_util
        for name, value in self.utilisation(now).items():
            g = gauges.get(name)
            if g is None:
                g = gauges[name] = metrics.RISK_UTILISATION.labels(limit=name)
            g.set(value)

    @property
    def open_orders(self) -> int:
        return len(self._open)

    def status(self) -> dict[str, Any]:
        """States, the day's counters, exposures and utilisation as plain data (CLI, app)."""
        with self._lock:
            figs = self.book.figures
            return {"states": self.states(), "equity": self.book.cash + self._net, "day_pnl": self.day_pnl(),
                    "day_start_equity": self._day_start_equity, "day_peak_equity": self._day_peak,
                    "drawdown": self.drawdown(), "realised": self.book.realised, "gross_exposure": self._gross,
                    "net_exposure": self._net, "open_orders": len(self._open), "approved": self.approved,
                    "denied": self.denied, "utilisation": self.utilisation(),
                    "var": {f"{lv:.2f}": {"historical": f.var_historical, "cornish_fisher": f.var_cornish_fisher,
                                          "es_historical": f.es_historical, "es_cornish_fisher": f.es_cornish_fisher}
                            for lv, f in figs.items()},
                    "positions": self.book.positions_table()}

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every denial so far is in the audit log."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Flush the audit writer and close the store and audit log."""
        self._writer.close()
        if self.store is not None:
            self.store.close()
        close = getattr(self.audit, "close", None)
        if close is not None:
            close()


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``["global.max_open_orders: 50 -> 20", ...]`` between two nested dicts."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_diff(a, b, name + "."))
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out
