"""Parameter sweeps on Dask: submit a :class:`SweepSpec`, follow it, get a :class:`SweepResult`.

A sweep becomes one scheduler job whose steps are chunks of combinations for one symbol
(``TPE`` sweeps become one job per batch of trials). Each symbol's bars are scattered to
every worker once; steps reference them. When the job completes the results table is
stored under ``settings().var_dir / "sweeps" / <id>`` with its spec, so
``SweepResult.load(id)`` brings it back later.

Example::

    >>> from spark_research.optimizer import Optimizer, SweepSpec          # doctest: +SKIP
    >>> with Optimizer() as opt:                                          # doctest: +SKIP
    ...     res = opt.run(SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"],
    ...                             values={"fast": [5, 10, 20], "slow": [50, 100]}))
    ...     res.top(3)
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from spark_research.backtest import BacktestResult, ParameterError, get_strategy, run_backtest, split_symbols
from spark_research.backtest.registry import StrategyError, StrategyPayload, identify, probe_payload, to_payload
from spark_research.optimizer.scheduler import Job, JobCancelled, JobFailed, JobStatus, Scheduler
from spark_research.optimizer.spec import SpecError, SweepSpec, combinations, param_values, strategy_identity
from spark_research.optimizer.steps import BarsRef, evaluate_step, uses_fused
from spark_research.optimizer.store import SweepStore

#: Bar-combinations per step aimed at by the automatic step size (~100 ms on the fused kernels).
#: Each step costs the client/scheduler process ~5 ms of CPU on top of the work, and on a
#: 2-core machine that process shares the cores with the workers: on a 2,261-combination grid
#: of 100k bars, 1 -> 2 workers scaled 1.54x with 16 steps of 150 combinations (15M), 1.63x
#: with 8 steps (30M) and 1.72x with 4. A step must stay short enough that a step of another
#: job waits little for a free slot (about half a step at P95 with the cluster saturated).
FUSED_STEP_WORK = 30_000_000
#: Most combinations in one automatic step (bounds the step's result and checkpoint matrix).
MAX_STEP_COMBOS = 1024
#: Bar-combinations per step on the generic path (the strategy's own signal code runs once per
#: combination, ~1-5 ms per 100k bars, then one kernel simulates the step): ~100-300 ms steps.
GENERIC_STEP_WORK = 3_000_000
#: Steps that load their own bars (a sweep of the store) may be this many times the usual step's work.
LOADED_STEP_FACTOR = 10
#: Bars of the sweep's first symbol the pre-sweep lookahead check runs on (the most recent ones).
CHECK_BARS = 5_000
#: Seconds the pre-sweep check may spend per parameter set (the defaults and the sweep's first combination).
CHECK_BUDGET_S = 1.0
# checks already passed in this process: (code hash, params, bars fingerprint) -> report
_CHECKED: dict[tuple, Any] = {}
_CHECK_LOCK = threading.Lock()


class StrategyChangedWarning(UserWarning):
    """The strategy's code differs from the code that produced a stored sweep."""


class LookaheadRefused(SpecError):
    """The pre-sweep lookahead check found the strategy peeking at future bars; the message is its report."""


def auto_step_size(spec: SweepSpec, n_bars: int, n_combos: int | None = None, workers: int = 1) -> int:
    """Combinations per step: ``spec.step_size``, else ~100 ms of fused work, else 4 engine runs.

    With ``n_combos`` and ``workers``, the fused step count per symbol is rounded up to a
    multiple of ``workers`` and the combinations spread evenly over it, so no worker is left
    with one step more than the others at the end of a sweep.

    Example::

        >>> spec = SweepSpec(strategy="sma_cross", symbols=["BTCUSDT"])
        >>> auto_step_size(spec, 100_000), auto_step_size(spec, 100_000, n_combos=2_261, workers=2)
        (300, 283)
    """
    if spec.step_size:
        return int(spec.step_size)
    work = FUSED_STEP_WORK if uses_fused(spec.strategy, spec.objective) else GENERIC_STEP_WORK
    size = int(min(MAX_STEP_COMBOS, max(1, math.ceil(work / max(n_bars, 1)))))
    if n_combos and workers > 1:
        steps = math.ceil(n_combos / size)
        steps = math.ceil(steps / workers) * workers
        size = max(1, math.ceil(n_combos / steps))
    return size


def chunk(combos: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """Split ``combos`` into consecutive chunks of at most ``size`` rows."""
    return [combos.iloc[i:i + size] for i in range(0, len(combos), size)]


def rank(table: pd.DataFrame, spec: SweepSpec) -> pd.DataFrame:
    """One row per combination: the objective averaged over symbols, best first.

    Non-finite objective values (vectorbt's Sharpe is ``inf`` for a flat equity curve)
    count as missing, and combinations without any finite value rank last.
    """
    params = [p for p in spec.param_names if p in table.columns]
    obj = table[spec.objective].astype(float).where(np.isfinite(table[spec.objective].astype(float)))
    ranked = (table.assign(_obj=obj).groupby(params, sort=False)
              .agg(objective=("_obj", "mean"), symbols=("symbol", "nunique")).reset_index())
    return (ranked.sort_values("objective", ascending=not spec.maximize, na_position="last", kind="mergesort")
            .reset_index(drop=True))


@dataclass
class SweepResult:
    """A finished sweep: its spec and results table, ranking, top-N and heatmap helpers."""

    id: str
    spec: SweepSpec
    table: pd.DataFrame
    values: dict[str, np.ndarray] | None = field(default=None, repr=False)  #: {symbol: value at checkpoints x combos}
    #: the pre-sweep check's outcome: {"kind": "lookahead", "passed": ..., "cuts": ...} or {"kind": None, "skipped": True}
    check: dict[str, Any] | None = None

    @property
    def identity(self):
        """Which code produced this sweep (:class:`~spark_research.backtest.registry.StrategyIdentity`)."""
        return self.spec.identity

    @property
    def ranked(self) -> pd.DataFrame:
        """Combinations by mean objective over symbols, best first (see :func:`rank`)."""
        return rank(self.table, self.spec)

    @property
    def best_params(self) -> dict[str, Any]:
        """Parameters of the best combination (``ValueError`` if no combination has a finite objective)."""
        ranked = self.ranked
        if ranked.empty or not np.isfinite(ranked["objective"].iloc[0]):
            raise ValueError(f"sweep {self.id}: no combination has a finite {self.spec.objective}")
        return {p: _py(ranked[p].iloc[0]) for p in self.spec.param_names}

    def top(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` best combinations with their stats averaged over symbols."""
        params = self.spec.param_names
        stats = [c for c in self.table.columns if c not in params and c != "symbol"]
        means = self.table.groupby(params, sort=False)[stats].mean().reset_index()
        head = self.ranked.head(n)[params + ["objective"]]
        return head.merge(means, on=params, how="left")

    def heatmap(self, x: str, y: str, *, symbol: str | None = None, **opts: Any):
        """HoloViews heatmap of the objective over parameters ``x`` and ``y`` (others averaged)."""
        from spark_research.views.optimizer import objective_heatmap

        return objective_heatmap(self.table, x, y, self.spec.objective, symbol=symbol, **opts)

    def backtest(self, bars: pd.DataFrame | Mapping[str, pd.DataFrame], params: dict[str, Any] | None = None) -> BacktestResult:
        """Full ``run_backtest`` (vectorbt Portfolio, every stat) of the best (or given) parameters."""
        return run_backtest(self.spec.strategy, bars, params or self.best_params, fees=self.spec.fees,
                            slippage=self.spec.slippage, init_cash=self.spec.init_cash)

    @classmethod
    def load(cls, sweep_id: str, store: SweepStore | None = None) -> "SweepResult":
        """Reload a stored sweep by id."""
        store = store or SweepStore()
        spec = store.load_spec(sweep_id)
        result = cls(id=sweep_id, spec=spec, table=store.load_results(sweep_id),
                     check=store.load_status(sweep_id).get("check"))
        warn_if_changed(spec, f"sweep {sweep_id}")
        return result


class SweepHandle:
    """A submitted sweep: status, progress, cancel, result."""

    def __init__(self, optimizer: "Optimizer", sweep_id: str, spec: SweepSpec, total_steps: int):
        self.id, self.spec, self._opt = sweep_id, spec, optimizer
        self.jobs: list[Job] = []
        self.total_steps = total_steps
        self.created = time.time()
        self.status: JobStatus = JobStatus.QUEUED
        self.error: str | None = None
        self.check: dict[str, Any] | None = None
        self.persist = True
        self._result: SweepResult | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()

    @property
    def steps_done(self) -> int:
        return sum(j.steps_done for j in self.jobs)

    def info(self) -> dict[str, Any]:
        """Status dict: id, status, steps done/total, progress, ETA, error, times."""
        done, total = self.steps_done, self.total_steps
        started = min((j.started for j in self.jobs if j.started), default=None)
        eta = None
        if self.status.final:
            eta = 0.0
        elif done and started:
            eta = (time.time() - started) / done * (total - done)
        status = self.status
        if not status.final and any(j.status is JobStatus.RUNNING for j in self.jobs):
            status = JobStatus.RUNNING
        return {"id": self.id, "status": status.value, "user": self.spec.user, "priority": self.spec.priority,
                "strategy": self.spec.strategy_name, "steps_done": done, "steps_total": total,
                "progress": round(done / total, 6) if total else 1.0, "eta_s": eta, "error": self.error,
                "created": self.created, "started": started,
                "finished": max((j.finished for j in self.jobs if j.finished), default=None) if self.status.final else None,
                "check": self.check}

    def cancel(self) -> bool:
        """Cancel the sweep (pending steps dropped, running futures cancelled)."""
        with self._lock:
            if self.status.final:
                return False
            self.status = JobStatus.CANCELLED
            jobs = list(self.jobs)
        for j in jobs:
            self._opt.scheduler.cancel(j.id)
        self._opt._persist(self)
        self._done.set()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> SweepResult:
        """The :class:`SweepResult`; raises ``JobFailed``/``JobCancelled``/``TimeoutError``."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"sweep {self.id} not finished within {timeout}s")
        if self.status is JobStatus.FAILED:
            raise JobFailed(f"sweep {self.id} failed: {self.error}")
        if self.status is JobStatus.CANCELLED:
            raise JobCancelled(f"sweep {self.id} was cancelled")
        assert self._result is not None
        return self._result

    def _finish(self, status: JobStatus, error: str | None = None, result: SweepResult | None = None) -> None:
        with self._lock:
            if self.status.final:
                return
            self.status, self.error, self._result = status, error, result
        self._opt._persist(self)
        self._done.set()


class Optimizer:
    """Sweeps on a Dask cluster behind a :class:`Scheduler`; the notebook and CLI entry point.

    ``client``: an existing ``distributed.Client``; else one from :func:`connect`
    (``address`` or ``SPARK_DASK_SCHEDULER``, or a LocalCluster of ``n_workers``).
    ``bar_store``: where bars come from when :meth:`submit` gets none (default store).
    ``load_on_workers``: a sweep of bars from the store (``submit`` without ``bars``) ships each step a
    :class:`~spark_research.optimizer.steps.BarsRef` and the worker loads the symbol itself, so the
    client holds one symbol at a time, never the universe (bars given to ``submit`` are scattered).
    ``warm_workers``: register :class:`~spark_research.optimizer.warm.WarmKernels`, so each worker loads
    the sweep kernels when it joins instead of on its first step.
    """

    def __init__(self, client=None, *, address: str | None = None, n_workers: int | None = None,
                 store: SweepStore | None = None, bar_store=None, max_inflight_per_worker: int = 2,
                 max_queued_steps: int = 100_000, persist: bool = True, warm_workers: bool = True,
                 load_on_workers: bool = True):
        from spark_research.optimizer.cluster import connect
        from spark_research.optimizer.warm import register_warm_plugin

        self._owns_client = client is None
        self.client = client if client is not None else connect(address, n_workers=n_workers)
        if warm_workers:  # every worker, present or joining later, loads the sweep kernels before its first step
            register_warm_plugin(self.client)
        self.scheduler = Scheduler(self.client, max_inflight_per_worker=max_inflight_per_worker,
                                   max_queued_steps=max_queued_steps)
        self.store = store or SweepStore()
        self.bar_store = bar_store
        self.persist = persist
        self.load_on_workers = load_on_workers
        self._handles: dict[str, SweepHandle] = {}
        self._probed: set[tuple] = set()  # (strategy, code hash, workers) already loaded on every worker
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="optimizer-watch", daemon=True)
        self._watcher.start()

    # ------------------------------------------------------------------ context
    def __enter__(self) -> "Optimizer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the scheduler; close the client (and its LocalCluster) if this optimizer made it."""
        self._closed.set()
        self.scheduler.close()
        if self._owns_client:
            from spark_research.optimizer.cluster import close_client

            close_client(self.client)

    # ------------------------------------------------------------------ data
    def _bars(self, spec: SweepSpec, bars) -> dict[str, pd.DataFrame]:
        if bars is not None:
            frames = split_symbols(bars)
            missing = [s for s in spec.symbols if s not in frames]
            if missing:
                raise SpecError(f"symbols {missing} not in the bars given (have {sorted(frames)})")
            return {s: frames[s] for s in spec.symbols}
        from spark_research.data import load_bars

        out = {}
        for s in spec.symbols:
            try:
                df = load_bars(s, spec.start, spec.end, store=self.bar_store)
            except KeyError as exc:
                raise SpecError(f"symbols: {exc.args[0]}") from None
            out[s] = df.set_index("timestamp").drop(columns="symbol")
        return out

    # ------------------------------------------------------------------ submit
    def submit(self, spec: SweepSpec, bars: pd.DataFrame | Mapping[str, pd.DataFrame] | None = None, *,
               block: bool = False, timeout: float | None = None, sweep_id: str | None = None,
               checkpoints: Mapping[str, np.ndarray] | None = None, combos: pd.DataFrame | None = None,
               persist: bool | None = None) -> SweepHandle:
        """Queue a sweep; returns a :class:`SweepHandle` at once.

        ``bars``: the bars to sweep (default: ``spec.symbols`` from the store between
        ``spec.start`` and ``spec.end``). ``block``/``timeout``: wait for queue room instead
        of raising ``QueueFull``. ``checkpoints``: ``{symbol: bar positions}`` at which to
        record every combination's portfolio value (for the overfitting report).
        ``combos`` overrides the spec's space (used by walk-forward and TPE batches).
        ``persist=False`` keeps this sweep out of the store (default: the optimizer's setting).
        """
        spec.validate()
        spec = refresh_identity(spec)
        sweep_id = sweep_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.store.path(sweep_id)  # validates the id
        on_workers = bars is None and self.load_on_workers and spec.space != "tpe"
        if on_workers:
            from spark_research.data import default_store

            store = self.bar_store if self.bar_store is not None else default_store()
            known = set(store.symbols())
            missing = [s for s in spec.symbols if s not in known]
            if missing:
                raise SpecError(f"symbols {missing} are not in the store {store.root} (have {sorted(known)[:20]})")
            # the client loads one symbol (step sizing, the lookahead check); each worker loads the rest
            first = self._bars(_first_symbol(spec), None)
            n_bars = len(first[spec.symbols[0]])
            check = pre_sweep_check(spec, first, combos) if not _is_batch(combos, spec) else None
            del first
        else:
            frames = self._bars(spec, bars)
            n_bars = max(len(f) for f in frames.values())
            check = pre_sweep_check(spec, frames, combos) if not _is_batch(combos, spec) else None
        payload = self._ship(spec)
        if spec.space == "tpe" and combos is None:
            handle = SweepHandle(self, sweep_id, spec, total_steps=spec.n_samples * len(spec.symbols))
            handle.persist = self.persist if persist is None else persist
            handle.check = check
            self._register(handle)
            threading.Thread(target=self._run_tpe, args=(handle, frames), daemon=True,
                             name=f"tpe-{sweep_id}").start()
            return handle
        combos = combinations(spec) if combos is None else combos.reset_index(drop=True)
        if on_workers:
            data = {s: BarsRef.of(store, s, spec.start, spec.end) for s in spec.symbols}
            rows = {s: n_bars for s in spec.symbols}  # an estimate: the first symbol's length
        else:
            data = {s: self.client.scatter(f, broadcast=True, hash=True) for s, f in frames.items()}
            rows = {s: len(f) for s, f in frames.items()}
        size = auto_step_size(spec, n_bars, len(combos), self.scheduler.worker_count())
        if on_workers and not spec.step_size:
            # a step that reads its symbol from the store pays that read: one step per symbol while its
            # grid is at most LOADED_STEP_FACTOR times the usual step's work, so each symbol is read once,
            # by one worker (symbols, not steps of one symbol, spread the sweep over the workers)
            work = FUSED_STEP_WORK if uses_fused(spec.strategy, spec.objective) else GENERIC_STEP_WORK
            size = max(size, min(len(combos), MAX_STEP_COMBOS, math.ceil(LOADED_STEP_FACTOR * work / max(n_bars, 1))))
        steps = []
        for sym in spec.symbols:
            ck = None if checkpoints is None else np.asarray(checkpoints[sym], dtype=np.int64)
            for part in chunk(combos, size):
                kw = dict(objective=spec.objective, fees=spec.fees, slippage=spec.slippage,
                          init_cash=spec.init_cash, checkpoints=ck)
                steps.append((evaluate_step, (payload, sym, data[sym], part), kw, len(part) * rows[sym]))
        handle = SweepHandle(self, sweep_id, spec, total_steps=len(steps))
        handle.persist = self.persist if persist is None else persist
        handle.check = check
        job = self.scheduler.submit(steps, user=spec.user, priority=spec.priority, block=block, timeout=timeout,
                                    job_id=sweep_id)
        handle.jobs.append(job)
        self._register(handle)
        job.add_done_callback(lambda j: self._complete(handle, j))
        return handle

    def _ship(self, spec: SweepSpec) -> StrategyPayload:
        """The strategy as steps carry it; a user's strategy is first loaded on every worker.

        A worker that cannot load it (a module missing there, a file class that does not
        unpickle) fails the sweep here, before any step, with the worker and the error named.
        """
        payload = to_payload(spec.strategy)
        if spec.identity is not None and spec.identity.kind == "shipped":
            return payload
        key = (payload.import_ref, payload.source_hash, tuple(sorted(self.client.scheduler_info()["workers"])))
        if key in self._probed:
            return payload
        hashes = self.client.run(probe_payload, payload)  # raises the worker's StrategyLoadError
        bad = {w: h for w, h in hashes.items() if h != payload.source_hash}
        if bad:
            raise StrategyError(f"strategy {payload.ref!r}: worker(s) {sorted(bad)} load different code "
                                f"(code hash {sorted(set(bad.values()))} vs {payload.source_hash} here); "
                                f"install the same version of its package on every worker")
        self._probed.add(key)
        return payload

    def run(self, spec: SweepSpec, bars=None, *, progress: bool = True, timeout: float | None = None,
            **kwargs: Any) -> SweepResult:
        """Submit ``spec``, show a progress bar (tqdm: widget in Jupyter, text in a terminal), return the result."""
        handle = self.submit(spec, bars, block=True, **kwargs)
        self.follow(handle, progress=progress, timeout=timeout)
        return handle.result(timeout=0)

    def follow(self, handle: SweepHandle, *, progress: bool = True, timeout: float | None = None) -> None:
        """Wait for ``handle`` with a progress bar; cancels the sweep on KeyboardInterrupt."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        if progress:
            from tqdm.auto import tqdm

            link = getattr(self.client, "dashboard_link", None)
            if link and not getattr(self, "_dashboard_shown", False):
                print(f"Dask dashboard: {link}")  # where the workers' progress, memory and task stream are
                self._dashboard_shown = True
            bar = tqdm(total=handle.total_steps, desc=f"sweep {handle.id}", unit="step")
        try:
            while not handle.wait(0.1):
                if bar is not None:
                    bar.n = handle.steps_done
                    bar.refresh()
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"sweep {handle.id} not finished within {timeout}s")
        except KeyboardInterrupt:
            handle.cancel()
            raise
        finally:
            if bar is not None:
                bar.n = handle.steps_done
                bar.close()

    def status(self, sweep_id: str) -> dict[str, Any]:
        """Live status of a sweep of this optimizer, else the stored status."""
        h = self._handles.get(sweep_id)
        return h.info() if h is not None else self.store.load_status(sweep_id)

    def cancel(self, sweep_id: str) -> bool:
        """Cancel a running sweep of this optimizer (``KeyError`` if unknown)."""
        try:
            return self._handles[sweep_id].cancel()
        except KeyError:
            raise KeyError(f"no running sweep {sweep_id!r} in this optimizer") from None

    # ------------------------------------------------------------------ internals
    def _register(self, handle: SweepHandle) -> None:
        self._handles[handle.id] = handle
        if handle.persist:
            self.store.save_spec(handle.id, handle.spec)
        self._persist(handle)

    def _persist(self, handle: SweepHandle) -> None:
        if handle.persist:
            self.store.save_status(handle.id, handle.info())

    def _complete(self, handle: SweepHandle, job: Job) -> None:
        if job.status is JobStatus.COMPLETED:
            try:
                parts = job.results
                table = pd.concat([p["table"] for p in parts], ignore_index=True)
                values = None
                if parts and parts[0]["values"] is not None:
                    values = _stack_values(parts, handle.spec.symbols)
                result = SweepResult(handle.id, handle.spec, table, values, check=handle.check)
                if handle.persist:
                    self.store.save_results(handle.id, handle.spec, table)
            except Exception as exc:  # storing failed: the sweep failed
                handle._finish(JobStatus.FAILED, f"{type(exc).__name__}: {exc}")
                return
            handle._finish(JobStatus.COMPLETED, result=result)
        else:
            handle._finish(job.status, job.error)

    def _run_tpe(self, handle: SweepHandle, frames: dict[str, pd.DataFrame]) -> None:
        import optuna

        spec = handle.spec
        strat = get_strategy(spec.strategy)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = _distributions(spec)
        study = optuna.create_study(direction="maximize" if spec.maximize else "minimize",
                                    sampler=optuna.samplers.TPESampler(seed=spec.seed))
        tables, asked, batch_no = [], 0, 0
        try:
            while asked < spec.n_samples and not handle.status.final:
                trials, rows = [], []
                for _ in range(min(spec.batch, spec.n_samples - asked)):
                    trial = study.ask(dists)
                    params = {k: (int(v) if strat.params[k].is_int else float(v)) for k, v in trial.params.items()}
                    if strat.constraint(params):
                        trials.append(trial)
                        rows.append(params)
                    else:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    asked += 1
                if not rows:
                    continue
                sub = dataclasses.replace(spec, space="list", combos=rows, check=None)
                h = self.submit(sub, frames, block=True, sweep_id=f"{handle.id}-b{batch_no}", persist=False,
                                combos=pd.DataFrame(rows, columns=list(strat.params)))
                with handle._lock:
                    handle.jobs.extend(h.jobs)
                    handle.total_steps = max(handle.total_steps, handle.steps_done + h.total_steps)
                self._handles.pop(h.id, None)
                res = h.result()
                table = res.table
                tables.append(table)
                obj = table.groupby(list(strat.params), sort=False)[spec.objective].mean()
                for trial, params in zip(trials, rows):
                    v = float(obj.loc[tuple(params[k] for k in strat.params)])
                    if np.isfinite(v):
                        study.tell(trial, v)
                    else:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                batch_no += 1
            if handle.status.final:
                return
            handle.total_steps = handle.steps_done
            table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
            if handle.persist:
                self.store.save_results(handle.id, spec, table)
            handle._finish(JobStatus.COMPLETED, result=SweepResult(handle.id, spec, table, check=handle.check))
        except JobCancelled:
            handle._finish(JobStatus.CANCELLED)
        except Exception as exc:
            handle._finish(JobStatus.FAILED, f"{type(exc).__name__}: {exc}")

    def _watch(self) -> None:
        """Persist progress and honour cancel markers (``spark sweep cancel`` from another process)."""
        while not self._closed.wait(0.2):
            for h in list(self._handles.values()):
                if h.status.final:
                    continue
                if h.persist and self.store.cancel_requested(h.id):
                    h.cancel()
                    continue
                self._persist(h)


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def refresh_identity(spec: SweepSpec) -> SweepSpec:
    """``spec`` recording the strategy's current code; warns when it differs from the recorded code."""
    current = strategy_identity(spec.strategy)
    if spec.strategy_id is not None and spec.strategy_id.get("source_hash") != current["source_hash"]:
        warn_if_changed(spec, "this sweep spec")
    spec.strategy_id = current
    return spec


def warn_if_changed(spec: SweepSpec, what: str) -> bool:
    """Warn (:class:`StrategyChangedWarning`) when the strategy's code differs from what ``spec`` recorded."""
    recorded = spec.identity
    if recorded is None or not recorded.source_hash:
        return False
    try:
        current = identify(spec.strategy if not isinstance(spec.strategy, str) else recorded.ref)
    except StrategyError:
        return False  # the code is not here (a notebook class): nothing to compare
    if current.source_hash == recorded.source_hash:
        return False
    warnings.warn(f"{what} was produced by strategy {recorded.ref!r} with code {recorded.source_hash}; "
                  f"its code is now {current.source_hash}: re-running gives other results",
                  StrategyChangedWarning, stacklevel=3)
    return True


def _first_symbol(spec: SweepSpec) -> SweepSpec:
    """``spec`` reduced to its first symbol (what the client loads when the workers load the rest)."""
    return dataclasses.replace(spec, symbols=[spec.symbols[0]])


def _is_batch(combos: pd.DataFrame | None, spec: SweepSpec) -> bool:
    # walk-forward windows and TPE batches pass explicit combos; their parent sweep ran the check
    return combos is not None and spec.check is None


def pre_sweep_check(spec: SweepSpec, frames: Mapping[str, pd.DataFrame],
                    combos: pd.DataFrame | None = None) -> dict[str, Any]:
    """Run ``spec.check`` once before any step; raises :class:`LookaheadRefused` for a leaky strategy.

    The lookahead check runs on the last :data:`CHECK_BARS` bars of the first symbol, with the
    strategy's defaults and the sweep's first combination (parameters change which bars
    signal, and so where leaks show), within :data:`CHECK_BUDGET_S` each. A check that passed
    for the same code, parameters and bars is not run again in this process.
    """
    if spec.check is None:
        return {"kind": None, "skipped": True}
    from spark_research.backtest.lookahead import check_lookahead

    strat = get_strategy(spec.strategy)
    frame = frames[spec.symbols[0]].iloc[-CHECK_BARS:]
    trial = [strat.defaults()]
    if spec.space != "tpe":
        rows = (combinations(spec) if combos is None else combos).to_dict("records")
        trial += rows[:1]
    bars_key = (len(frame), str(frame.index[0]), str(frame.index[-1]),
                int(pd.util.hash_pandas_object(frame["close"], index=False).sum()))
    seen, cuts, by_kind = [], 0, {}
    for params in trial:
        params = {k: _py(v) for k, v in params.items()}
        try:
            strat.resolve(params)
        except ParameterError:
            continue  # an invalid combination fails its step, with its own message
        if params in seen:
            continue
        seen.append(params)
        key = (identify(strat).source_hash, tuple(sorted(params.items())), bars_key)
        report = _CHECKED.get(key)
        if report is None:
            report = check_lookahead(strat, frame, params, budget_s=CHECK_BUDGET_S, max_signal_cuts=32)
            with _CHECK_LOCK:
                _CHECKED[key] = report
                while len(_CHECKED) > 256:
                    _CHECKED.pop(next(iter(_CHECKED)))
        cuts += report.cuts
        for kind, n in report.cuts_by_kind.items():
            by_kind[kind] = by_kind.get(kind, 0) + n
        if not report.passed:
            raise LookaheadRefused(f"strategy {spec.strategy_name!r} refused: the lookahead check found it using "
                                   f"future bars (pass check=None to skip the check):\n{report}")
    return {"kind": "lookahead", "passed": True, "cuts": cuts, "cuts_by_kind": by_kind, "bars": len(frame),
            "params_checked": len(seen)}


def _stack_values(parts: list[dict], symbols: list[str]) -> dict[str, np.ndarray]:
    """Checkpoint values per symbol: (checkpoints x combos), step order = combination order."""
    out: dict[str, list[np.ndarray]] = {s: [] for s in symbols}
    for p in parts:
        out[str(p["table"]["symbol"].iloc[0])].append(p["values"])
    return {s: np.concatenate(v, axis=1) for s, v in out.items() if v}


def _distributions(spec: SweepSpec) -> dict[str, Any]:
    import optuna.distributions as od

    strat = get_strategy(spec.strategy)
    out = {}
    for name, vals in param_values(spec).items():
        p = strat.params[name]
        if name in spec.values:
            out[name] = od.CategoricalDistribution([v.item() for v in vals])
        elif p.is_int:
            out[name] = od.IntDistribution(int(p.low), int(p.low + p.step * (len(vals) - 1)), step=int(p.step))
        else:
            out[name] = od.FloatDistribution(float(p.low), float(p.low + p.step * (len(vals) - 1)), step=float(p.step))
    return out
