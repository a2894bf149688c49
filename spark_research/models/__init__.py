"""Models: an MLflow registry, ``ModelStrategy``, explanations and live drift monitoring.

Public surface (imported lazily, so ``import spark_research.models.cli`` stays light)::

    from spark_research.models import TrainSpec, train_model, ModelRegistry, default_registry
    from spark_research.models import ModelStrategy, strategy_for, walk_forward_retrain
    from spark_research.models import mda_importance, shap_values, psi, ks_statistic, ModelMonitor

Example::

    >>> from spark_research.models import TrainSpec
    >>> TrainSpec(features=("ret_1", "vol_20")).estimator
    'lightgbm'
"""
from __future__ import annotations

from spark_research._lazy import lazy_exports

_EXPORTS = {
    "TrainSpec": "training",
    "TrainedModel": "training",
    "train_model": "training",
    "build_dataset": "training",
    "cross_validate": "training",
    "ModelError": "errors",
    "UnknownModel": "errors",
    "ModelCard": "registry",
    "ModelRegistry": "registry",
    "LoadedModel": "registry",
    "default_registry": "registry",
    "ModelStrategy": "strategy",
    "strategy_for": "strategy",
    "walk_forward_retrain": "walkforward",
    "mda_importance": "explain",
    "shap_values": "explain",
    "plot_importance": "explain",
    "plot_shap_summary": "explain",
    "explain_model": "explain",
    "DriftReference": "drift",
    "psi": "drift",
    "ks_statistic": "drift",
    "drift_table": "drift",
    "ModelMonitor": "monitor",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("spark_research.models", _EXPORTS)
