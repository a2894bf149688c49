"""Property: for random sequences of orders, fills, price moves, cancels, time and limit changes,
nothing that reached the venue breaks a position, exposure, open-order, rate or loss limit, and
every denial names a breach the test's own model confirms.

The test keeps its own book (positions, cash, working orders, a token bucket) from what the
venue received and filled, independent of the engine's, and judges every decision against it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spark_research.gates.audit import MemoryAudit
from spark_research.gates.model import Fill, Order
from spark_research.risk.config import RiskConfig
from spark_research.risk.engine import Denial, RiskEngine

from .conftest import T0, Clock

SYMBOLS = ("BTCUSDT", "ETHUSDT")
STRATEGIES = ("s1", "s2")
START = {"BTCUSDT": 100.0, "ETHUSDT": 20.0}
EPS = 1e-6

LIMIT_SETS = [
    {"global": {"max_gross_exposure": 1800, "max_net_exposure": 1200, "max_open_orders": 3, "submit_rate": 2,
                "submit_burst": 3, "max_daily_loss": 150, "on_daily_loss": "HALTED"},
     "instruments": {"default": {"max_qty": 15, "max_position": 20, "price_collar_bps": 300}},
     "portfolio": {"cash": 10000}},
    {"global": {"max_gross_exposure": 900, "max_net_exposure": 600, "max_open_orders": 2, "submit_rate": 5,
                "submit_burst": 2, "max_daily_loss": 80, "on_daily_loss": "HALTED"},
     "instruments": {"default": {"max_qty": 8, "max_position": 10, "price_collar_bps": 150}},
     "portfolio": {"cash": 10000}},
]


@dataclass
class Model:
    """The test's own book, built only from what reached the venue and what it filled."""

    limits: dict
    cash: float = 10000.0
    pos: dict = field(default_factory=lambda: dict.fromkeys(SYMBOLS, 0.0))
    marks: dict = field(default_factory=lambda: dict(START))
    working: dict = field(default_factory=dict)  # order_id -> [symbol, sign, qty left, price]
    tokens: float = 0.0
    last: int = T0
    halted: bool = False

    @property
    def g(self):
        return self.limits["global"]

    @property
    def inst(self):
        return self.limits["instruments"]["default"]

    def equity(self) -> float:
        return self.cash + sum(self.pos[s] * self.marks[s] for s in SYMBOLS)

    def loss(self) -> float:
        return 10000.0 - self.equity()

    def watch_loss(self) -> None:
        if self.loss() > self.g["max_daily_loss"]:
            self.halted = True

    def refill(self, now: int) -> None:
        if now > self.last:
            self.tokens = min(self.g["submit_burst"], self.tokens + (now - self.last) * self.g["submit_rate"] / 1e9)
            self.last = now

    def worst(self, sym: str, sign: float, qty: float) -> tuple[float, float, float, float]:
        """(position now, worst-case position after, worst-case gross, worst-case |net|) with working orders."""
        same = sum(w[2] for w in self.working.values() if w[0] == sym and w[1] == sign)
        other = sum(w[2] * w[3] for w in self.working.values() if w[0] != sym)
        p = self.pos[sym]
        after = p + sign * (same + qty)
        m = self.marks[sym]
        gross = sum(abs(self.pos[s] * self.marks[s]) for s in SYMBOLS if s != sym) + abs(after * m) + other
        net = abs(sum(self.pos[s] * self.marks[s] for s in SYMBOLS if s != sym) + after * m) + other
        return p, after, gross, net


_order = st.tuples(st.just("order"), st.sampled_from(STRATEGIES), st.sampled_from(SYMBOLS),
                   st.sampled_from(("buy", "sell")), st.floats(0.1, 12.0).map(lambda x: round(x, 2)),
                   st.floats(-0.02, 0.02), st.sampled_from(("fill", "rest", "half")))
actions = st.lists(st.one_of(
    _order, _order, _order,
    st.tuples(st.just("price"), st.sampled_from(SYMBOLS), st.floats(-0.15, 0.15)),
    st.tuples(st.just("fill_working"), st.integers(0, 5), st.floats(-0.01, 0.01)),
    st.tuples(st.just("cancel"), st.integers(0, 5)),
    st.tuples(st.just("wait"), st.floats(0.0, 0.5)),
    st.tuples(st.just("limits"), st.integers(0, len(LIMIT_SETS) - 1)),
), min_size=25, max_size=60)


@settings(max_examples=80, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_nothing_that_reached_the_venue_breaks_a_limit_and_every_denial_is_real(tmp_path_factory, steps):
    cfg = tmp_path_factory.mktemp("risk") / "risk.yml"
    import yaml

    cfg.write_text(yaml.safe_dump(LIMIT_SETS[0]))
    clock = Clock()
    eng = RiskEngine(RiskConfig.load(cfg), audit=MemoryAudit(), clock=clock, config_path=cfg, publish=False)
    model = Model(LIMIT_SETS[0])
    model.tokens = model.g["submit_burst"]
    for s, px in START.items():
        eng.on_price(s, px)
    n = 0

    def fill(oid: str, qty: float, slip: float) -> None:
        w = model.working[oid]
        sym, sign, _, price = w
        px = price * (1 + slip)
        eng.on_fill(Fill(oid, "x", sym, clock.now, "buy" if sign > 0 else "sell", qty, px, 0.0, "test"))
        model.pos[sym] += sign * qty
        model.cash -= sign * qty * px
        w[2] -= qty
        model.watch_loss()

    def done(oid: str) -> None:
        eng.on_order_done(oid)
        model.working.pop(oid, None)

    for step in steps:
        kind = step[0]
        if kind == "order":
            _, strat, sym, side, size, off, how = step
            n += 1
            sign = 1.0 if side == "buy" else -1.0
            price = round(model.marks[sym] * (1 + off), 6)
            o = Order(f"o{n}", strat, sym, clock.now, side, size, price)
            model.refill(clock.now)
            p, after, gross, net = model.worst(sym, sign, size)
            adds = abs(after) > abs(p) + EPS
            out = eng.evaluate(o)
            if isinstance(out, Denial):
                c, g, inst = out.check, model.g, model.inst
                real = {
                    "halted": model.halted,
                    "max_qty": size > inst["max_qty"],
                    "price_collar": abs(price / model.marks[sym] - 1) * 1e4 > inst["price_collar_bps"],
                    "max_position": adds and abs(after) > inst["max_position"],
                    "max_gross_exposure": adds and gross > g["max_gross_exposure"],
                    "max_net_exposure": adds and net > g["max_net_exposure"],
                    "max_open_orders": len(model.working) >= g["max_open_orders"],
                    "submit_rate": model.tokens < 1.0,
                }.get(c)
                assert real, f"denial {c!r} names no breach the model sees: {out.message}"
                continue
            # it reached the venue: no limit may be broken by it
            assert not model.halted, f"order sent while the daily loss {model.loss()} is over the limit"
            assert model.loss() <= model.g["max_daily_loss"] + EPS
            assert len(model.working) + 1 <= model.g["max_open_orders"]
            assert model.tokens >= 1.0 - EPS, "sent over the submit rate"
            assert size <= model.inst["max_qty"] + EPS
            if adds:
                assert abs(after) <= model.inst["max_position"] * (1 + EPS) + EPS
                assert gross <= model.g["max_gross_exposure"] * (1 + EPS) + EPS
                assert net <= model.g["max_net_exposure"] * (1 + EPS) + EPS
            model.tokens -= 1.0
            model.working[o.order_id] = [sym, sign, size, price]
            if how == "fill":
                fill(o.order_id, size, off / 4)
                done(o.order_id)
            elif how == "half":
                fill(o.order_id, size / 2, off / 4)
        elif kind == "price":
            _, sym, move = step
            model.marks[sym] = round(model.marks[sym] * (1 + move), 6)
            eng.on_price(sym, model.marks[sym])
            model.watch_loss()
        elif kind == "fill_working" and model.working:
            oid = sorted(model.working)[step[1] % len(model.working)]
            fill(oid, model.working[oid][2], step[2])
            done(oid)
        elif kind == "cancel" and model.working:
            done(sorted(model.working)[step[1] % len(model.working)])
        elif kind == "wait":
            clock.advance(step[1])
        elif kind == "limits":
            cfg.write_text(yaml.safe_dump(LIMIT_SETS[step[1]]))
            eng.reload()
            model.refill(clock.now)
            model.limits = LIMIT_SETS[step[1]]
            model.tokens = min(model.tokens, model.g["submit_burst"])
        # the engine's own book agrees with the model's
        for s in SYMBOLS:
            assert math.isclose(eng.book.position(s).qty, model.pos[s], abs_tol=1e-9)
        assert eng.open_orders == sum(1 for w in model.working.values() if w[2] > EPS)
    eng.close()
