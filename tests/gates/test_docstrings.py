"""Every docstring example of the gates package (and its views) runs as written."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["audit", "auth", "demo", "drift", "gate", "model", "paper", "session", "venue"]


@pytest.mark.parametrize("name", [f"spark_research.gates.{m}" for m in MODULES] + ["spark_research.views.gates"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no examples"
