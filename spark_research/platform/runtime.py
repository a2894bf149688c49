"""Where the apps find the running platform, if any.

``spark serve`` registers its :class:`~spark_research.platform.components.Platform` here before
the Panel server starts; the view classes of the apps ask :func:`current` for the shared export
manager, optimizer or stream pipeline. Served on their own (``panel serve apps/research.py``)
there is no platform and the views fall back to their own, smaller components.

Example::

    >>> from spark_research.platform import runtime
    >>> runtime.current() is None
    True
"""
from __future__ import annotations

from typing import Any

_CURRENT: Any = None


def register(platform: Any) -> None:
    """Make ``platform`` the one :func:`current` returns (``None`` unregisters)."""
    global _CURRENT
    _CURRENT = platform


def current() -> Any:
    """The running platform of this process, or ``None``."""
    return _CURRENT
