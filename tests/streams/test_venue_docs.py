"""The docstring examples of the venue modules run as written (no sockets in these)."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["spark_research.streams.timeunits", "spark_research.streams.venues", "spark_research.streams.venues.base",
           "spark_research.streams.venues.kraken", "spark_research.streams.venues.okx",
           "spark_research.streams.venues.bybit", "spark_research.streams.venues.coinbase",
           "spark_research.streams.venues.journal"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 1 and result.failed == 0
