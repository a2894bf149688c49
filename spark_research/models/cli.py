"""``spark model train|list|show``: train a model on stored features, list and inspect the registry.

``train`` is strategy-free: bars from the bar store, features from the feature store (built or
updated incrementally first), labels, purged CV, LightGBM or a scikit-learn pipeline, then the
model is registered in MLflow (``<SPARK_VAR>/mlflow.db``) and its id printed; backtest it with
``spark backtest --strategy model:ID``.
"""
from __future__ import annotations

import argparse
import json


def _split(items: list[str] | None) -> list[str] | None:
    if not items:
        return None
    return [n for item in items for n in item.split(",") if n]


def _train(args: argparse.Namespace) -> int:
    from spark_research.data.store import BarStore, default_store
    from spark_research.models import inputs
    from spark_research.models.registry import default_registry
    from spark_research.models.training import TrainSpec, train_model

    features = tuple(_split(args.features) or inputs.DEFAULT_FEATURES)
    spec = TrainSpec(features=features, label=args.label, horizon=args.horizon, threshold=args.threshold,
                     barrier=args.barrier, estimator=args.estimator, n_splits=args.folds, embargo=args.embargo,
                     seed=args.seed, name=args.name or "")
    store = BarStore(args.store) if args.store else default_store()
    try:
        bars = store.load_bars(args.symbol)
    except KeyError as exc:
        raise LookupError(f"--symbol {args.symbol!r}: no bars in {store.root} (spark data generate --sample)") from exc
    if args.last:
        bars = bars.iloc[-args.last:]
    X = inputs.store_features(args.symbol, features, store.root)
    client = None
    if args.scheduler:
        from spark_research.optimizer.cluster import connect

        client = connect(args.scheduler)
    tm = train_model({args.symbol: bars}, spec, features={args.symbol: X}, client=client)
    card = default_registry().register(tm)
    cv = card.cv_scores
    print(f"model {card.model_id} ({card.name} v{card.version}): {card.estimator} on {', '.join(card.symbols)}, "
          f"{card.n_samples} samples {card.train_start} .. {card.train_end}")
    print(f"purged {int(cv['folds'])}-fold CV: accuracy {cv['accuracy']:.4f} ± {cv['accuracy_std']:.4f}, "
          f"ROC AUC {cv['roc_auc']:.4f}, log loss {cv['log_loss']:.4f}")
    print(f"backtest it: spark backtest --strategy model:{card.model_id} --symbols {args.symbol}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from spark_research.models.registry import default_registry

    df = default_registry().list()
    if not len(df):
        print("no models registered (spark model train --symbol BTCUSDT)")
        return 0
    print(df.drop(columns=["run_id"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _show(args: argparse.Namespace) -> int:
    from spark_research.models.registry import default_registry

    card = default_registry().card(args.id.removeprefix("model:"))
    d = card.to_dict()
    d.pop("drift")
    if args.json:
        print(json.dumps(d, indent=2, sort_keys=True))
        return 0
    width = max(map(len, d))
    for key in ("model_id", "name", "version", "estimator", "symbols", "train_start", "train_end", "n_samples",
                "lookback", "data_hash", "run_id", "created"):
        print(f"{key:<{width}}  {d[key]}")
    print("features (code hash):")
    for name in card.features:
        print(f"  {name:<24} {card.feature_hashes.get(name, '')}")
    print("cv scores: " + ", ".join(f"{k} {v:.4f}" for k, v in card.cv_scores.items()))
    spec = {k: v for k, v in card.spec.items() if k != "features"}
    print("spec: " + ", ".join(f"{k}={v}" for k, v in spec.items()))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``spark model ...`` to the ``spark`` command."""
    p = subparsers.add_parser("model", help="ML models: train on stored features, list, show (MLflow registry)")
    sub = p.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)

    tr = sub.add_parser("train", help="train on stored features with purged CV and register the model")
    tr.add_argument("--symbol", required=True)
    tr.add_argument("--features", action="append", metavar="A,B,...",
                    help="feature names (repeatable or comma-separated); default: a short-warm-up set")
    tr.add_argument("--label", default="fixed", choices=["fixed", "triple_barrier"])
    tr.add_argument("--horizon", type=int, default=20, help="bars ahead / vertical barrier")
    tr.add_argument("--threshold", type=float, default=0.0, help="fixed label: return above this is up")
    tr.add_argument("--barrier", type=float, default=1.0, help="triple barrier: width in volatility units")
    tr.add_argument("--estimator", default="lightgbm", choices=["lightgbm", "logistic"])
    tr.add_argument("--folds", type=int, default=5)
    tr.add_argument("--embargo", type=float, default=0.01)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--last", type=int, default=None, help="train on the last N bars only")
    tr.add_argument("--name", default=None, help="registered model name (default <symbol>-<estimator>)")
    tr.add_argument("--store", default=None, help="bar/feature store root (default SPARK_STORE or data/store)")
    tr.add_argument("--scheduler", default=None, help="tcp://host:port: train the CV folds on that Dask cluster")
    tr.set_defaults(func=_train)

    ls = sub.add_parser("list", help="registered models, newest first")
    ls.set_defaults(func=_list)

    sh = sub.add_parser("show", help="a model's card: features and code hashes, window, CV scores, spec")
    sh.add_argument("id", help="model id (or model:ID)")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=_show)
