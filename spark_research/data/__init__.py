"""Market data: schemas and validation, the Parquet/DuckDB store, loaders, synthetic bars.

Public surface (imported lazily)::

    from spark_research.data import BarStore, validate_bars, generate_bars, load_sample
    from spark_research.data import generate_universe, import_klines   # universe scale
"""
from __future__ import annotations

from spark_research._lazy import lazy_exports

_EXPORTS = {
    "BAR_COLUMNS": "schema",
    "TRADE_COLUMNS": "schema",
    "DataValidationError": "schema",
    "validate_bars": "schema",
    "validate_trades": "schema",
    "BarStore": "store",
    "default_store": "store",
    "load_bars": "store",
    "load_sample": "store",
    "generate_sample": "store",
    "generate_bars": "synthetic",
    "generate_trades": "synthetic",
    "load_file": "loaders",
    "StoreAccessError": "fs",
    "generate_universe": "universe",
    "universe_symbols": "universe",
    "import_klines": "importer",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("spark_research.data", _EXPORTS)
