"""The package's public surface resolves, and the cheap docstring examples run."""
from __future__ import annotations

import doctest
import importlib

import pytest

import spark_research.models as models


@pytest.mark.parametrize("name", models.__all__)
def test_every_lazy_export_resolves(name):
    assert getattr(models, name) is not None


@pytest.mark.parametrize("module", ["spark_research.models.drift", "spark_research.models.inputs"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
