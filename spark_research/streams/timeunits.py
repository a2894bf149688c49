"""Venue time fields: their unit (s, ms, µs, ns), checked by magnitude on the first messages.

Every venue documents the unit of each time field, and some venues (or Binance-compatible
clones ignoring ``timeUnit``) send another one. An epoch time's magnitude tells its unit for
any date between 1973 and 2286, so the adapters check the first values of each field and,
when the unit is not the documented one, switch to the unit the venue really sends, log it
once and count it in ``ws_time_unit_fixes_total{exchange,field}``.

Example::

    >>> unit_of(1_700_000_000_123)
    'ms'
    >>> g = UnitGuard("doc", "T", expected="us")
    >>> g.to_us(1_700_000_000_123)   # a millisecond value where microseconds were expected
    1700000000123000
    >>> g.unit
    'ms'
"""
from __future__ import annotations

import logging

from spark_research import metrics

log = logging.getLogger(__name__)

#: Microseconds per unit.
US_PER: dict[str, float] = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}
_INT_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}
# Epoch magnitudes from 1973-03 (1e8 s) on: each unit owns three decades.
_BOUNDS = ((1e8, 1e11, "s"), (1e11, 1e14, "ms"), (1e14, 1e17, "us"), (1e17, 1e20, "ns"))


def unit_of(value: float) -> str | None:
    """The unit an epoch time of this magnitude is in, None when it is no plausible epoch time.

    Example: ``unit_of(1.7e9)`` → ``'s'``, ``unit_of(1_700_000_000_000_000)`` → ``'us'``.
    """
    v = abs(float(value))
    for lo, hi, unit in _BOUNDS:
        if lo <= v < hi:
            return unit
    return None


def to_us(value: float, unit: str) -> int:
    """Epoch ``value`` in ``unit`` as integer microseconds (``to_us(1.5, "s")`` → ``1500000``)."""
    per = _INT_US_PER.get(unit)
    if per is not None and type(value) is int:
        return value * per
    if unit not in US_PER:
        raise ValueError(f"unit must be one of {sorted(US_PER)}, got {unit!r}")
    return int(round(float(value) * US_PER[unit])) if unit != "ns" else int(value) // 1000


class UnitGuard:
    """The unit of one venue time field: the documented one, checked on the first ``checks`` values.

    :meth:`to_us` converts a value; while checks remain it also verifies the magnitude and,
    if the venue sends another unit, adopts it (logged once, counted once per switch).
    """

    __slots__ = ("exchange", "field", "expected", "unit", "checks", "per", "fixed")

    def __init__(self, exchange: str, field: str, expected: str, checks: int = 16):
        if expected not in US_PER:
            raise ValueError(f"UnitGuard.expected must be one of {sorted(US_PER)}, got {expected!r}")
        self.exchange, self.field, self.expected = exchange, field, expected
        self.unit = expected
        self.per = US_PER[expected]
        self.checks = checks
        self.fixed = False

    def to_us(self, value: int | float) -> int:
        """``value`` in microseconds, in the unit this field really uses."""
        if self.checks:
            self._check(value)
        if self.per == 1:
            return int(value)
        if self.per >= 1 and type(value) is int:
            return value * int(self.per)
        return int(round(float(value) * self.per)) if self.per >= 1 else int(value) // 1000

    def _check(self, value: int | float) -> None:
        seen = unit_of(value)
        if seen is None:  # no plausible epoch time (validation elsewhere rejects the message)
            return
        self.checks -= 1
        if seen != self.unit:
            log.warning("%s field %r is in %s, documented/requested %s: converting from %s (value %r)",
                        self.exchange, self.field, seen, self.expected, seen, value)
            metrics.WS_TIME_UNIT_FIXES.labels(self.exchange, self.field).inc()
            self.unit, self.per, self.fixed = seen, US_PER[seen], seen != self.expected


_SECOND_CACHE: dict[str, int] = {}


def rfc3339_us(text: str) -> int:
    """An RFC 3339 UTC time (``2023-02-09T20:32:50.714964855Z``, any number of fraction digits) in epoch µs.

    Digits beyond microseconds are cut (not rounded): a nanosecond venue time maps to the
    microsecond it falls in. The whole-second part is cached, so a stream of times costs a
    dict lookup each.

    Example: ``rfc3339_us("1970-01-01T00:00:01.5Z")`` → ``1500000``.
    """
    import calendar

    head = text[:19]
    base = _SECOND_CACHE.get(head)
    if base is None:
        if len(text) < 20 or text[4] != "-" or text[10] not in "Tt " or text[13] != ":":
            raise ValueError(f"time {text!r} is not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.f]Z)")
        base = calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                                int(text[14:16]), int(text[17:19]), 0, 0, 0)) * 1_000_000
        if len(_SECOND_CACHE) > 4096:
            _SECOND_CACHE.clear()
        _SECOND_CACHE[head] = base
    rest = text[19:]
    if not rest.endswith(("Z", "z")):
        if rest.endswith("+00:00"):
            rest = rest[:-6] + "Z"
        else:
            raise ValueError(f"time {text!r} is not UTC (must end with Z)")
    if rest[0] == ".":
        frac = rest[1:-1]
        if not frac.isdigit():
            raise ValueError(f"time {text!r}: bad fraction {frac!r}")
        return base + int((frac + "00000")[:6])
    return base


_HEAD_CACHE: dict[int, str] = {}


def us_to_rfc3339(us: int, digits: int = 6) -> str:
    """Epoch µs as RFC 3339 UTC with ``digits`` fraction digits (9 pads nanoseconds with zeros).

    Example: ``us_to_rfc3339(1_500_000, 3)`` → ``'1970-01-01T00:00:01.500Z'``.
    """
    s, frac = divmod(int(us), 1_000_000)
    head = _HEAD_CACHE.get(s)
    if head is None:
        import time as _time

        head = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(s))
        if len(_HEAD_CACHE) > 4096:
            _HEAD_CACHE.clear()
        _HEAD_CACHE[s] = head
    f = f"{frac:06d}000"
    return f"{head}.{f[:digits]}Z" if digits else f"{head}Z"
