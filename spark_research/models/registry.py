"""The model registry: MLflow tracking on a local SQLite file, one run per model.

``mlflow-skinny`` (the only MLflow that installs next to pyarrow >= 26; full ``mlflow`` pins
``pyarrow<26``) has the SQLAlchemy tracking store, so the registry is plain MLflow:

* backend store ``sqlite:///<SPARK_VAR or var>/mlflow.db``, artifacts under ``<var>/mlartifacts``,
  experiment ``spark-models``;
* each model is a run tagged ``spark.model_id`` holding the model (MLflow ``sklearn`` or
  ``lightgbm`` flavor, cloudpickle format, under ``model/``), its card ``card.json`` (features
  and their code hashes, training window, CV scores, spec, drift reference), params (the spec),
  metrics (``cv_*``), and a version of the registered model named after it;
* the id is a hash of the inputs (:func:`spark_research.models.training.model_id_of`):
  registering an identical model again returns the existing card.

``mlflow ui`` is not part of skinny; run it from any environment with full MLflow on the
same files: ``pipx run mlflow ui --backend-store-uri sqlite:///$PWD/var/mlflow.db``
(the artifacts are file URIs, so the UI finds them on this machine).

Example::

    >>> import tempfile
    >>> from spark_research.data import generate_bars
    >>> from spark_research.models.training import TrainSpec, train_model
    >>> reg = ModelRegistry(tempfile.mkdtemp())
    >>> card = reg.register(train_model(generate_bars("BTCUSDT", n=2_000, seed=1), TrainSpec(n_splits=3)))
    >>> reg.card(card.model_id).features == card.features, reg.load(card.model_id).card.model_id == card.model_id
    (True, True)
"""
from __future__ import annotations

import difflib
import json
import logging
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from spark_research.models.drift import DriftReference
from spark_research.models.errors import ModelError, UnknownModel
from spark_research.models.training import TrainedModel, TrainSpec

# MLflow reports usage to a remote endpoint unless told not to; a research platform never phones home.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

EXPERIMENT = "spark-models"
TAG_ID = "spark.model_id"


@dataclass
class ModelCard:
    """What the registry knows about a model (``card.json`` in its run)."""

    model_id: str
    name: str
    estimator: str
    features: list[str]
    feature_hashes: dict[str, str]
    columns: list[str]  #: the model's input columns (a multi-column feature gives several)
    symbols: list[str]
    train_start: str
    train_end: str
    n_samples: int
    cv_scores: dict[str, float]
    spec: dict[str, Any]
    lookback: int
    data_hash: str
    drift: dict[str, Any] = field(repr=False, default_factory=dict)
    run_id: str = ""
    version: int = 0
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)  #: library versions it was trained with

    @property
    def train_spec(self) -> TrainSpec:
        return TrainSpec.from_dict(self.spec)

    @property
    def drift_reference(self) -> DriftReference:
        return DriftReference.from_dict(self.drift)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @classmethod
    def of(cls, tm: TrainedModel) -> "ModelCard":
        import lightgbm
        import sklearn

        return cls(model_id=tm.model_id, name=tm.name, estimator=tm.spec.estimator, features=tm.features,
                   feature_hashes=dict(tm.feature_hashes), columns=tm.columns, symbols=list(tm.symbols),
                   train_start=tm.train_start.isoformat(), train_end=tm.train_end.isoformat(),
                   n_samples=tm.n_samples, cv_scores=dict(tm.cv_scores), spec=tm.spec.to_dict(),
                   lookback=tm.lookback, data_hash=tm.data_hash, drift=tm.drift.to_dict(),
                   created=pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
                   versions={"scikit-learn": sklearn.__version__, "lightgbm": lightgbm.__version__})


@dataclass
class LoadedModel:
    """A registered model ready to predict: the fitted estimator and its card."""

    card: ModelCard
    estimator: Any = field(repr=False)

    @property
    def model_id(self) -> str:
        return self.card.model_id

    @property
    def features(self) -> list[str]:
        return self.card.features

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """P(up) per row of ``X`` (columns in the card's column order)."""
        if isinstance(X, pd.DataFrame):
            X = X[self.card.columns].to_numpy()
        return self.estimator.predict_proba(X)[:, 1]

    @classmethod
    def of(cls, tm: TrainedModel) -> "LoadedModel":
        """An in-memory (unregistered) model, e.g. one walk-forward window's."""
        return cls(ModelCard.of(tm), tm.estimator)


def _local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ModelError(f"artifact uri {uri!r}: only local file artifacts are supported")
    return Path(unquote(parsed.path))


class ModelRegistry:
    """Models in MLflow under ``root`` (default ``settings().var_dir``); see the module docstring."""

    _clients: dict[Path, Any] = {}
    _lock = threading.RLock()

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        from spark_research.config import settings

        self.root = Path(root).expanduser().resolve() if root is not None else settings().var_dir
        self.tracking_uri = f"sqlite:///{self.root / 'mlflow.db'}"
        self.artifact_root = self.root / "mlartifacts"
        self._loaded: dict[str, LoadedModel] = {}
        self._experiment_id: str | None = None

    # -- MLflow plumbing
    @property
    def client(self) -> Any:
        with self._lock:
            client = self._clients.get(self.root)
            if client is None:
                from mlflow import MlflowClient

                self.root.mkdir(parents=True, exist_ok=True)
                logging.getLogger("alembic").setLevel(logging.WARNING)
                logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
                client = self._clients[self.root] = MlflowClient(tracking_uri=self.tracking_uri)
            return client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            with self._lock:
                exp = self.client.get_experiment_by_name(EXPERIMENT)
                self._experiment_id = exp.experiment_id if exp is not None else self.client.create_experiment(
                    EXPERIMENT, artifact_location=self.artifact_root.as_uri(), tags={"spark.capability": "models"})
        return self._experiment_id

    def _run_of(self, model_id: str) -> Any | None:
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{TAG_ID}` = '{model_id}'",
                                       max_results=1)
        return runs[0] if runs else None

    # -- public API
    def register(self, tm: TrainedModel) -> ModelCard:
        """Log ``tm`` as a run (model, card, params, metrics) and a registered-model version; return its card.

        An identical model (same id) already registered is not logged again: its card is returned.
        """
        with self._lock:
            existing = self._run_of(tm.model_id)
            if existing is not None:
                return self.card(tm.model_id)
            card = ModelCard.of(tm)
            client = self.client
            tags = {TAG_ID: tm.model_id, "spark.features": ",".join(card.features),
                    "spark.symbols": ",".join(card.symbols), "spark.estimator": card.estimator,
                    "spark.train_start": card.train_start, "spark.train_end": card.train_end,
                    "spark.data_hash": card.data_hash, "mlflow.runName": f"{card.name}-{tm.model_id}"}
            run = client.create_run(self.experiment_id, tags=tags)
            run_id = run.info.run_id
            try:
                from mlflow.entities import Metric, Param

                params = {k: (json.dumps(v) if isinstance(v, (list, dict)) else str(v))[:6000]
                          for k, v in card.spec.items()}
                now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
                metrics = [Metric(f"cv_{k}", float(v), now, 0) for k, v in card.cv_scores.items()
                           if np.isfinite(v)]
                client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
                with tempfile.TemporaryDirectory() as tmp:
                    self._save_model(tm, Path(tmp) / "model")
                    client.log_artifacts(run_id, str(Path(tmp) / "model"), "model")
                card.run_id = run_id
                card.version = self._register_version(card, run.info.artifact_uri)
                client.log_text(run_id, json.dumps(card.to_dict(), indent=1, sort_keys=True), "card.json")
                client.set_terminated(run_id)
            except Exception:
                client.set_terminated(run_id, status="FAILED")
                client.set_tag(run_id, TAG_ID, f"failed-{tm.model_id}")
                raise
            self._loaded[tm.model_id] = LoadedModel(card, tm.estimator)
            return card

    @staticmethod
    def _save_model(tm: TrainedModel, path: Path) -> None:
        import mlflow.lightgbm
        import mlflow.sklearn

        flavor = mlflow.lightgbm if tm.spec.estimator == "lightgbm" else mlflow.sklearn
        level = logging.getLogger(flavor.__name__).level
        logging.getLogger(flavor.__name__).setLevel(logging.ERROR)  # the pickle-format caution, once per save
        import lightgbm
        import sklearn

        try:  # explicit requirements: MLflow would otherwise infer them by importing the model in a subprocess
            flavor.save_model(tm.estimator, str(path), serialization_format="cloudpickle",
                              pip_requirements=[f"scikit-learn=={sklearn.__version__}",
                                                f"lightgbm=={lightgbm.__version__}"])
        finally:
            logging.getLogger(flavor.__name__).setLevel(level)

    def _register_version(self, card: ModelCard, artifact_uri: str) -> int:
        client = self.client
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(card.name)
        except MlflowException:
            client.create_registered_model(card.name, description="spark_research model (see the run's card.json)")
        mv = client.create_model_version(card.name, f"{artifact_uri}/model", run_id=card.run_id,
                                         tags={TAG_ID: card.model_id})
        return int(mv.version)

    def _known_ids(self) -> list[str]:
        runs = self.client.search_runs([self.experiment_id], filter_string="attributes.status = 'FINISHED'",
                                       max_results=1000)
        return [r.data.tags.get(TAG_ID, "") for r in runs]

    def _unknown(self, model_id: str) -> UnknownModel:
        known = self._known_ids()
        close = [k for k in known if k.startswith(model_id)] or difflib.get_close_matches(model_id, known, n=3)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return UnknownModel(f"unknown model {model_id!r}{hint} ({len(known)} registered in {self.tracking_uri}; "
                            f"`spark model list` shows them)")

    def card(self, model_id: str) -> ModelCard:
        """The card of a registered model (:class:`UnknownModel` if there is none)."""
        if model_id in self._loaded:
            return self._loaded[model_id].card
        run = self._run_of(model_id)
        if run is None or run.info.status != "FINISHED":
            raise self._unknown(model_id)
        path = _local_path(run.info.artifact_uri) / "card.json"
        return ModelCard.from_dict(json.loads(path.read_text()))

    def load(self, model_id: str) -> LoadedModel:
        """The fitted model and its card (cached in this process)."""
        with self._lock:
            if model_id in self._loaded:
                return self._loaded[model_id]
            card = self.card(model_id)
            run = self.client.get_run(card.run_id)
            import mlflow.lightgbm
            import mlflow.sklearn

            flavor = mlflow.lightgbm if card.estimator == "lightgbm" else mlflow.sklearn
            est = flavor.load_model(str(_local_path(run.info.artifact_uri) / "model"))
            loaded = self._loaded[model_id] = LoadedModel(card, est)
            return loaded

    def list(self) -> pd.DataFrame:
        """One row per registered model, newest first."""
        runs = self.client.search_runs([self.experiment_id], filter_string="attributes.status = 'FINISHED'",
                                       order_by=["attributes.start_time DESC"], max_results=1000)
        rows = []
        for r in runs:
            t, m = r.data.tags, r.data.metrics
            if TAG_ID not in t:
                continue
            rows.append({"model_id": t[TAG_ID], "name": t.get("mlflow.runName", "").rsplit("-", 1)[0],
                         "estimator": t.get("spark.estimator", ""), "symbols": t.get("spark.symbols", ""),
                         "features": len(t.get("spark.features", "").split(",")),
                         "train_start": t.get("spark.train_start", ""), "train_end": t.get("spark.train_end", ""),
                         "cv_accuracy": m.get("cv_accuracy", np.nan), "cv_roc_auc": m.get("cv_roc_auc", np.nan),
                         "created": pd.Timestamp(r.info.start_time, unit="ms", tz="UTC"), "run_id": r.info.run_id})
        cols = ["model_id", "name", "estimator", "symbols", "features", "train_start", "train_end", "cv_accuracy",
                "cv_roc_auc", "created", "run_id"]
        return pd.DataFrame(rows, columns=cols)


_DEFAULT: dict[Path, ModelRegistry] = {}


def default_registry() -> ModelRegistry:
    """The registry under ``settings().var_dir`` (one per var directory and process)."""
    from spark_research.config import settings

    root = settings().var_dir
    if root not in _DEFAULT:
        _DEFAULT[root] = ModelRegistry(root)
    return _DEFAULT[root]


__all__ = ["EXPERIMENT", "ModelCard", "LoadedModel", "ModelRegistry", "default_registry"]
