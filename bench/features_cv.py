"""Purged cross-validation of LightGBM on Dask: 1 worker vs 2 workers, same data, same run.

1M rows x 20 features (float32; a weak signal in two features, labels spanning 20 rows so
purging matters), :class:`~spark_research.features.cv.PurgedKFold` with a 1% embargo, one
LightGBM model per fold through :func:`~spark_research.features.training.train_folds`.

The comparison is honest about threads: every fold trains with ``num_threads=1`` on a
single-threaded worker process, so 1 worker runs the folds one after another and 2 workers
run two at a time; nothing else differs (both clusters come from the platform's ``connect``,
both runs scatter the data to every worker inside the timed call, contenders are timed
round-robin). The out-of-fold predictions of both must be bit-identical (exit 1 if not).
Target: 2-worker scaling >= 1.6x. Prints median [min-max] over >= 5 runs; never asserts on time.

``python bench/features_cv.py [--rows 1000000] [--repeat 5] [--record]``; ``bench/features.py``
calls :func:`bench_purged_cv` (``record_as="features"`` files the figures under its bench).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from _timing import MIN_RUNS, Spread, Timing, ratios, timed_interleaved  # noqa: E402

#: Fold count: even, so two workers get the same share.
N_SPLITS = 4
LGBM_PARAMS = {"n_estimators": 60, "num_leaves": 31, "max_bin": 63, "learning_rate": 0.1, "min_child_samples": 100}
TARGET = "≥ 1.6×"


def make_data(n_rows: int, n_features: int, horizon: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Features, binary labels and label ends (``t1``) for the benchmark (seeded)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, n_features), dtype=np.float32)
    y = (0.3 * X[:, 0] - 0.2 * X[:, 1] + rng.standard_normal(n_rows, dtype=np.float32) > 0).astype(np.int8)
    t1 = pd.Series(np.minimum(np.arange(n_rows) + horizon, n_rows - 1), index=np.arange(n_rows))
    return X, y, t1


def _wait_workers(client: Any, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(client.scheduler_info()["workers"]) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} Dask workers did not start within {timeout} s")
        time.sleep(0.1)


def _busiest_worker_seconds(result: Any) -> float:
    """Sum of fold wall times on the worker that spent the longest in folds."""
    per: dict[str, float] = {}
    for f in result.folds:
        per[f.worker] = per.get(f.worker, 0.0) + f.seconds
    return max(per.values())


def _quiet_dask_logs() -> None:
    """No INFO chatter from the in-process schedulers while the clusters close."""
    import logging

    for name in [n for n in logging.root.manager.loggerDict if n.startswith("distributed")] + ["distributed"]:
        logging.getLogger(name).setLevel(logging.ERROR)


def _warm() -> bool:
    import lightgbm  # noqa: F401

    import spark_research.features.training  # noqa: F401
    return True


def bench_purged_cv(n_rows: int = 1_000_000, n_features: int = 20, repeat: int = MIN_RUNS,
                    record_as: str | None = None, verbose: bool = True) -> dict[str, Any]:
    """Time purged K-fold CV of LightGBM on a 1-worker and a 2-worker LocalCluster; return the figures.

    Returns ``{"one": Timing, "two": Timing, "scaling": Spread, "identical": bool, ...}``;
    ``record_as`` names the bench in ``bench/results.json`` to record the figures under (None: do not record).

    Example::

        >>> figs = bench_purged_cv(n_rows=20_000, n_features=5, repeat=1, verbose=False)   # doctest: +SKIP
        >>> figs["identical"]                                                               # doctest: +SKIP
        True
    """
    from lightgbm import LGBMClassifier

    from spark_research.features.cv import PurgedKFold
    from spark_research.features.training import train_folds
    from spark_research.optimizer.cluster import close_client, connect

    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    X, y, t1 = make_data(n_rows, n_features)
    cv = PurgedKFold(N_SPLITS, embargo=0.01, t1=t1)
    model = LGBMClassifier(**LGBM_PARAMS)
    clients = {}
    try:
        for n in (1, 2):
            clients[n] = connect(n_workers=n)
            _wait_workers(clients[n], n)
            clients[n].run(_warm)

        def run(n: int):
            return train_folds(model, X, y, cv, predict="proba", seed=0, n_threads=1, client=clients[n], timeout=3600)

        run(1), run(2)  # first contact: imports, LightGBM's first Dataset on each worker
        t = timed_interleaved({"one": lambda: run(1), "two": lambda: run(2)}, repeat)
        local0 = time.perf_counter()
        local = train_folds(model, X, y, cv, predict="proba", seed=0, n_threads=1)
        local_s = time.perf_counter() - local0
    finally:
        _quiet_dask_logs()
        for c in clients.values():
            close_client(c)
    one: Timing = t["one"]
    two: Timing = t["two"]
    scaling = ratios(one, two)
    oof1, oof2 = one.result.oof(), two.result.oof()
    identical = bool(np.array_equal(oof1, oof2) and np.array_equal(oof1, local.oof()))
    figs = {"one": one, "two": two, "scaling": scaling, "identical": identical, "local_s": local_s,
            "workers_used": sorted(set(two.result.scores["worker"])), "mean_score": two.result.mean_score,
            "fold_seconds": Spread.of(f.seconds for f in two.result.folds),
            # CPU the folds of the last run got per second of its wall time: 1.0 is one busy core, 2.0 two
            "cpu_share": {n: sum(f.cpu_seconds for f in t[k].result.folds) / t[k].samples[-1]
                          for n, k in ((1, "one"), (2, "two"))},
            # wall time of the last run not spent inside a fold on the busiest worker: scatter, scheduling, gather
            "overhead_s": {n: t[k].samples[-1] - _busiest_worker_seconds(t[k].result)
                           for n, k in ((1, "one"), (2, "two"))}}
    if verbose:
        what = f"purged {N_SPLITS}-fold CV, LightGBM ({LGBM_PARAMS['n_estimators']} trees, 1 thread/fold), " \
               f"{n_rows:,} rows x {n_features} features"
        print(what)
        print(f"  1 worker : {one:.2f} s")
        print(f"  2 workers: {two:.2f} s   (folds on {len(figs['workers_used'])} workers; "
              f"fold fit+predict {figs['fold_seconds']:.2f} s)")
        print(f"  scaling 1 -> 2 workers: {scaling:.2f}x  (target {TARGET})")
        print(f"  in-process, no Dask, one run: {local_s:.2f} s; out-of-fold predictions identical "
              f"(1 worker, 2 workers, in-process): {identical}; mean accuracy {figs['mean_score']:.4f}")
        print(f"  CPU obtained by the folds per wall second (last run): 1 worker {figs['cpu_share'][1]:.2f}, "
              f"2 workers {figs['cpu_share'][2]:.2f} (ideal 1 and 2; less means the machine was busy elsewhere)")
        print(f"  wall time outside the busiest worker's folds (last run): 1 worker {figs['overhead_s'][1]:.2f} s, "
              f"2 workers {figs['overhead_s'][2]:.2f} s (scatter to every worker, scheduling, gather)")
        print(f"  (cpu_count={os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    if record_as:
        from _results import record

        name = f"purged CV LightGBM, {n_rows:,} rows x {n_features}"
        record(record_as, f"{name}, 2 workers", two, "s", peer="1 worker", ratio=scaling, target=TARGET,
               note="ratio = 1-worker time / 2-worker time (scaling); 1 thread per fold")
        record(record_as, f"{name}, 1 worker", one, "s")
    return figs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=MIN_RUNS)
    parser.add_argument("--record", action="store_true", help="record the figures in bench/results.json (bench features_cv)")
    args = parser.parse_args(argv)
    figs = bench_purged_cv(args.rows, args.features, args.repeat, record_as="features_cv" if args.record else None)
    if not figs["identical"]:
        print("FAIL: out-of-fold predictions differ between 1 worker, 2 workers and in-process", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
