"""Lazy public names for capability packages (PEP 562), written once.

A package's ``__init__`` lists ``{name: submodule}`` and gets a module ``__getattr__`` that
imports the submodule on first use, so ``spark --help`` (which imports every ``cli``
module) pays for no pandas/vectorbt import, and no ``__init__`` is a barrel.

Example::

    >>> __getattr__ = lazy_exports("spark_research.data", {"generate_bars": "synthetic"})
    >>> __getattr__("generate_bars").__name__
    'generate_bars'
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving each name in ``where`` from ``package.<submodule>``."""

    def __getattr__(name: str) -> Any:
        try:
            module = where[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
