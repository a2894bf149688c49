"""The one web server of ``spark serve``: every app of ``apps/``, the index page, ``/health``,
``/metrics`` and the export endpoints, on one Tornado server started by ``pn.serve``.

Apps, the index and ``/login`` share the gate control's bcrypt login (Bokeh auth module
:mod:`spark_research.gates.webauth`); ``/export/*`` authenticates with its Bearer tokens;
``/health`` and ``/metrics`` are open (loopback by default) for probes and Prometheus.
Bokeh/Panel JS and CSS are served by this server from ``/static`` — no page loads a CDN.
"""
from __future__ import annotations

import ast
import asyncio
import html
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler
from tornado.websocket import WebSocketClosedError

from spark_research import metrics
from spark_research.config import PROJECT_ROOT

APPS_DIR = PROJECT_ROOT / "apps"
TEMPLATES = Path(__file__).parent / "templates"
#: Order of the apps on the index page; apps not listed follow alphabetically.
APP_ORDER = ("stream_monitor", "gate_control", "risk", "research", "model_monitor", "export_center")


@dataclass(frozen=True)
class AppEntry:
    """One app file of ``apps/`` as the index page lists it."""

    slug: str
    path: Path
    title: str
    description: str

    @property
    def url(self) -> str:
        return f"/{self.slug}"


def discover_apps(apps_dir: Path = APPS_DIR) -> list[AppEntry]:
    """Every ``apps/*.py`` (not ``_*.py``) with its title and one-line description from the module docstring.

    Example::

        >>> [a.slug for a in discover_apps()][:1] != []
        True
    """
    entries = []
    for path in sorted(apps_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        first = doc.strip().splitlines()[0] if doc.strip() else path.stem.replace("_", " ")
        title, _, rest = first.partition(":")
        desc = (rest.strip() or first).rstrip()
        entries.append(AppEntry(path.stem, path, title.strip().rstrip(".") or path.stem, desc[:1].upper() + desc[1:]))
    order = {s: i for i, s in enumerate(APP_ORDER)}
    return sorted(entries, key=lambda a: (order.get(a.slug, len(order)), a.slug))


def render_index(apps: list[AppEntry], out: Path) -> Path:
    """Render the index page (Jinja) to ``out``; Bokeh serves it at ``/`` as its index template."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    text = env.get_template("index.html").render(apps=apps)
    # Bokeh renders the file again as a template: nothing in it may look like template syntax.
    text = text.replace("{{", "&#123;&#123;").replace("{%", "&#123;%")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def quiet_closed_websockets(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Asyncio exception handler: a browser that closed its tab mid-message is a disconnect, not an error.

    Panel schedules Bokeh's ``write_message`` calls as tasks and does not always await them
    (holoviz/panel#3341); when the browser goes away first, asyncio logs "Task exception was
    never retrieved" with two tracebacks for what is an ordinary disconnect. This handler logs
    such a task as one INFO line and hands every other context to asyncio's default handler.

    Example::

        >>> loop = asyncio.new_event_loop()
        >>> loop.set_exception_handler(quiet_closed_websockets)
        >>> loop.close()
    """
    exc = context.get("exception")
    if isinstance(exc, (WebSocketClosedError, StreamClosedError)):
        logging.getLogger("spark_research.platform").info(
            "browser websocket closed while a message was in flight (%s)", type(exc).__name__)
        return
    loop.default_exception_handler(context)


class HealthHandler(RequestHandler):
    """``GET /health``: JSON of each component's state; 200 when all are up, 503 otherwise."""

    def initialize(self, platform: Any, server_info: dict[str, Any]) -> None:
        self.platform, self.server_info = platform, server_info

    async def get(self) -> None:
        from tornado.ioloop import IOLoop

        # the probes make loopback calls to the other processes: off the loop that serves the apps
        body = await IOLoop.current().run_in_executor(None, self.platform.health)
        body["components"] = {"web": {"state": "up", "up": True, "error": None, "started_s": None,
                                      "detail": self.server_info}, **body["components"]}
        self.set_status(200 if body["status"] == "ok" else 503)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(orjson.dumps(body, default=str))


def build_server(platform: Any, apps: list[AppEntry], *, host: str, port: int, cookie_secret: str | None = None):
    """A started-but-not-running Panel server with every app and endpoint (see module docstring)."""
    import panel as pn
    from bokeh.server.auth_provider import AuthModule

    from spark_research.export.handlers import export_url_patterns
    from spark_research.platform import _auth

    index = render_index(apps, platform.config.var_dir / "serve" / "index.html")
    origins = [f"{host}:{port}", f"127.0.0.1:{port}", f"localhost:{port}"]
    server_info = {"url": f"http://{host}:{port}", "apps": [a.url for a in apps], "pid": os.getpid()}
    extra = [
        ("/metrics", metrics.tornado_handler()),
        ("/health", HealthHandler, {"platform": platform, "server_info": server_info}),
        *export_url_patterns(platform.exports),
    ]
    server = pn.serve(
        {a.slug: str(a.path) for a in apps}, port=port, address=host, websocket_origin=origins,
        show=False, start=False, title={a.slug: a.title for a in apps}, extra_patterns=extra,
        index=str(index), cookie_secret=cookie_secret or os.environ.get("SPARK_COOKIE_SECRET") or secrets.token_hex(32),
        auth_provider=AuthModule(_auth.__file__), verbose=False,
    )
    return server


def banner(host: str, port: int, apps: list[AppEntry], prometheus_url: str | None = None) -> str:
    """What ``spark serve`` prints: URLs and the demo credentials."""
    from spark_research.export.auth import DEMO_TOKENS

    base = f"http://{host}:{port}"
    lines = [f"spark serve: {base}/  (Ctrl-C to stop)", ""]
    lines += [f"  {a.title:<22} {base}{a.url}" for a in apps]
    lines += ["", f"  health    {base}/health     (spark status)", f"  metrics   {base}/metrics",
              f"  exports   POST {base}/export/run  with 'Authorization: Bearer <token>'"]
    if prometheus_url:
        lines.append(f"  prometheus {prometheus_url}")
    tokens = ", ".join(f"{user}: {tok}" for tok, user in DEMO_TOKENS.items())
    lines += ["", "  demo logins: operator / operator-demo (may close/open gates), viewer / viewer-demo (read-only)",
              f"  demo export tokens: {tokens}"]
    return "\n".join(html.unescape(x) for x in lines)
