"""Exceptions of the risk package; each message names the field (or check), the limit and the value."""
from __future__ import annotations

from spark_research.gates.errors import OrderRefusedError


class RiskError(Exception):
    """Base class of every risk error."""


class RiskConfigError(RiskError, ValueError):
    """``risk.yml`` is invalid: the message names the file, the field and the value."""


class OrderDeniedError(RiskError, OrderRefusedError):
    """The pre-trade risk engine denied an order. ``denial`` says which check, limit and value.

    A subclass of the gates' :class:`~spark_research.gates.errors.OrderRefusedError`, so a paper/live
    session records a risk denial like a gate refusal (refused, not a venue error).
    """

    def __init__(self, denial):
        super().__init__(denial.message)
        self.denial = denial


class RiskPermissionError(RiskError, PermissionError):
    """The actor may not change risk states (not authenticated, or not an operator)."""
