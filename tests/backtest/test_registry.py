"""One resolver for every way of naming a strategy, with errors that say what was asked and why."""
from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import pytest

from spark_research.backtest import Param, Signals, Strategy, run_backtest
from spark_research.backtest.registry import (
    StrategyError,
    StrategyLoadError,
    UnknownStrategy,
    identify,
    list_strategies,
    load_payload,
    register_strategy,
    resolve_strategy,
    source_hash,
    to_payload,
    unregister_strategy,
)
from spark_research.backtest.strategies import STRATEGIES, SmaCross
from spark_research.data import generate_bars

from ..conftest import ROOT

SOURCE = textwrap.dedent('''
    from spark_research.backtest import Param, Signals, Strategy


    class Momentum(Strategy):
        """Long while the close is above its rolling mean."""

        window = Param(30, low=5, high=300, step=5)

        def signals(self, bars, window):
            above = bars["close"] > bars["close"].rolling(window).mean()
            return Signals(entries=above & ~above.shift(1, fill_value=False),
                           exits=~above & above.shift(1, fill_value=False))
''')


@pytest.fixture
def strategy_file(tmp_path):
    path = tmp_path / "momentum.py"
    path.write_text(SOURCE)
    return path


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed distribution declaring a strategy in the ``spark_research.strategies`` entry-point group."""
    site = tmp_path / "site"
    (site / "plugpkg").mkdir(parents=True)
    (site / "plugpkg" / "__init__.py").write_text("")
    (site / "plugpkg" / "momo.py").write_text(SOURCE)
    dist = site / "spark_plug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: spark-plug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[spark_research.strategies]\nplug_momentum = plugpkg.momo:Momentum\n"
                                           "plug_broken = plugpkg.nothere:Nope\n")
    monkeypatch.syspath_prepend(str(site))
    yield "plug_momentum"
    for mod in ("plugpkg.momo", "plugpkg"):
        sys.modules.pop(mod, None)


def notebook_class():
    ns: dict = {"__name__": "__main__"}
    exec(compile(SOURCE, "<cell>", "exec"), ns)
    return ns["Momentum"]


def test_every_way_of_naming_gives_the_class(strategy_file, plugin):
    assert resolve_strategy("sma_cross") is SmaCross
    assert resolve_strategy("spark_research.backtest.strategies:SmaCross") is SmaCross
    assert resolve_strategy(SmaCross) is SmaCross and resolve_strategy(SmaCross()) is SmaCross
    from_file = resolve_strategy(f"{strategy_file}:Momentum")
    assert from_file.__name__ == "Momentum" and from_file.params["window"].default == 30
    assert resolve_strategy(f"{strategy_file}:Momentum") is from_file  # loaded once while unchanged
    assert resolve_strategy(plugin).__module__ == "plugpkg.momo"
    cls = notebook_class()
    assert resolve_strategy(cls) is cls


def test_decorator_registers_under_a_name_and_replaces_on_rerun():
    @register_strategy(name="my_momentum")
    class First(Strategy):
        window = Param(10, low=2, high=50)

        def signals(self, bars, window):
            return Signals(bars["close"] > 0, bars["close"] < 0)

    try:
        assert resolve_strategy("my_momentum") is First
        second = register_strategy(type("Second", (First,), {}), name="my_momentum")  # a cell run again
        assert resolve_strategy("my_momentum") is second
        assert identify("my_momentum").kind == "registered"
        with pytest.raises(StrategyError, match="'sma_cross' is a shipped strategy's name"):
            register_strategy(First, name="sma_cross")
        with pytest.raises(StrategyError, match="already registered"):
            register_strategy(First, name="my_momentum", replace=False)
    finally:
        unregister_strategy("my_momentum")


def test_strategy_path_files_are_found_by_name_and_listed(strategy_file, monkeypatch):
    monkeypatch.setenv("SPARK_STRATEGY_PATH", str(strategy_file.parent))
    assert resolve_strategy("Momentum").__name__ == "Momentum"
    infos = {i.identity.ref: i for i in list_strategies()}
    ref = f"{strategy_file.resolve()}:Momentum"
    assert infos[ref].identity.kind == "path" and infos[ref].params["window"].high == 300
    assert {"sma_cross", "rsi_reversion", "donchian_breakout"} <= set(infos)
    assert identify("Momentum").kind == "path"


def test_plugin_is_listed_and_a_broken_one_is_listed_with_its_error(plugin):
    infos = {i.identity.ref: i for i in list_strategies()}
    assert infos["plug_momentum"].identity.kind == "plugin" and infos["plug_momentum"].error is None
    assert "no module named 'plugpkg.nothere'" in infos["plug_broken"].error
    with pytest.raises(StrategyLoadError, match="plug-in 'plugpkg.nothere:Nope' does not load"):
        resolve_strategy("plug_broken")


@pytest.mark.parametrize("ref,error,words", [
    ("sma_crosss", UnknownStrategy, ["unknown strategy 'sma_crosss'", "did you mean 'sma_cross'", "known:"]),
    ("spark_research.backtest.strategies:SmaCros", UnknownStrategy, ["has no attribute 'SmaCros'",
                                                                    "did you mean 'SmaCross'"]),
    ("no_such_package.mod:Class", StrategyLoadError, ["no module named 'no_such_package'"]),
    ("json:dumps", StrategyError, ["function is not a spark_research Strategy subclass"]),
    ("spark_research.backtest.strategy:Strategy", StrategyError, ["the Strategy base class itself"]),
    ("/nonexistent/dir/file.py:X", StrategyLoadError, ["does not exist"]),
    ("", StrategyError, ["must be a name"]),
])
def test_bad_names_say_what_was_asked_and_why(ref, error, words):
    with pytest.raises(error) as err:
        resolve_strategy(ref)
    for word in words:
        assert word in str(err.value)


def test_unknown_name_is_still_a_key_error():
    with pytest.raises(KeyError, match="unknown strategy 'nope'"):
        resolve_strategy("nope")


def test_a_file_that_does_not_import_names_its_own_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import math\n\nx = math.sqrt(4)\ny = undefined_name + 1\n")
    with pytest.raises(StrategyLoadError) as err:
        resolve_strategy(f"{path}:X")
    msg = str(err.value)
    assert "NameError" in msg and f"{path}, line 4: y = undefined_name + 1" in msg
    path.write_text("class Broken(:\n    pass\n")
    with pytest.raises(StrategyLoadError, match="SyntaxError"):
        resolve_strategy(f"{path}:Broken")


def test_parameters_without_param_declarations_are_refused():
    class Undeclared(Strategy):
        window = Param(10, low=2, high=50)

        def signals(self, bars, window, threshold):
            return Signals(bars["close"] > threshold, bars["close"] < threshold)

    with pytest.raises(StrategyError, match=r"takes parameter\(s\) \['threshold'\] without a Param declaration"):
        resolve_strategy(Undeclared)

    class Unused(Strategy):
        window = Param(10, low=2, high=50)
        extra = Param(1, low=0, high=5)

        def signals(self, bars, window):
            return Signals(bars["close"] > 0, bars["close"] < 0)

    with pytest.raises(StrategyError, match=r"declares Param\(s\) \['extra'\] that signals"):
        resolve_strategy(Unused)

    class NoSignals(Strategy):
        window = Param(10, low=2, high=50)

    with pytest.raises(StrategyError, match="does not implement signals"):
        resolve_strategy(NoSignals)


def test_code_hash_ignores_comments_and_follows_code(strategy_file):
    a = source_hash(resolve_strategy(f"{strategy_file}:Momentum"))
    strategy_file.write_text(SOURCE.replace("class Momentum", "# a comment\n\nclass Momentum"))
    assert source_hash(resolve_strategy(f"{strategy_file}:Momentum")) == a
    strategy_file.write_text(SOURCE.replace("rolling(window).mean()", "rolling(window).median()"))
    changed = resolve_strategy(f"{strategy_file}:Momentum")
    assert source_hash(changed) != a
    assert source_hash(notebook_class()) == a  # same code from a notebook cell: same hash


def test_identity_says_how_it_was_named(strategy_file):
    assert identify("sma_cross").kind == "shipped" and identify(SmaCross).ref == "sma_cross"
    f = identify(f"{strategy_file}:Momentum")
    assert (f.kind, f.ref, f.portable) == ("file", f"{strategy_file}:Momentum", True)
    nb = identify(notebook_class())
    assert (nb.kind, nb.ref, nb.portable) == ("class", "__main__:Momentum", False)
    imp = identify("spark_research.backtest.strategies:RsiReversion")
    assert imp.kind == "shipped" and imp.name == "rsi_reversion"


def test_payloads_carry_file_and_notebook_classes_by_value_and_the_rest_by_reference(strategy_file):
    bars = generate_bars("BTCUSDT", n=3_000, seed=2)
    assert to_payload("sma_cross").import_ref == "sma_cross" and to_payload("sma_cross").pickled is None
    for ref in (f"{strategy_file}:Momentum", notebook_class()):
        payload = to_payload(ref)
        assert payload.import_ref is None and payload.pickled
        loaded = pickle.loads(payload.pickled)
        assert loaded.params == resolve_strategy(ref).params
        assert source_hash(loaded) == payload.source_hash
        a = run_backtest(load_payload(payload), bars, {"window": 40}).stats
        b = run_backtest(ref, bars, {"window": 40}).stats
        assert a == b


def test_a_notebook_payload_loads_in_a_process_that_never_saw_the_class():
    payload = to_payload(notebook_class())
    code = ("import pickle, sys\n"
            "from spark_research.backtest.registry import load_payload\n"
            "p = pickle.loads(sys.stdin.buffer.read())\n"
            "cls = load_payload(p)\n"
            "print(cls.__name__, sorted(cls.params), cls.params['window'].high)")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(payload), capture_output=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.decode().split() == ["Momentum", "['window']", "300"]


def test_a_payload_that_cannot_load_names_the_strategy_and_the_error():
    from spark_research.backtest.registry import StrategyPayload

    with pytest.raises(StrategyLoadError, match=r"cannot load strategy 'gone:Thing'.*no module named 'gone'"):
        load_payload(StrategyPayload("gone:Thing", import_ref="gone:Thing", source_hash="x"))


def test_shipped_strategies_are_all_listed_first():
    names = [i.identity.name for i in list_strategies()]
    assert names[:3] == list(STRATEGIES)
