"""A venue reachable only through the risk engine (as the gates' ``GuardedVenue`` for a gate).

:class:`RiskGuardedVenue` wraps any :class:`~spark_research.gates.venue.ExecutionVenue`
(``SimulatedVenue``, ``ExchangeVenue``, a ``GuardedVenue``, any later one): ``submit`` asks the
engine first (a denial raises :class:`~spark_research.risk.errors.OrderDeniedError`, which is an
``OrderRefusedError``: a paper/live session records it as refused), sends the approved --
possibly lot/tick-rounded -- order, then books every fill in the engine and releases the order.

Example::

    >>> from spark_research.gates.model import Order
    >>> from spark_research.gates.venue import SimulatedVenue, SimulatorConfig
    >>> from spark_research.risk.config import RiskConfig
    >>> from spark_research.risk.engine import RiskEngine
    >>> from spark_research.risk.errors import OrderDeniedError
    >>> engine = RiskEngine(RiskConfig.from_dict({"instruments": {"BTCUSDT": {"max_position": 1}}}))
    >>> venue = RiskGuardedVenue(SimulatedVenue(SimulatorConfig(seed=1, partial_fill_prob=0)), engine)
    >>> engine.on_price("BTCUSDT", 30_000.0)
    >>> fills = venue.submit(Order("o1", "sma", "BTCUSDT", 0, "buy", 0.8, 30_000.0))
    >>> engine.book.position("BTCUSDT").qty
    0.8
    >>> try:
    ...     venue.submit(Order("o2", "sma", "BTCUSDT", 0, "buy", 0.5, 30_000.0))
    ... except OrderDeniedError as exc:
    ...     print(exc.denial.check, exc.denial.limit, exc.denial.value)
    max_position 1.0 1.3
"""
from __future__ import annotations

from spark_research.gates.errors import OrderRejectedError
from spark_research.gates.model import Fill, Order
from spark_research.risk.engine import RiskEngine
from spark_research.risk.errors import OrderDeniedError


class RiskGuardedVenue:
    """``venue`` behind ``engine``. ``strategy``: check every order under this strategy's limits
    (its ``Order.strategy`` is replaced), else each order's own strategy."""

    def __init__(self, venue, engine: RiskEngine, *, strategy: str | None = None):
        self.venue, self.engine, self.strategy = venue, engine, strategy
        self.name = venue.name
        self.sent = 0  #: orders that reached the venue

    def submit(self, order: Order) -> list[Fill]:
        """Check (raises ``OrderDeniedError``), forward, book the fills; a venue reject releases the order."""
        if self.strategy is not None and order.strategy != self.strategy:
            order = Order(order.order_id, self.strategy, order.symbol, order.ts, order.side, order.size,
                          order.ref_price)
        approved = self.engine.check(order)
        self.sent += 1
        try:
            fills = self.venue.submit(approved)
        except OrderRejectedError:
            self.engine.on_order_done(approved.order_id)
            raise
        try:
            for f in fills:
                self.engine.on_fill(f)
        finally:
            self.engine.on_order_done(approved.order_id)
        return fills

    def cancel(self, order_id: str, strategy: str = "") -> None:
        """Count a cancel against the cancel-rate limit (raises ``OrderDeniedError`` when throttled),
        then cancel on the venue if it can, and release the order."""
        denial = self.engine.check_cancel(order_id, self.strategy or strategy)
        if denial is not None:
            raise OrderDeniedError(denial)
        cancel = getattr(self.venue, "cancel", None)
        if cancel is not None:
            cancel(order_id)
        self.engine.on_order_done(order_id)
