"""Shared fixtures: sample data, temporary stores, free ports, Panel servers and a browser.

Browser fixtures drive Debian's chromium through Playwright (``executable_path``); every
request that leaves 127.0.0.1 fails the test, and so does any console error.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SPARK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = ROOT / "artifacts"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers (any HTTP status) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


@pytest.fixture(scope="session")
def sample_store():
    """The default store with the seeded sample (generated once if ``make data`` did not run)."""
    from spark_research.data.store import default_store, generate_sample

    store = default_store()
    generate_sample(store)
    return store


@pytest.fixture
def tmp_store(tmp_path):
    """An empty :class:`BarStore` in a temporary directory."""
    from spark_research.data import BarStore

    return BarStore(tmp_path / "store")


@pytest.fixture
def panel_server(tmp_path):
    """Start ``panel serve`` on a free loopback port: ``url = panel_server(app_path, env={...}, args=[...])``.

    Returns the base URL; the server is terminated at teardown. Its output goes to
    ``tmp_path/panel.log`` (printed if it fails to start).
    """
    procs: list[subprocess.Popen] = []

    def start(*apps: str | Path, env: dict[str, str] | None = None, args: list[str] | None = None,
              timeout: float = 90.0) -> str:
        port = free_port()
        log = open(tmp_path / f"panel-{port}.log", "w")
        cmd = [sys.executable, "-m", "panel", "serve", *map(str, apps), "--port", str(port),
               "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}", *(args or [])]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + "/", timeout=timeout, proc=proc)
        except Exception:
            log.flush()
            print((tmp_path / f"panel-{port}.log").read_text())
            raise
        return url

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser():
    """A headless Debian chromium driven by Playwright (no downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageWatch:
    """Console errors and off-loopback requests seen by one page."""

    def __init__(self, page):
        self.page = page
        self.console_errors: list[str] = []
        self.external_requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        page.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        if url.startswith(("data:", "blob:", "about:", "file:")) or host in ("127.0.0.1", "localhost", "::1"):
            return route.continue_()
        self.external_requests.append(url)
        return route.abort()

    def assert_clean(self) -> None:
        assert not self.external_requests, f"requests left 127.0.0.1: {self.external_requests}"
        assert not self.console_errors, f"console errors: {self.console_errors}"

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser):
    """A fresh page with a :class:`PageWatch` at ``page.watch``; call ``page.watch.assert_clean()``."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.watch = PageWatch(pg)
    yield pg
    context.close()
