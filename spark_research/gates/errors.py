"""Exceptions of the gates package; each message names the field and the value at fault."""
from __future__ import annotations


class GateError(Exception):
    """Base class of every gates error."""


class UnknownGateError(GateError, LookupError):
    """No gate is registered under the given strategy/symbol."""


class InvalidMeasurementError(GateError, ValueError):
    """A drift/PnL/time measurement is NaN, infinite or otherwise unusable."""


class EmptyReasonError(GateError, ValueError):
    """A manual gate action was requested without a reason."""


class GatePermissionError(GateError, PermissionError):
    """The actor is not authorised to change a gate (not logged in, or not an operator)."""


class OrderRefusedError(GateError, RuntimeError):
    """An order to the live venue was refused because its gate is CLOSED."""


class OrderRejectedError(GateError, RuntimeError):
    """The execution venue rejected an order (venue-side error, counted in the error rate)."""


class ExchangeRejectedError(OrderRejectedError):
    """The exchange answered an order with an error; ``code`` and ``status`` are what it sent."""

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None):
        super().__init__(message)
        self.code, self.status = code, status


class VenueUnavailableError(OrderRejectedError):
    """The venue could not be reached (the order was not sent), or an order's outcome could not be
    established (``client_order_id`` names it for reconciliation; it was never sent twice)."""

    def __init__(self, message: str, *, client_order_id: str | None = None):
        super().__init__(message)
        self.client_order_id = client_order_id


class InvalidBarError(GateError, ValueError):
    """A bar given to the paper engine is malformed (field named in the message)."""


class AuditError(GateError, RuntimeError):
    """The audit log could not be written or read."""


class FillsImportError(GateError, ValueError):
    """A fills CSV could not be imported (row and field named in the message)."""
