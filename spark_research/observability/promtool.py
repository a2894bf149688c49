"""Run Prometheus' ``promtool`` (Debian package ``prometheus``) on the alert rule files.

Example::

    >>> from spark_research.observability.catalog import RULES_DIR
    >>> check_rules(RULES_DIR / "export.yml").returncode
    0
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


class PromtoolMissing(RuntimeError):
    """``promtool`` is not installed."""


def promtool_path() -> str:
    """Absolute path of ``promtool`` (``$SPARK_PROMTOOL``, else ``PATH``, else ``/usr/bin``)."""
    candidate = os.environ.get("SPARK_PROMTOOL") or shutil.which("promtool") or "/usr/bin/promtool"
    if not os.access(candidate, os.X_OK):
        raise PromtoolMissing(
            f"promtool not found (looked for {candidate!r}); install Debian's `prometheus` package "
            "(`make sysdeps` does it) or point SPARK_PROMTOOL at a promtool binary"
        )
    return candidate


def _run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_path(), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def check_rules(*paths: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules PATHS``: syntax and PromQL of rule files (returncode 0 = valid)."""
    return _run("check", "rules", *paths)


def test_rules(*paths: Path) -> subprocess.CompletedProcess[str]:
    """``promtool test rules PATHS``: run promtool unit-test files (returncode 0 = all pass)."""
    return _run("test", "rules", *paths)


test_rules.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def check_queries(queries: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    """Parse PromQL ``(source, expr)`` pairs with Prometheus' own parser (returncode 0 = all valid).

    promtool has no offline "check expression" command, so each query becomes a recording rule
    in a temporary rule file; Grafana interval variables are expanded first.

    Example::

        >>> check_queries([("demo", "rate(ws_msgs_total[$__rate_interval])")]).returncode
        0
    """
    import tempfile

    import yaml

    from spark_research.observability.catalog import expand_grafana_variables

    rules = [{"record": f"query:{i}", "expr": expand_grafana_variables(expr), "labels": {"source": source}}
             for i, (source, expr) in enumerate(queries)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}, sort_keys=False))
        return check_rules(path)
