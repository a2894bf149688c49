"""One way to name a strategy, used by every capability.

A strategy is found by any of:

* its registry name: a shipped strategy (``"sma_cross"``), one registered with
  :func:`register_strategy`, an installed plug-in (entry-point group
  ``spark_research.strategies``), or one defined in a file under ``SPARK_STRATEGY_PATH``
  (directories or ``.py`` files separated by ``os.pathsep``);
* an import path ``"package.module:Class"``;
* a file path ``"path/to/file.py:Class"``;
* the class object itself (also one defined in a notebook cell or ``__main__``), or an instance;
* a reserved scheme (:data:`SCHEMES`): ``"model:ID"`` is a registered model's ``ModelStrategy``.

:func:`resolve_strategy` returns the class; :func:`identify` says how it was named and
hashes its code (:class:`StrategyIdentity`), which is what a stored sweep records;
:func:`to_payload` / :func:`load_payload` carry it to a Dask worker (by import path
when the worker can import it, else by value with cloudpickle); :func:`list_strategies`
is what ``spark strategies list`` prints.

Example::

    >>> from spark_research.backtest.registry import identify, resolve_strategy
    >>> resolve_strategy("spark_research.backtest.strategies:SmaCross").name
    'sma_cross'
    >>> identify("sma_cross").kind
    'shipped'
    >>> resolve_strategy("sma_crss")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spark_research.backtest.registry.UnknownStrategy: unknown strategy 'sma_crss'; did you mean 'sma_cross'? ...
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
import traceback
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from spark_research.backtest.strategy import Param, Strategy

#: Entry-point group of installed strategy plug-ins (``name = "pkg.mod:Class"``).
ENTRY_POINT_GROUP = "spark_research.strategies"
#: Prefix of the module names given to strategy files (they are not importable by name).
FILE_MODULE_PREFIX = "spark_user_strategies"
#: Reserved prefixes ``"scheme:ID"`` resolved by another capability's factory (imported on first use):
#: ``"model:ID"`` is the strategy of a registered model (:mod:`spark_research.models.strategy`).
SCHEMES: dict[str, str] = {"model": "spark_research.models.strategy:strategy_for"}

StrategyLike = Any  # str | type[Strategy] | Strategy


class StrategyError(ValueError):
    """A strategy could not be found, loaded or used; the message names what was asked and why."""


class UnknownStrategy(StrategyError, KeyError):
    """No strategy has this name (the message lists the close matches and what is known)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class StrategyLoadError(StrategyError):
    """A module or file holding a strategy did not import, or a worker could not load one."""


@dataclass(frozen=True)
class StrategyIdentity:
    """Which code a strategy is: how it was named, where it came from and a hash of its code.

    ``ref`` re-resolves it in another process when ``portable`` (a registry name, an import
    path or a file path); a class defined in a notebook or ``__main__`` is not portable
    (``ref`` is ``"__main__:Class"``) and travels to Dask workers by value.
    """

    ref: str  #: how to name it again: "sma_cross", "pkg.mod:Class", "/abs/file.py:Class", "__main__:Class"
    kind: str  #: shipped | registered | plugin | path | import | file | class | model (a SCHEMES prefix)
    name: str  #: the strategy's ``name`` (registry name or class name)
    qualname: str  #: "module:QualName" of the class
    source_hash: str  #: sha256 (16 hex digits) of the class's code: methods' bytecode, constants, Params
    origin: str = ""  #: file path, module or distribution it came from
    portable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StrategyIdentity":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class StrategyInfo:
    """One row of :func:`list_strategies`: identity and declared parameters."""

    identity: StrategyIdentity
    params: dict[str, Param] = field(default_factory=dict)
    doc: str = ""
    error: str | None = None  #: a strategy file that failed to load is listed with its error


# ---------------------------------------------------------------------------- registry
_REGISTERED: dict[str, type[Strategy]] = {}
_LOCK = threading.RLock()
_FILE_MODULES: dict[Path, tuple[tuple[int, int], types.ModuleType]] = {}


def _shipped() -> dict[str, type[Strategy]]:
    from spark_research.backtest.strategies import STRATEGIES

    return STRATEGIES


def register_strategy(cls: type[Strategy] | None = None, *, name: str | None = None,
                      replace: bool = True) -> Callable[[type[Strategy]], type[Strategy]] | type[Strategy]:
    """Register a strategy class under ``name`` (default: its ``name``); usable as a decorator.

    Registering again under the same name replaces the earlier class (a notebook cell run
    twice), unless ``replace=False``. A shipped name cannot be taken.

    Example::

        >>> from spark_research.backtest import Param, Signals, Strategy
        >>> @register_strategy
        ... class AlwaysFlat(Strategy):
        ...     window = Param(5, low=1, high=10)
        ...     def signals(self, bars, window):
        ...         no = bars["close"] < 0
        ...         return Signals(entries=no, exits=no)
        >>> resolve_strategy("AlwaysFlat") is AlwaysFlat
        True
    """

    def deco(klass: type[Strategy]) -> type[Strategy]:
        validate_strategy_class(klass, asked=repr(klass))
        key = name or klass.name
        with _LOCK:
            if key in _shipped() and _shipped()[key] is not klass:
                raise StrategyError(f"register_strategy: {key!r} is a shipped strategy's name; choose another name")
            if not replace and key in _REGISTERED and _REGISTERED[key] is not klass:
                raise StrategyError(f"register_strategy: {key!r} is already registered "
                                    f"({_qualname(_REGISTERED[key])}); pass replace=True to replace it")
            _REGISTERED[key] = klass
        return klass

    return deco(cls) if cls is not None else deco


def unregister_strategy(name: str) -> None:
    """Remove a registered strategy (``KeyError`` if it is not registered)."""
    with _LOCK:
        del _REGISTERED[name]


def _plugins() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def strategy_path() -> list[Path]:
    """Directories and files named by ``SPARK_STRATEGY_PATH`` (``os.pathsep``-separated)."""
    raw = os.environ.get("SPARK_STRATEGY_PATH", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def _path_files() -> list[Path]:
    out: list[Path] = []
    for entry in strategy_path():
        if entry.is_dir():
            out.extend(sorted(p for p in entry.glob("*.py") if not p.name.startswith("_")))
        elif entry.suffix == ".py":
            out.append(entry)
    return out


# ---------------------------------------------------------------------------- validation
def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def validate_strategy_class(obj: Any, *, asked: str) -> type[Strategy]:
    """``obj`` as a usable strategy class, else :class:`StrategyError` saying what is wrong.

    A strategy subclasses :class:`Strategy`, implements ``signals``, and declares a
    :class:`Param` for every parameter its ``signals`` takes (and takes every one it declares).
    """
    if isinstance(obj, Strategy):
        obj = type(obj)
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        what = type(obj).__name__ if not isinstance(obj, type) else f"class {_qualname(obj)}"
        raise StrategyError(f"strategy {asked}: {what} is not a spark_research Strategy subclass "
                            f"(subclass spark_research.backtest.Strategy and declare Params)")
    if obj is Strategy:
        raise StrategyError(f"strategy {asked}: the Strategy base class itself cannot run; subclass it")
    if obj.signals is Strategy.signals:
        raise StrategyError(f"strategy {asked}: {obj.__qualname__} does not implement signals(self, bars, **params)")
    sig = inspect.signature(obj.signals)
    args = [p for p in sig.parameters.values() if p.name != "self"]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in args)
    named = [p.name for p in args[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
             and p.default is inspect.Parameter.empty]
    undeclared = [n for n in named if n not in obj.params]
    if undeclared:
        example = undeclared[0]
        raise StrategyError(f"strategy {asked}: {obj.__qualname__}.signals takes parameter(s) {undeclared} without "
                            f"a Param declaration; declare each as a class attribute, e.g. "
                            f"{example} = Param(20, low=2, high=200)")
    accepted = {p.name for p in args[1:]}
    unaccepted = [n for n in obj.params if n not in accepted]
    if unaccepted and not takes_any:
        raise StrategyError(f"strategy {asked}: {obj.__qualname__} declares Param(s) {unaccepted} that "
                            f"signals(self, bars, ...) does not take; add them to its signature or **params")
    return obj


# ---------------------------------------------------------------------------- loading
def _last_frame(exc: BaseException, prefer: Path | None = None) -> str:
    """The traceback line that says where an import failed (in the user's file when it is there)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}, line {exc.lineno}: {(exc.text or '').strip()}"
    pick = None
    for fr in frames:
        if "importlib" in fr.filename or fr.filename.startswith("<frozen") or fr.filename.endswith("registry.py"):
            continue
        if prefer is None or Path(fr.filename).resolve() == prefer:
            pick = fr
    return f"{pick.filename}, line {pick.lineno}: {pick.line}" if pick else "no line of its own"


def load_strategy_file(path: str | os.PathLike[str]) -> types.ModuleType:
    """Import a strategy file as a module (again when the file changed since the last load).

    The module gets a private name under ``spark_user_strategies`` and is registered with
    cloudpickle for pickling by value, so its classes reach Dask workers that do not have
    the file.
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise StrategyLoadError(f"strategy file {str(path)!r} does not exist (resolved to {p})")
    st = p.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    with _LOCK:
        cached = _FILE_MODULES.get(p)
        if cached and cached[0] == stamp:
            return cached[1]
        digest = hashlib.sha256(str(p).encode()).hexdigest()[:10]
        mod_name = f"{FILE_MODULE_PREFIX}.{_identifier(p.stem)}_{digest}"
        spec = importlib.util.spec_from_file_location(mod_name, p)
        if spec is None or spec.loader is None:
            raise StrategyLoadError(f"strategy file {str(path)!r}: not a Python source file")
        module = importlib.util.module_from_spec(spec)
        if FILE_MODULE_PREFIX not in sys.modules:
            pkg = types.ModuleType(FILE_MODULE_PREFIX)
            pkg.__path__ = []
            sys.modules[FILE_MODULE_PREFIX] = pkg
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise StrategyLoadError(f"strategy file {str(path)!r} does not import: {type(exc).__name__}: {exc} "
                                    f"({_last_frame(exc, p)})") from exc
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
        _FILE_MODULES[p] = (stamp, module)
        return module


def _identifier(stem: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return out if out and not out[0].isdigit() else f"_{out}"


def _strategies_in(module: types.ModuleType) -> dict[str, type[Strategy]]:
    return {k: v for k, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, Strategy) and v is not Strategy
            and v.__module__ == module.__name__}


def _attr(module: types.ModuleType, attr: str, asked: str) -> type[Strategy]:
    obj: Any = module
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        found = sorted(_strategies_in(module))
        close = difflib.get_close_matches(attr, found, n=3)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownStrategy(f"strategy {asked!r}: {module.__name__ if not getattr(module, '__file__', None) else module.__file__} "
                              f"has no attribute {attr!r}{hint} (strategies defined there: {found})") from None
    return validate_strategy_class(obj, asked=repr(asked))


def _import_module(mod: str, asked: str) -> types.ModuleType:
    try:
        return importlib.import_module(mod)
    except ModuleNotFoundError as exc:
        if exc.name and (mod == exc.name or mod.startswith(exc.name + ".")):
            raise StrategyLoadError(f"strategy {asked!r}: no module named {exc.name!r} "
                                    f"(is its package installed, or on sys.path?)") from exc
        raise StrategyLoadError(f"strategy {asked!r}: module {mod!r} does not import: "
                                f"{type(exc).__name__}: {exc} ({_last_frame(exc)})") from exc
    except Exception as exc:
        raise StrategyLoadError(f"strategy {asked!r}: module {mod!r} does not import: "
                                f"{type(exc).__name__}: {exc} ({_last_frame(exc)})") from exc


def _is_file_ref(left: str) -> bool:
    return left.endswith(".py") or "/" in left or os.sep in left


def _by_name(name: str) -> type[Strategy]:
    shipped = _shipped()
    if name in shipped:
        return shipped[name]
    with _LOCK:
        if name in _REGISTERED:
            return _REGISTERED[name]
    plugins = _plugins()
    if name in plugins:
        ep = plugins[name]
        try:
            obj = ep.load()
        except ModuleNotFoundError as exc:
            raise StrategyLoadError(f"strategy {name!r}: plug-in {ep.value!r} does not load: "
                                    f"no module named {exc.name!r}") from exc
        except Exception as exc:
            raise StrategyLoadError(f"strategy {name!r}: plug-in {ep.value!r} does not load: "
                                    f"{type(exc).__name__}: {exc} ({_last_frame(exc)})") from exc
        return validate_strategy_class(obj, asked=repr(name))
    for f in _path_files():
        try:
            found = _strategies_in(load_strategy_file(f))
        except StrategyLoadError:
            continue  # listed with its error by list_strategies; a name lookup goes on
        for cls in found.values():
            if cls.name == name or cls.__name__ == name:
                return validate_strategy_class(cls, asked=repr(name))
    known = sorted(set(shipped) | set(_REGISTERED) | set(plugins))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UnknownStrategy(f"unknown strategy {name!r}; {hint}known: {known} "
                          f"(or name one as 'package.module:Class' or 'path/to/file.py:Class')")


def resolve_strategy(ref: StrategyLike) -> type[Strategy]:
    """The strategy class named by ``ref`` (see the module docstring for every way to name one).

    Raises :class:`UnknownStrategy` (also a ``KeyError``) for an unknown name with the close
    matches, :class:`StrategyLoadError` when its module or file does not import (with the
    line that failed), :class:`StrategyError` for a class that is not a usable strategy.
    """
    if isinstance(ref, Strategy):
        ref = type(ref)
    if isinstance(ref, type):
        return validate_strategy_class(ref, asked=repr(ref))
    if not isinstance(ref, str) or not ref.strip():
        raise StrategyError(f"strategy must be a name, 'module:Class', 'file.py:Class' or a Strategy class, got {ref!r}")
    ref = ref.strip()
    scheme, _, rest = ref.partition(":")
    if rest and scheme in SCHEMES:
        return _by_scheme(scheme, rest, ref)
    if ":" in ref:
        left, _, attr = ref.rpartition(":")
        if not left or not attr:
            raise StrategyError(f"strategy {ref!r}: expected 'package.module:Class' or 'path/to/file.py:Class'")
        if left == "__main__":
            main = sys.modules.get("__main__")
            if main is None or not hasattr(main, attr):
                raise UnknownStrategy(f"strategy {ref!r} was defined in a notebook or script that is not running "
                                      f"here; pass the class itself, or save it to a file and name 'file.py:{attr}'")
            return _attr(main, attr, ref)
        if _is_file_ref(left):
            return _attr(load_strategy_file(left), attr, ref)
        return _attr(_import_module(left, ref), attr, ref)
    return _by_name(ref)


def _by_scheme(scheme: str, rest: str, asked: str) -> type[Strategy]:
    """The strategy ``SCHEMES[scheme]`` makes for ``rest`` (``"model:ID"`` -> the model's strategy class)."""
    mod, _, func = SCHEMES[scheme].partition(":")
    factory = getattr(_import_module(mod, asked), func)
    try:
        cls = factory(rest)
    except LookupError as exc:
        raise UnknownStrategy(f"strategy {asked!r}: {exc}") from exc
    return validate_strategy_class(cls, asked=repr(asked))


# ---------------------------------------------------------------------------- identity
def _code_digest(h: "hashlib._Hash", code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code_digest(h, c)
        else:
            h.update(repr(c).encode())


def source_hash(cls: type[Strategy]) -> str:
    """A hash of the strategy's code (its and its user-defined bases' methods, constants, Params).

    Bytecode rather than text, so it is the same for a class from a file, a notebook cell or
    unpickled on a worker, and unchanged by comments or blank lines.
    """
    h = hashlib.sha256()
    for klass in cls.__mro__:
        if klass in (Strategy, object) or klass.__module__.startswith("builtins"):
            continue
        h.update(klass.__qualname__.encode())
        for key in sorted(vars(klass)):
            if key in ("__dict__", "__weakref__", "__module__", "params", "__firstlineno__", "__static_attributes__"):
                continue
            value = vars(klass)[key]
            func = getattr(value, "__func__", value)
            if isinstance(func, types.FunctionType):
                h.update(key.encode())
                _code_digest(h, func.__code__)
                h.update(repr(func.__defaults__).encode())
            elif isinstance(value, (Param, str, int, float, bool, tuple, type(None))):
                h.update(f"{key}={value!r}".encode())
    return h.hexdigest()[:16]


def _importable(cls: type) -> bool:
    mod = cls.__module__
    if mod in ("__main__", "builtins") or mod.startswith(FILE_MODULE_PREFIX) or "<locals>" in cls.__qualname__:
        return False
    module = sys.modules.get(mod)
    if module is None or getattr(module, "__spec__", None) is None:
        return False
    obj: Any = module
    for part in cls.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is cls


def _file_of(cls: type) -> Path | None:
    for path, (_, module) in list(_FILE_MODULES.items()):
        if module.__name__ == cls.__module__:
            return path
    return None


def identify(ref: StrategyLike) -> StrategyIdentity:
    """How ``ref`` names its strategy, where the class came from, and a hash of its code.

    Example::

        >>> i = identify("spark_research.backtest.strategies:RsiReversion")
        >>> (i.kind, i.name, i.portable, len(i.source_hash))
        ('shipped', 'rsi_reversion', True, 16)
    """
    cls = resolve_strategy(ref)
    digest, qual = source_hash(cls), _qualname(cls)
    shipped = _shipped()
    if shipped.get(cls.name) is cls:
        return StrategyIdentity(cls.name, "shipped", cls.name, qual, digest, cls.__module__)
    scheme_ref = vars(cls).get("__strategy_ref__")
    if isinstance(scheme_ref, str) and scheme_ref.partition(":")[0] in SCHEMES:  # e.g. "model:ID"
        return StrategyIdentity(scheme_ref, scheme_ref.partition(":")[0], cls.name, qual, digest,
                                SCHEMES[scheme_ref.partition(":")[0]])
    if isinstance(ref, str) and ":" not in ref:
        with _LOCK:
            registered = _REGISTERED.get(ref) is cls
        if not registered and ref in _plugins():
            return StrategyIdentity(ref, "plugin", cls.name, qual, digest, _plugins()[ref].value)
        path = _file_of(cls)
        if not registered and path is not None:
            return StrategyIdentity(f"{path}:{cls.__qualname__}", "path", cls.name, qual, digest, str(path))
    path = _file_of(cls)
    if path is not None:
        return StrategyIdentity(f"{path}:{cls.__qualname__}", "file", cls.name, qual, digest, str(path))
    with _LOCK:
        reg_name = next((k for k, v in _REGISTERED.items() if v is cls), None)
    if _importable(cls):
        kind = "registered" if reg_name else "import"
        return StrategyIdentity(qual, kind, cls.name, qual, digest, cls.__module__)
    kind = "registered" if reg_name else "class"
    return StrategyIdentity(qual, kind, cls.name, qual, digest, cls.__module__, portable=False)


def display_name(ref: StrategyLike) -> str:
    """Short label of a strategy for tables and metrics: its ``name``."""
    return resolve_strategy(ref).name


# ---------------------------------------------------------------------------- workers
@dataclass(frozen=True)
class StrategyPayload:
    """What a Dask step carries to name its strategy: an import reference, or the class by value.

    Importable classes (shipped, ``pkg.mod:Class``, plug-ins) travel as their reference and
    are imported on the worker; notebook, ``__main__`` and file classes travel as cloudpickle
    bytes. :func:`load_payload` turns it back into the class on the worker, or raises a
    :class:`StrategyLoadError` naming the strategy, the worker and the error.
    """

    ref: str  #: what the user named (for messages)
    import_ref: str | None = None
    pickled: bytes | None = field(default=None, repr=False)
    source_hash: str = ""


_LOADED: dict[tuple[str | None, str], type[Strategy]] = {}


def to_payload(ref: StrategyLike) -> StrategyPayload:
    """The :class:`StrategyPayload` that ships ``ref`` to workers."""
    cls = resolve_strategy(ref)
    ident = identify(ref)
    if ident.kind == "shipped" or ident.kind in SCHEMES:  # a scheme ref ("model:ID") resolves on the worker
        return StrategyPayload(ident.ref, import_ref=ident.ref, source_hash=ident.source_hash)
    if _importable(cls):
        return StrategyPayload(ident.ref, import_ref=_qualname(cls), source_hash=ident.source_hash)
    import cloudpickle

    if cls.__module__.startswith(FILE_MODULE_PREFIX) and cls.__module__ in sys.modules:
        cloudpickle.register_pickle_by_value(sys.modules[cls.__module__])
    return StrategyPayload(ident.ref, pickled=cloudpickle.dumps(cls), source_hash=ident.source_hash)


def _worker_name(worker: Any = None) -> str:
    try:
        if worker is None:
            from distributed import get_worker

            worker = get_worker()
        return f"{worker.address} (pid {os.getpid()})"
    except Exception:
        return f"pid {os.getpid()}"


def load_payload(payload: StrategyPayload | StrategyLike, worker: Any = None) -> type[Strategy]:
    """The strategy class a payload carries (cached per process); plain refs are resolved."""
    if not isinstance(payload, StrategyPayload):
        return resolve_strategy(payload)
    key = (payload.import_ref, payload.source_hash)
    cls = _LOADED.get(key)
    if cls is not None:
        return cls
    try:
        if payload.import_ref is not None:
            cls = resolve_strategy(payload.import_ref)
        else:
            import pickle

            cls = validate_strategy_class(pickle.loads(payload.pickled), asked=repr(payload.ref))
    except Exception as exc:
        raise StrategyLoadError(f"worker {_worker_name(worker)} cannot load strategy {payload.ref!r}: "
                                f"{type(exc).__name__}: {exc}") from exc
    _LOADED[key] = cls
    return cls


def probe_payload(payload: StrategyPayload, dask_worker: Any = None) -> str:
    """Load ``payload`` on this worker and return its code hash (``Client.run`` on every worker before a sweep)."""
    return source_hash(load_payload(payload, dask_worker))


# ---------------------------------------------------------------------------- listing
def list_strategies() -> list[StrategyInfo]:
    """Every strategy found: shipped, registered, plug-ins and files under ``SPARK_STRATEGY_PATH``.

    A plug-in or file that fails to load is listed with its error instead of hiding the others.
    """
    out: list[StrategyInfo] = []
    seen: set[type] = set()

    def add(ident: StrategyIdentity, cls: type[Strategy]) -> None:
        if cls in seen:
            return
        seen.add(cls)
        out.append(StrategyInfo(ident, dict(cls.params), inspect.getdoc(cls) or ""))

    for name, cls in _shipped().items():
        add(identify(name), cls)
    with _LOCK:
        registered = dict(_REGISTERED)
    for name, cls in registered.items():
        add(identify(name), cls)
    for name, ep in _plugins().items():
        try:
            add(identify(name), resolve_strategy(name))
        except StrategyError as exc:
            out.append(StrategyInfo(StrategyIdentity(name, "plugin", name, ep.value, "", ep.value), error=str(exc)))
    for f in _path_files():
        try:
            module = load_strategy_file(f)
        except StrategyLoadError as exc:
            out.append(StrategyInfo(StrategyIdentity(str(f), "path", f.stem, "", "", str(f)), error=str(exc)))
            continue
        for cls in _strategies_in(module).values():
            ref = f"{f.resolve()}:{cls.__qualname__}"
            try:
                validate_strategy_class(cls, asked=repr(ref))
            except StrategyError as exc:
                out.append(StrategyInfo(StrategyIdentity(ref, "path", cls.name, _qualname(cls), "", str(f)),
                                        error=str(exc)))
                continue
            add(StrategyIdentity(ref, "path", cls.name, _qualname(cls), source_hash(cls), str(f.resolve())), cls)
    return out


def strategy_names() -> list[str]:
    """Names the apps offer: shipped, registered, plug-ins, then ``SPARK_STRATEGY_PATH`` files (by ``ref``)."""
    return [i.identity.ref if i.identity.kind == "path" else i.identity.name
            for i in list_strategies() if i.error is None]
