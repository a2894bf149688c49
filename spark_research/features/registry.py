"""The feature registry: ``@feature(lookback=...)``, code hashes, and the checks at registration.

A feature is a small function of bars (open/high/low/close/volume indexed by UTC timestamp)
and parameters, returning a Series (or a DataFrame of a few columns) aligned to the bars.
Registering one runs two checks on seeded synthetic bars before it is accepted:

* **no lookahead**: the feature is recomputed on the bars cut after bar *t* for many *t*
  (:func:`spark_research.backtest.lookahead.check_series_lookahead`, the strategies' check);
  any value up to *t* that changes when later bars are removed refuses the feature with a
  :class:`LeakyFeatureError` naming it and the first bar that changed;
* **declared lookback suffices**: the value at bar *t* computed from bars ``t - lookback .. t``
  alone equals the value computed from all bars (else :class:`LookbackError`). This is what
  lets the store update incrementally and the live path compute one bar from a short window.

Features of the trade flow declare ``trades=True``: they read the per-bar aggregates of
:data:`FLOW_FIELDS` (buy/sell volume, trade count, ...) as extra bar columns, which
:mod:`spark_research.features.trades` computes point in time from the trades; the check bars
then carry the flow of seeded synthetic trades, so the checks exercise those columns too.

The **code hash** covers the function's source, the sources of the module-level helpers it
calls (recursively, numba kernels included), the parameters and the lookback: any change
to the definition gives a new hash, and the store refuses to serve values made by the old one.

Features from a notebook cell, a file or a package register the same way as the shipped
ones (:mod:`spark_research.features.library`); packages can also expose a module in the
``spark_research.features`` entry-point group, imported with the shipped features.

Example::

    >>> import numpy as np
    >>> from spark_research.features import feature, get_feature
    >>> @feature("range_pct_10", lookback=9, window=10)
    ... def range_pct(bars, window):
    ...     return (bars["high"].rolling(window).max() / bars["low"].rolling(window).min()) - 1
    >>> f = get_feature("range_pct_10")
    >>> f.lookback, f.params, len(f.code_hash)
    (9, {'window': 10}, 16)
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import sys
import sysconfig
import textwrap
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

#: Columns every feature may read.
BAR_FIELDS = ("open", "high", "low", "close", "volume")
#: Trade-flow columns (the bar's trades aggregated, see :mod:`spark_research.features.trades`) that
#: features declared with ``trades=True`` may read as well.
FLOW_FIELDS = ("buy_volume", "sell_volume", "trade_count", "notional", "vwap", "mean_trade_size")
#: Bumped when the checks change, so results recorded under an older check are not trusted.
CHECK_VERSION = 1


class FeatureError(ValueError):
    """A feature definition or a feature computation is invalid (the message names the feature)."""


class UnknownFeature(FeatureError, LookupError):
    """No feature is registered under that name."""


class LeakyFeatureError(FeatureError):
    """The feature looks ahead: truncating the bars after bar *t* changes its value at or before *t*."""

    def __init__(self, name: str, report: Any):
        self.feature, self.report = name, report
        v = report.violations[0]
        super().__init__(
            f"feature {name!r} looks ahead, refused: its value at bar {v.bar} ({v.timestamp}) is "
            f"{v.full_value!r} with all bars but {v.truncated_value!r} with the bars up to bar {v.cut_bar} "
            f"({v.kind} cut; series {v.series}; {len(report.violations)} (bar, cut) pairs changed in "
            f"{report.cuts} cuts)")

    @property
    def first_bar(self) -> int:
        """Position of the first bar whose value changed when later bars were removed."""
        return self.report.violations[0].bar


class LookbackError(FeatureError):
    """The declared lookback is too short: a value needs more history than the feature declares."""


@dataclass(frozen=True)
class Feature:
    """A registered feature: ``func(bars, **params)`` (plus ``universe`` for cross-asset ones).

    ``trades`` says the feature reads the trade-flow columns (:data:`FLOW_FIELDS`) of the bars.

    ``lookback`` is the number of bars *before* bar *t* its value at *t* needs; ``columns``
    are the output columns (the name for a Series, ``name_<col>`` for a DataFrame);
    ``arrays`` says the function only reads ``bars[field]`` as arrays and ``bars.index``, so the
    live path may hand it a light window of numpy arrays instead of a DataFrame.
    """

    name: str
    func: Callable[..., Any] = field(repr=False)
    lookback: int
    params: dict[str, Any]
    code_hash: str
    columns: tuple[str, ...]
    description: str = ""
    universe: bool = False
    arrays: bool = False
    origin: str = ""
    trades: bool = False

    def compute(self, bars: pd.DataFrame, universe: pd.DataFrame | None = None,
                trades: pd.DataFrame | None = None) -> pd.DataFrame:
        """This feature's columns for ``bars`` (any form :func:`as_bars` accepts).

        ``trades`` (the symbol's trades) feeds a trade-flow feature whose bars lack the flow columns.

        Example::

            >>> from spark_research.data import generate_bars
            >>> get_feature("ret_1").compute(generate_bars("BTCUSDT", n=5, seed=1)).columns.tolist()
            ['ret_1']
        """
        frame = _with_flow(as_bars(bars), trades, [self])
        return _to_frame(self, self._call(_inputs_of(self, frame), _align_universe(self, frame, universe)),
                         frame.index)

    def _call(self, bars: Any, universe: Any = None) -> Any:
        if self.universe:
            return self.func(bars, universe, **self.params)
        return self.func(bars, **self.params)

    def describe(self) -> dict[str, Any]:
        """Name, lookback, parameters, code hash, columns: what the store records per feature."""
        return {"name": self.name, "lookback": self.lookback, "params": _jsonable(self.params),
                "code_hash": self.code_hash, "columns": list(self.columns), "universe": self.universe,
                "trades": self.trades}


_REGISTRY: dict[str, Feature] = {}
_LOCK = threading.RLock()
_LOADED = False


# -- bars ------------------------------------------------------------------------------------


def as_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Bars indexed by a UTC ``DatetimeIndex`` named ``timestamp`` (from a ``timestamp`` column
    or an index; a naive index is taken as UTC), with float64 OHLCV columns (and the trade-flow
    columns of :data:`FLOW_FIELDS` that are present; other columns are dropped).

    Example::

        >>> from spark_research.data import generate_bars
        >>> as_bars(generate_bars("BTCUSDT", n=3, seed=1)).index.tz
        datetime.timezone.utc
    """
    if not isinstance(bars, pd.DataFrame):
        raise FeatureError(f"bars: expected a DataFrame, got {type(bars).__name__}")
    frame = bars.set_index("timestamp") if "timestamp" in bars.columns else bars
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise FeatureError(f"bars: need a 'timestamp' column or a DatetimeIndex, got a {type(frame.index).__name__}")
    missing = [c for c in BAR_FIELDS if c not in frame.columns]
    if missing:
        raise FeatureError(f"bars: missing column(s) {missing}; features read {list(BAR_FIELDS)}")
    index = frame.index
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    index = index.as_unit("ns")  # pandas 3 makes microsecond indexes; times are read as ns (timestamps_ns)
    if not index.is_monotonic_increasing or index.has_duplicates:
        bad = int(np.flatnonzero(np.diff(index.asi8) <= 0)[0]) + 1
        raise FeatureError(f"bars: timestamp must increase strictly; row {bad} ({index[bad]}) does not")
    out = frame[[*BAR_FIELDS, *(c for c in FLOW_FIELDS if c in frame.columns)]].astype("float64", copy=False)
    return out.set_axis(index.rename("timestamp"))


class BarWindow:
    """Bars as plain numpy arrays: ``w["close"]`` (float64), ``w.ts_ns`` (int64), ``w.index``.

    What features declared with ``arrays=True`` receive from the store and the live path (a
    DataFrame works the same for them: they only read ``bars[field]`` and the times).

    Example::

        >>> w = BarWindow({"close": np.array([1.0, 2.0])}, np.array([0, 60_000_000_000]))
        >>> float(w["close"][-1]), len(w), str(w.index[-1])
        (2.0, 2, '1970-01-01 00:01:00+00:00')
    """

    __slots__ = ("_cols", "ts_ns", "_index")

    def __init__(self, cols: dict[str, np.ndarray], ts_ns: np.ndarray, index: pd.DatetimeIndex | None = None):
        self._cols, self.ts_ns, self._index = cols, ts_ns, index

    @classmethod
    def of(cls, frame: pd.DataFrame) -> BarWindow:
        """The arrays of bars normalised by :func:`as_bars` (no copy), trade-flow columns included."""
        return cls({c: frame[c].to_numpy() for c in frame.columns}, frame.index.asi8, frame.index)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._cols[name]
        except KeyError:
            raise KeyError(f"bar field {name!r}; a bar window has {list(self._cols)}") from None

    def __len__(self) -> int:
        return len(self.ts_ns)

    @property
    def index(self) -> pd.DatetimeIndex:
        """Bar times as a UTC DatetimeIndex (built on first use: prefer ``ts_ns`` on hot paths)."""
        if self._index is None:
            self._index = pd.DatetimeIndex(self.ts_ns.astype("datetime64[ns]")).tz_localize("UTC")
        return self._index


def timestamps_ns(bars: Any) -> np.ndarray:
    """Bar times as int64 nanoseconds since the epoch (UTC), for a DataFrame or a live window."""
    ts = getattr(bars, "ts_ns", None)
    if ts is not None:
        return ts
    return np.asarray(bars.index.asi8, dtype=np.int64)


def _align_universe(feat: Feature, frame: pd.DataFrame, universe: pd.DataFrame | None) -> pd.DataFrame | None:
    """The universe's closes on the bars' timestamps (exact matches; NaN where a symbol has no bar)."""
    if not feat.universe:
        return None
    if universe is None:
        raise FeatureError(f"feature {feat.name!r} is cross-asset: pass universe=<DataFrame of closes, "
                           f"one column per symbol, indexed by timestamp>")
    index = universe.index if isinstance(universe.index, pd.DatetimeIndex) else pd.DatetimeIndex(universe.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    if index.equals(frame.index):  # already on the bars' times (the store's case): no reindex copy
        return universe.set_axis(frame.index).astype("float64", copy=False)
    return universe.set_axis(index).reindex(frame.index).astype("float64")


def missing_flow(frame: Any) -> list[str]:
    """The trade-flow columns (:data:`FLOW_FIELDS`) that ``frame`` lacks."""
    cols = frame.columns if isinstance(frame, pd.DataFrame) else getattr(frame, "_cols", {})
    return [c for c in FLOW_FIELDS if c not in cols]


def needs_trades_error(names: Sequence[str], missing: Sequence[str], where: str = "the bars") -> FeatureError:
    """The error for trade-flow features computed without trades (names them and the missing input)."""
    which = f"feature {names[0]!r} needs" if len(names) == 1 else f"features {list(names)} need"
    return FeatureError(f"{which} trades: no trade-flow column(s) {list(missing)} in {where}; pass "
                        f"trades=<the symbol's trades: ts, price, qty, side> or bars from "
                        f"spark_research.features.trades.with_trade_flow(bars, trades)")


def _with_flow(frame: pd.DataFrame, trades: pd.DataFrame | None, feats: Sequence[Feature]) -> pd.DataFrame:
    """``frame`` with the trade flow of ``trades`` when given; else checked to carry what ``feats`` need."""
    if trades is not None:
        from spark_research.features.trades import with_trade_flow

        return with_trade_flow(frame[list(BAR_FIELDS)], trades)
    need = [f.name for f in feats if f.trades]
    if need and (missing := missing_flow(frame)):
        raise needs_trades_error(need, missing)
    return frame


def _inputs_of(feat: Feature, frame: pd.DataFrame) -> pd.DataFrame:
    """What a feature function receives: the bars, with the trade-flow columns only if it declared trades."""
    if feat.trades or len(frame.columns) == len(BAR_FIELDS):
        return frame
    return frame[list(BAR_FIELDS)]


def _to_frame(feat: Feature | None, out: Any, index: pd.DatetimeIndex, name: str | None = None) -> pd.DataFrame:
    """A feature function's output as a float64 DataFrame of its columns, checked against the bars."""
    return pd.DataFrame(_columns(feat, out, index, name), index=index)


def _columns(feat: Feature | None, out: Any, index: pd.DatetimeIndex, name: str | None = None) -> dict[str, np.ndarray]:
    """A feature function's output as ``{column: float64 array}``, checked against the bars."""
    name = name or feat.name  # type: ignore[union-attr]
    if isinstance(out, pd.DataFrame):
        cols = {f"{name}_{c}": out[c] for c in out.columns}
    elif isinstance(out, Mapping):
        cols = {f"{name}_{k}": v for k, v in out.items()}
    else:
        cols = {name: out}
    data = {}
    for col, values in cols.items():
        if isinstance(values, pd.Series):
            if len(values) != len(index) or not (values.index is index or values.index.equals(index)):
                raise FeatureError(f"feature {name!r}: column {col!r} is not aligned to the bars "
                                   f"({len(values)} rows for {len(index)} bars); return values on the bars' index")
            values = values.to_numpy()
        arr = np.asarray(values)
        if arr.shape != (len(index),):
            raise FeatureError(f"feature {name!r}: column {col!r} has shape {arr.shape}, expected ({len(index)},)")
        try:
            data[col] = arr.astype("float64", copy=False)
        except (TypeError, ValueError) as exc:
            raise FeatureError(f"feature {name!r}: column {col!r} is not numeric ({arr.dtype}): {exc}") from None
    return data


# -- code hash --------------------------------------------------------------------------------


def _source(obj: Any) -> str:
    func = getattr(obj, "py_func", obj)  # numba dispatchers hash their Python source
    try:
        return textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):  # defined by exec() or in a REPL: hash the bytecode instead
        code = getattr(func, "__code__", None)
        return repr((code.co_code, code.co_consts, code.co_names)) if code else repr(func)


#: Where installed libraries and the standard library live: code there is not hashed.
_LIBRARY_PATHS = tuple(sorted({os.path.abspath(p) + os.sep for k, p in sysconfig.get_paths().items()
                               if k in ("stdlib", "platstdlib", "purelib", "platlib")}))


def _own_code(obj: Any) -> bool:
    """True for functions and modules of the project or the user (not installed libraries)."""
    mod = obj if inspect.ismodule(obj) else sys.modules.get(getattr(obj, "__module__", None) or "")
    path = getattr(mod, "__file__", None)
    if path is None:  # a notebook cell or a REPL: the user's own
        return getattr(mod, "__name__", "") == "__main__"
    return not os.path.abspath(path).startswith(_LIBRARY_PATHS)


def _helpers(func: Callable[..., Any], seen: set[int]) -> list[str]:
    """Sources of the functions ``func`` calls by name (``helper(...)``, ``module.helper(...)``),
    recursively, when they are the project's or the user's code (the shared numba kernels, a
    helper in the same notebook or file); installed libraries are not followed."""
    func = getattr(func, "py_func", func)
    code, glb = getattr(func, "__code__", None), getattr(func, "__globals__", {})
    if code is None:
        return []
    names = set(code.co_names)
    for const in code.co_consts:  # nested functions and comprehensions
        if inspect.iscode(const):
            names |= set(const.co_names)
    found: list[tuple[str, Any]] = []
    for n in sorted(names):
        obj = glb.get(n)
        if inspect.ismodule(obj) and _own_code(obj):  # module.helper(...): the attributes it names
            found += [(f"{n}.{a}", getattr(obj, a)) for a in sorted(names) if hasattr(obj, a)]
        else:
            found.append((n, obj))
    out = []
    for n, obj in found:
        target = getattr(obj, "py_func", obj)
        if inspect.isfunction(target) and id(target) not in seen and _own_code(target):
            seen.add(id(target))
            out += [f"# {n}\n{_source(target)}", *_helpers(target, seen)]
    return out


def code_hash(func: Callable[..., Any], params: Mapping[str, Any], lookback: int, universe: bool = False,
              trades: bool = False) -> str:
    """16 hex digits of SHA-256 over the source of ``func`` and its helpers, params and lookback
    (and, for a trade-flow feature, the source of the aggregation of trades onto the bars).

    Example::

        >>> def f(bars, window): return bars["close"].rolling(window).mean()
        >>> code_hash(f, {"window": 5}, 4) == code_hash(f, {"window": 6}, 5)
        False
    """
    parts = [_source(func), *_helpers(func, {id(getattr(func, "py_func", func))}),
             json.dumps(_jsonable(params), sort_keys=True), f"lookback={lookback}", f"universe={universe}"]
    if trades:  # a changed aggregation changes every trade-flow feature's values: and so its hash
        from spark_research.features import trades as flow

        agg = flow.aggregate_trades
        parts += ["trades=True", _source(agg), *_helpers(agg, {id(agg)})]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


# -- the checks ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def check_bars(n: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded synthetic bars the registration checks use (5-minute bars across several days, so
    day boundaries and every time of day appear) and a three-symbol universe of closes."""
    from spark_research.data.synthetic import generate_bars

    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    frames = {s: generate_bars(s, n=n, seed=seed, freq="5min").set_index("timestamp") for s in symbols}
    universe = pd.DataFrame({s: f["close"] for s, f in frames.items()})
    return as_bars(frames["BTCUSDT"]), universe


@functools.lru_cache(maxsize=8)
def check_flow_bars(n: int, seed: int = 7) -> pd.DataFrame:
    """:func:`check_bars`' bars with the trade flow of seeded synthetic trades (about 60 a bar, and
    a quiet stretch of 3 bars without trades in the middle): what trade-flow features are checked on."""
    from spark_research.features.trades import synthetic_trades, with_trade_flow

    bars = check_bars(n, seed)[0]
    trades = synthetic_trades(bars, per_bar=60, seed=seed, quiet=(n // 2, n // 2 + 3))
    return with_trade_flow(bars, trades)


def _check(feat: Feature, n_cuts: int = 10, budget_s: float = 10.0) -> tuple[str, ...]:
    """Run the lookahead and lookback checks; return the feature's output columns."""
    from spark_research.backtest.lookahead import check_series_lookahead

    n = max(600, 3 * feat.lookback + 300)
    bars, universe = (x.copy() for x in check_bars(n))  # the cached frames stay clean whatever the feature does
    if feat.trades:  # the flow columns ride along with the bars, so every cut truncates them too
        bars = check_flow_bars(n).copy()

    def frame(b: pd.DataFrame) -> pd.DataFrame:
        return _to_frame(feat, feat._call(b, _align_universe(feat, b, universe)), b.index)

    def compute(b: pd.DataFrame) -> Any:  # series named 'feature' or 'feature:column' in the report
        out = frame(b)
        if list(out.columns) == [feat.name]:
            return out[feat.name]
        return {c[len(feat.name) + 1:]: out[c] for c in out.columns}

    try:
        full = frame(bars)
    except FeatureError:
        raise
    except Exception as exc:
        hint = ""
        if not feat.trades and isinstance(exc, KeyError) and any(c in str(exc) for c in FLOW_FIELDS):
            hint = " (it reads trade-flow columns: declare trades=True)"
        raise FeatureError(f"feature {feat.name!r} failed on {len(bars)} check bars{hint}: "
                           f"{type(exc).__name__}: {exc}") from exc
    ints = {k: v for k, v in feat.params.items() if isinstance(v, int) and not isinstance(v, bool)}
    report = check_series_lookahead(compute, bars, feat.name, {**ints, "lookback": feat.lookback + 1},
                                    n_cuts=n_cuts, seed=0, budget_s=budget_s)
    if not report.passed:
        raise LeakyFeatureError(feat.name, report)
    _check_lookback(feat, bars, full, frame)
    return tuple(full.columns)


def _check_lookback(feat: Feature, bars: pd.DataFrame, full: pd.DataFrame,
                    compute: Callable[[pd.DataFrame], pd.DataFrame], points: int = 8, rtol: float = 1e-9) -> None:
    n, lb = len(bars), feat.lookback
    ts = np.unique(np.linspace(lb, n - 1, num=points).astype(int))
    expected = full.to_numpy()
    for t in ts:
        got = compute(bars.iloc[t - lb: t + 1]).to_numpy()[-1]
        want = expected[t]
        with np.errstate(invalid="ignore"):
            same = (got == want) | (np.isnan(got) & np.isnan(want)) | (np.abs(got - want) <= rtol * np.abs(want))
        if not same.all():
            j = int(np.flatnonzero(~same)[0])
            raise LookbackError(
                f"feature {feat.name!r} declares lookback={lb} but needs more history: column "
                f"{full.columns[j]!r} at bar {t} ({bars.index[t]}) is {want!r} with all bars and {got!r} "
                f"with only the {lb} bars before it; declare a longer lookback")


# -- registration and lookup ---------------------------------------------------------------------


def feature(name: str | None = None, *, lookback: int, description: str = "", universe: bool = False,
            arrays: bool = False, trades: bool = False, replace: bool = False,
            **params: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func(bars, **params)`` as the feature ``name`` (default: the function's name).

    ``lookback`` is how many bars before bar *t* the value at *t* needs (0 for a function of
    bar *t* alone). ``universe=True`` marks a cross-asset feature, called as
    ``func(bars, universe, **params)`` with the universe's closes on the bars' timestamps.
    ``trades=True`` marks a trade-flow feature: its bars also carry the columns of
    :data:`FLOW_FIELDS` (``bars["buy_volume"]``, ...), the bar's trades aggregated point in time
    (:mod:`spark_research.features.trades`); computing it without trades raises a
    :class:`FeatureError` naming it.
    The decorator returns ``func`` unchanged, so it stacks to register several variants.
    Registration refuses a leaky feature (:class:`LeakyFeatureError`) or a too-short lookback
    (:class:`LookbackError`). Re-registering a name with a new definition from the same place
    (a re-run notebook cell) replaces it; taking over another feature's name needs ``replace=True``.

    Example::

        >>> @feature("hl_spread", lookback=0)
        ... def hl_spread(bars):
        ...     return bars["high"] / bars["low"] - 1
        >>> "hl_spread" in list_features()
        True
        >>> @feature("buy_share", lookback=0, trades=True)
        ... def buy_share(bars):
        ...     return bars["buy_volume"] / (bars["buy_volume"] + bars["sell_volume"])
        >>> get_feature("buy_share").trades
        True
    """
    if not isinstance(lookback, (int, np.integer)) or isinstance(lookback, bool) or lookback < 0:
        raise FeatureError(f"feature {name!r}: lookback must be an integer >= 0, got {lookback!r}")

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        fname = name or getattr(func, "__name__", None)
        if not fname or not str(fname).isidentifier():
            raise FeatureError(f"feature name must be an identifier, got {fname!r}")
        _check_signature(fname, func, params, universe)
        h = code_hash(func, params, int(lookback), universe, bool(trades))
        origin = f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', '?')}"
        with _LOCK:
            old = _REGISTRY.get(fname)
            if old is not None and old.code_hash == h:
                return func
            if old is not None and not replace and old.origin != origin:
                raise FeatureError(f"feature {fname!r} is already registered from {old.origin}; "
                                   f"pass replace=True to replace it with {origin}")
        feat = Feature(fname, func, int(lookback), dict(params), h, (fname,), description or _doc(func),
                       universe, arrays, origin, bool(trades))
        columns = _check(feat)  # no way around it: every feature is checked before it is registered
        feat = Feature(fname, func, int(lookback), dict(params), h, columns, feat.description, universe, arrays, origin,
                       bool(trades))
        with _LOCK:
            _REGISTRY[fname] = feat
        return func

    return register


def _doc(func: Callable[..., Any]) -> str:
    return (inspect.getdoc(func) or "").split("\n\n")[0].replace("\n", " ")


def _check_signature(name: str, func: Callable[..., Any], params: Mapping[str, Any], universe: bool) -> None:
    try:
        sig = inspect.signature(getattr(func, "py_func", func))
    except (TypeError, ValueError) as exc:
        raise FeatureError(f"feature {name!r}: cannot read the signature of {func!r}: {exc}") from None
    args = [object()] * (2 if universe else 1)
    try:
        sig.bind(*args, **params)
    except TypeError as exc:
        want = "(bars, universe, **params)" if universe else "(bars, **params)"
        raise FeatureError(f"feature {name!r}: {func.__name__}{sig} cannot be called as {want} with "
                           f"params {dict(params)}: {exc}") from None


def _load_builtin() -> None:
    """Import the shipped features and any ``spark_research.features`` entry points, once."""
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        import importlib
        from importlib.metadata import entry_points

        importlib.import_module("spark_research.features.library")
        for ep in entry_points(group="spark_research.features"):
            ep.load()
        _LOADED = True


def get_feature(name: str | Feature) -> Feature:
    """The registered feature ``name`` (a :class:`Feature` passes through).

    Example::

        >>> get_feature("rsi_14").params
        {'window': 14}
    """
    if isinstance(name, Feature):
        return name
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownFeature(f"unknown feature {name!r}; registered: {sorted(_REGISTRY)}") from None


def list_features() -> list[str]:
    """Names of every registered feature (shipped and user), sorted.

    Example::

        >>> len(list_features()) >= 15
        True
    """
    _load_builtin()
    return sorted(_REGISTRY)


def resolve_features(features: str | Feature | Iterable[str | Feature] | None = None,
                     trades: bool = False) -> list[Feature]:
    """Features by name, in order, without duplicates. None: every shipped and user feature of the
    bars (and universe), plus the trade-flow features when ``trades`` is true."""
    if features is None:
        features = [n for n in list_features() if trades or not _REGISTRY[n].trades]
    elif isinstance(features, (str, Feature)):
        features = [features]
    out: dict[str, Feature] = {}
    for f in features:
        feat = get_feature(f)
        out.setdefault(feat.name, feat)
    if not out:
        raise FeatureError("features: empty selection; name at least one feature")
    return list(out.values())


def feature_columns(features: str | Feature | Iterable[str | Feature] | None = None) -> list[str]:
    """Output columns of ``features``, in order (a multi-column feature gives several)."""
    return [c for f in resolve_features(features) for c in f.columns]


def compute_features(bars: pd.DataFrame, features: str | Feature | Sequence[str | Feature] | None = None,
                     universe: pd.DataFrame | None = None, trades: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every requested feature's columns for ``bars`` (one symbol), indexed like the bars.

    ``universe`` (closes, one column per symbol, by timestamp) feeds cross-asset features;
    ``trades`` (the symbol's trades: ``ts, price, qty, side``) feeds trade-flow features, as do
    bars that already carry the flow columns (:func:`~spark_research.features.trades.with_trade_flow`).
    ``features=None`` computes every feature these inputs can feed.

    Example::

        >>> from spark_research.data import generate_bars
        >>> out = compute_features(generate_bars("BTCUSDT", n=100, seed=1), ["ret_1", "rsi_14"])
        >>> out.columns.tolist(), len(out)
        (['ret_1', 'rsi_14'], 100)
    """
    frame = as_bars(bars)
    if trades is not None:
        frame = _with_flow(frame, trades, [])
    feats = resolve_features(features, trades=not missing_flow(frame))
    return _compute_frame(feats, frame, universe)


def _compute_frame(feats: Sequence[Feature], frame: pd.DataFrame, universe: pd.DataFrame | None) -> pd.DataFrame:
    """Every feature's columns for normalised bars, in one DataFrame (the universe aligned once)."""
    return pd.DataFrame(_compute_columns(feats, frame, universe), index=frame.index)


#: Bars from which the array features of one call are computed on two threads.
PARALLEL_BARS = 200_000


def _compute_columns(feats: Sequence[Feature], frame: pd.DataFrame,
                     universe: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """Every feature's columns for normalised bars as ``{column: array}`` (no DataFrame: at 1M bars
    stacking two dozen columns into one block costs more than most features).

    From :data:`PARALLEL_BARS` bars on, the ``arrays=True`` features run on two threads (their
    numba kernels and numpy release the GIL); each feature's values do not depend on which
    thread computed it, and the columns keep the features' order.
    """
    aligned = None
    _with_flow(frame, None, feats)  # trade-flow features without the flow columns: name them
    if any(f.universe for f in feats):
        aligned = _align_universe(next(f for f in feats if f.universe), frame, universe)
    window = BarWindow.of(frame) if any(f.arrays for f in feats) else None
    uni_arr = aligned.to_numpy() if aligned is not None else None
    bar_only = frame[list(BAR_FIELDS)] if len(frame.columns) > len(BAR_FIELDS) else frame

    def one(f: Feature) -> dict[str, np.ndarray]:
        if f.arrays:  # plain arrays: no pandas overhead per column access
            return _columns(f, f._call(window, uni_arr if f.universe else None), frame.index)
        return _columns(f, f._call(frame if f.trades else bar_only, aligned if f.universe else None), frame.index)

    threaded = [f for f in feats if f.arrays] if len(frame) >= PARALLEL_BARS else []
    done: dict[str, dict[str, np.ndarray]] = {}
    if len(threaded) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {f.name: pool.submit(one, f) for f in threaded}
            done = {name: fut.result() for name, fut in futures.items()}
    cols: dict[str, np.ndarray] = {}
    for f in feats:
        cols.update(done[f.name] if f.name in done else one(f))
    return cols


__all__ = ["BAR_FIELDS", "FLOW_FIELDS", "BarWindow", "Feature", "FeatureError", "LeakyFeatureError", "LookbackError",
           "UnknownFeature", "as_bars", "check_bars", "check_flow_bars", "code_hash", "compute_features", "feature",
           "feature_columns", "get_feature", "list_features", "missing_flow", "needs_trades_error", "resolve_features",
           "timestamps_ns"]
