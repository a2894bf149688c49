"""Every docstring example of the risk package (and its view) runs as written."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["backtest", "config", "control", "demo", "engine", "portfolio", "store", "venue"]


@pytest.mark.parametrize("name", [f"spark_research.risk.{m}" for m in MODULES] + ["spark_research.views.risk"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no examples"

