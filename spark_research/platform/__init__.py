"""The served platform: every capability started in one process behind one Panel server.

``spark serve`` (thin CLI in :mod:`spark_research.serve`) builds a :class:`~spark_research.platform.components.Platform`
from a :class:`~spark_research.platform.components.ServeConfig`, starts it, and serves the apps
of ``apps/`` with the export endpoints, ``/metrics`` and ``/health`` on the same Tornado server.

Modules::

    components.py   the Platform: replay exchange + ingest, paper engine + gates, exports, optimizer
    runtime.py      where apps find the running platform (no Panel import)
    web.py          the Panel/Tornado server: apps, index page, /health, /metrics, /export/*
    prometheus.py   scrape config generator and the optional local Prometheus
"""
