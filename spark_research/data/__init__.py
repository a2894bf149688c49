"""Market data: schemas and validation, the Parquet/DuckDB store, loaders, synthetic bars.

Public surface (imported lazily)::

    from spark_research.data import BarStore, validate_bars, generate_bars, load_sample
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BAR_COLUMNS": "spark_research.data.schema",
    "TRADE_COLUMNS": "spark_research.data.schema",
    "DataValidationError": "spark_research.data.schema",
    "validate_bars": "spark_research.data.schema",
    "validate_trades": "spark_research.data.schema",
    "BarStore": "spark_research.data.store",
    "default_store": "spark_research.data.store",
    "load_bars": "spark_research.data.store",
    "load_sample": "spark_research.data.store",
    "generate_sample": "spark_research.data.store",
    "generate_bars": "spark_research.data.synthetic",
    "generate_trades": "spark_research.data.synthetic",
    "load_file": "spark_research.data.loaders",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'spark_research.data' has no attribute {name!r}")
