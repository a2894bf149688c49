"""``spark serve`` with a component that cannot start: the rest runs, /health and ``spark status``
say what is down and why, the research app explains the refused sweep, and SIGTERM still stops
everything."""
from __future__ import annotations

import signal
import subprocess

import pytest

from tests.conftest import ROOT, free_port
from tests.serve.serve_helpers import OPERATOR, SPARK, start_serve, stop_serve, wait_until_apps_answer

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    dead = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    s = start_serve(tmp_path_factory.mktemp("serve"), "--no-exercise", env={"SPARK_DASK_SCHEDULER": dead})
    s.dead_scheduler = dead
    try:
        wait_until_apps_answer(s, until_health_ok=False)
        yield s
    finally:
        if s.proc.poll() is None:
            stop_serve(s, signal.SIGTERM)
        print(s.log()[-3000:])


def _wait_failed(s, name: str, timeout: float = 90.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = s.health()
        if body["components"][name]["state"] == "failed":
            return body
        time.sleep(0.5)
    raise TimeoutError(f"{name} not reported failed: {s.health()}")


def test_health_says_which_component_failed_and_why(served):
    body = _wait_failed(served, "optimizer")
    assert body["status"] == "degraded"
    opt = body["components"]["optimizer"]
    assert opt["up"] is False and opt["error"], opt
    for name in ("web", "streams", "gates", "exports"):
        assert body["components"][name]["up"] is True, (name, body["components"][name])


def test_spark_status_exits_1_and_shows_the_error(served):
    _wait_failed(served, "optimizer")
    out = subprocess.run([*SPARK, "status", "--port", str(served.port)], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 1
    assert f"127.0.0.1:{served.port}: degraded" in out.stdout
    line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("optimizer"))
    assert "failed" in line and "Error" in line, out.stdout


def test_research_app_explains_a_refused_sweep(served, page):
    _wait_failed(served, "optimizer")
    page.goto(served.url + "/research", timeout=60_000)
    page.fill("#username", OPERATOR[0])
    page.fill("#password", OPERATOR[1])
    page.click("#login-submit")
    page.locator("#research-message", has_text="backtest sma_cross").wait_for(timeout=60_000)
    page.get_by_role("button", name="Run sweep").click()
    page.locator("#research-message", has_text="sweep refused: the optimizer failed to start").wait_for(
        timeout=15_000)
    page.watch.assert_clean()


def test_sigterm_still_stops_everything(served):
    code, survivors = stop_serve(served, signal.SIGTERM)
    assert code == 0, served.log()[-3000:]
    assert survivors == []
