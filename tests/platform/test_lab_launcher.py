"""JupyterLab's "Panel Launcher" serves the apps of ``apps/`` through the Lab server, as ``make lab`` and Binder start it.

The server is a real ``.venv/bin/jupyter lab notebooks/`` on 127.0.0.1 with a token, started from
the repository root with a PATH that does not hold the venv's ``bin`` (a user who did not
activate the venv), and :mod:`spark_research.platform.lab` enabled in a private config directory
the way ``make lab`` enables it in the venv. Debian chromium opens the launcher tile and an app
through jupyter-server-proxy; every request stays on 127.0.0.1.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from spark_research.platform.lab import enable, scripts_first
from tests.conftest import ROOT, free_port, wait_http

APPS = {"export_center", "gate_control", "model_monitor", "research", "risk", "stream_monitor"}
PROXY_START_S = 90  # the first /panel/ request starts `panel serve` with every app (~20 s on 2 busy cores)


@dataclass
class LabServer:
    url: str
    token: str
    log: Path

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def _path_without_panel() -> str:
    """The caller's PATH minus every directory holding a ``panel`` command (the venv's bin among them)."""
    dirs = os.environ.get("PATH", os.defpath).split(os.pathsep)
    path = os.pathsep.join(d for d in dirs if d and not (Path(d) / "panel").exists())
    assert shutil.which("panel", path=path) is None
    return path


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    config_dir = enable(tmp / "env").parent.parent  # <prefix>/etc/jupyter, as in the venv after `make lab`
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "JUPYTER_CONFIG_PATH")}
    env.update(
        PATH=_path_without_panel(), JUPYTER_CONFIG_PATH=str(config_dir),
        # no user config, settings, workspaces or runtime files from (or into) the home directory
        JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), SPARK_VAR=str(tmp / "var"),
    )
    port, token = free_port(), os.urandom(12).hex()
    cmd = [str(Path(sys.executable).with_name("jupyter")), "lab", "notebooks/", "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--IdentityProvider.token={token}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]  # no PyPI look-up from a test
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = tmp / "lab.log"
    log_file = log.open("w")
    # its own process group: the proxied `panel serve` goes down with it at teardown
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    server = LabServer(f"http://127.0.0.1:{port}", token, log)
    try:
        wait_http(f"{server.url}/api/status", timeout=60, proc=proc)
        yield server
    except Exception:
        print(server.log_tail(80))
        raise
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group outlived the server
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)
        log_file.close()


def _guard_popups(page) -> None:
    """Popups opened by ``page`` get its watch: requests off 127.0.0.1 fail, console errors are recorded."""
    context, watch = page.context, page.watch
    context.route("**/*", watch._route)  # a page's own routes do not follow it into its popups
    context.on("console", lambda m: m.type == "error" and m.page is not page
               and watch.console_errors.append(f"{m.page.url if m.page else '?'}: {m.text}"))
    context.on("weberror", lambda e: e.page is not page
               and watch.console_errors.append(f"{e.page.url if e.page else '?'}: {e.error}"))


def _wait_for_messages_above(page, n: int, timeout_s: float) -> int:
    """Wait until the stream monitor's message counter shows more than ``n``; returns it."""
    counter = page.locator(".sr-msgs").first  # in Panel's shadow roots: a locator, not querySelector
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = counter.inner_text(timeout=10_000).replace(",", "").strip()
        if text.isdigit() and int(text) > n:
            return int(text)
        time.sleep(0.25)
    raise AssertionError(f"the stream monitor's message count stayed at {text!r}, not above {n}, for {timeout_s} s")


def test_scripts_first_puts_the_environment_first_and_once():
    assert scripts_first("/usr/bin:/venv/bin/:/bin", "/venv/bin") == "/venv/bin:/usr/bin:/bin"
    assert scripts_first("", "/venv/bin") == "/venv/bin"


def test_make_lab_enables_the_extension_before_starting_lab_on_notebooks():
    out = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True).stdout
    lines = out.splitlines()
    enables = [i for i, line in enumerate(lines) if line.endswith("-m spark_research.platform.lab")]
    starts = [i for i, line in enumerate(lines) if line.endswith("/jupyter lab notebooks/")]
    assert enables and starts and enables[0] < starts[0], out


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_panel_launcher_answers_through_the_lab_proxy_without_the_venv_on_path(lab_server):
    req = urllib.request.Request(f"{lab_server.url}/panel/", headers={"Authorization": f"token {lab_server.token}"})
    try:
        with urllib.request.urlopen(req, timeout=PROXY_START_S) as resp:
            status, body = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        pytest.fail(f"/panel/ answered {exc.code}; Lab log:\n{lab_server.log_tail()}")
    assert status == 200
    for app in APPS:
        assert f'href="/panel/{app}"' in body, f"{app} is not on the launcher's index"
    assert "https://" not in body, "the apps index must load nothing from the internet"


@pytest.mark.browser
@pytest.mark.timeout(150)
def test_launcher_tile_opens_the_apps_index(lab_server, page):
    _guard_popups(page)
    page.goto(f"{lab_server.url}/lab?token={lab_server.token}", wait_until="domcontentloaded", timeout=60_000)
    # make lab's server root is notebooks/
    page.locator(".jp-DirListing-itemText", has_text="01_backtest.ipynb").wait_for(timeout=60_000)
    tile = page.locator(".jp-LauncherCard", has_text="Panel Launcher")
    tile.wait_for(timeout=30_000)
    with page.expect_popup(timeout=PROXY_START_S * 1000) as popup:
        tile.click()
    index = popup.value
    index.locator(f'#apps li[data-app="{sorted(APPS)[-1]}"]').wait_for(timeout=PROXY_START_S * 1000)
    assert index.url == f"{lab_server.url}/panel/"
    assert set(index.locator("#apps li").evaluate_all("els => els.map(e => e.dataset.app)")) == APPS
    page.watch.assert_clean()


@pytest.mark.browser
@pytest.mark.timeout(150)
def test_an_app_from_the_launcher_index_renders_and_streams_through_the_proxy(lab_server, page):
    page.goto(f"{lab_server.url}/panel/?token={lab_server.token}", wait_until="domcontentloaded",
              timeout=PROXY_START_S * 1000)
    page.locator('#apps li[data-app="stream_monitor"] a').click(timeout=30_000)
    page.wait_for_url(f"{lab_server.url}/panel/stream_monitor", timeout=30_000)
    # the document arrives over the Bokeh websocket, proxied by the Lab server
    page.locator("canvas").first.wait_for(timeout=60_000)
    # the numbers move: periodic updates reach the page through the proxied websocket
    first = _wait_for_messages_above(page, 0, timeout_s=30)
    _wait_for_messages_above(page, first, timeout_s=20)
    page.watch.screenshot("lab_launcher_stream_monitor")
    page.watch.assert_clean()
