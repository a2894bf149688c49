"""Point-in-time features: a registry of lookahead-checked features, a Parquet/DuckDB store.

Public surface (imported lazily, so ``import spark_research.features.cli`` stays light)::

    from spark_research.features import feature, get_feature, list_features, compute_features
    from spark_research.features import FeatureStore, LiveFeatures, asof_matrix, trade_flow, with_trade_flow
    from spark_research.features import triple_barrier_labels, meta_labels, average_uniqueness
    from spark_research.features import PurgedKFold, CombinatorialPurgedKFold, cpcv_report, train_folds

Example::

    >>> from spark_research.features import list_features
    >>> "ret_1" in list_features()
    True
"""
from __future__ import annotations

from spark_research._lazy import lazy_exports

_EXPORTS = {
    # registry: the @feature decorator and lookups
    "Feature": "registry",
    "FeatureError": "registry",
    "LeakyFeatureError": "registry",
    "LookbackError": "registry",
    "UnknownFeature": "registry",
    "feature": "registry",
    "get_feature": "registry",
    "list_features": "registry",
    "compute_features": "registry",
    "feature_columns": "registry",
    "BarWindow": "registry",
    # store: Parquet per symbol, code hashes in the metadata, DuckDB as-of joins
    "FeatureStore": "store",
    "StaleFeatureError": "store",
    "asof_matrix": "store",
    # trade flow: each bar's trades aggregated point in time, for trade-flow features
    "trade_flow": "trades",
    "with_trade_flow": "trades",
    # live: one bar at a time, same code as the batch path
    "LiveFeatures": "live",
    # labels and sample weights (AFML ch. 3-4)
    "fixed_horizon_labels": "labels",
    "triple_barrier_labels": "labels",
    "meta_labels": "labels",
    "average_uniqueness": "labels",
    # cross-validation that does not leak (AFML ch. 7, 12), folds on Dask
    "PurgedKFold": "cv",
    "CombinatorialPurgedKFold": "cv",
    "cpcv_report": "cv",
    "train_folds": "training",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("spark_research.features", _EXPORTS)
