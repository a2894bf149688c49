"""Market data: schemas and validation, the Parquet/DuckDB store, loaders, synthetic bars.

Public surface::

    from spark_research.data import BarStore, validate_bars, generate_bars, load_sample
"""
from spark_research.data.schema import (
    BAR_COLUMNS,
    TRADE_COLUMNS,
    DataValidationError,
    validate_bars,
    validate_trades,
)
from spark_research.data.store import BarStore, default_store, load_bars, load_sample
from spark_research.data.synthetic import generate_bars, generate_trades

__all__ = [
    "BAR_COLUMNS",
    "TRADE_COLUMNS",
    "DataValidationError",
    "validate_bars",
    "validate_trades",
    "BarStore",
    "default_store",
    "load_bars",
    "load_sample",
    "generate_bars",
    "generate_trades",
]
