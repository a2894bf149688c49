"""Observability: alert rules, Grafana dashboards and the checks that keep them honest.

The metrics themselves live in :mod:`spark_research.metrics`; this package only looks at them
from the outside:

- :mod:`.promql` pulls metric names out of PromQL expressions,
- :mod:`.catalog` loads ``rules/*.yml`` and ``dashboards/*.json`` and lists every query,
- :mod:`.promtool` runs Prometheus' ``promtool`` on the rule files,
- :mod:`.dashboards` builds the dashboards with ``grafana-foundation-sdk`` (``spark dashboards build``).
"""
