"""Gate control app in a real browser (Debian chromium): operators act, viewers look, nobody else gets in."""
from __future__ import annotations

import http.client
import urllib.parse

import pytest

from spark_research.gates.audit import AuditLog
from tests.apps.app_server import served_app

pytestmark = pytest.mark.browser
SECRET = "gate-control-test-cookie-secret-0123456789"
REASON = "browser test: venue incident 42"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    var = tmp_path_factory.mktemp("var")
    with served_app("gate_control", var, cookie_secret=SECRET, env={"SPARK_GATE_DEMO_BARS": "90"}) as url:
        yield url, var


def _request(url: str, method: str, path: str, body: dict | None = None) -> http.client.HTTPResponse:
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    data = urllib.parse.urlencode(body) if body else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    conn.request(method, path, body=data, headers=headers)
    return conn.getresponse()


def _login(page, url: str, user: str, password: str) -> None:
    page.goto(url + "/gate_control", timeout=60_000)
    page.wait_for_url("**/login**", timeout=30_000)  # not logged in: sent to the sign-in form
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-submit", timeout=90_000)  # the first session replays the demo desk
    page.wait_for_url("**/gate_control", timeout=60_000)
    # the session is live (server-side onload ran): events are processed from here on
    page.locator('#whoami[data-live="true"]').wait_for(timeout=60_000)

def test_unauthenticated_requests_are_sent_to_login_and_bad_passwords_refused(server):
    url, _ = server
    resp = _request(url, "GET", "/gate_control")
    assert resp.status == 302 and "/login?next=" in resp.getheader("Location")
    resp = _request(url, "POST", "/login", {"username": "operator", "password": "not-the-password", "next": "/gate_control"})
    assert resp.status == 302 and "error=1" in resp.getheader("Location")
    assert resp.getheader("Set-Cookie") is None
    resp = _request(url, "POST", "/login", {"username": "operator", "password": "operator-demo", "next": "//evil.example"})
    assert resp.status == 302 and resp.getheader("Location") == "/"  # no open redirect
    assert "user=" in resp.getheader("Set-Cookie")


def test_operator_closes_a_gate_with_a_reason_and_the_audit_trail_shows_it(server, page):
    url, var = server
    _login(page, url, "operator", "operator-demo")
    assert "operator" in page.locator("#whoami").inner_text()
    assert "read-only" not in page.locator("#whoami").inner_text()
    # an empty reason is refused
    page.get_by_role("button", name="Close gate").click()
    page.locator("#gate-message", has_text="reason must be a non-empty text").wait_for(timeout=15_000)
    # with a reason the gate closes
    page.locator(".gate-reason input").fill(REASON)
    page.get_by_role("button", name="Close gate").click()
    page.locator("#gate-message", has_text=f"is CLOSED (close by operator: {REASON})").wait_for(timeout=15_000)
    page.locator(".audit-trail", has_text=REASON).wait_for(timeout=15_000)
    assert page.locator('.gate-state[data-gate="sma_cross/BTCUSDT"]').inner_text() == "CLOSED"
    page.watch.screenshot("gate_control_operator")
    # the trail is filterable
    assert page.locator(".audit-trail", has_text="gate created").count() == 1
    page.locator(".audit-filter input").fill("incident 42")
    page.locator(".audit-filter input").press("Enter")
    page.locator(".audit-trail", has_text="gate created").wait_for(state="detached", timeout=15_000)
    assert page.locator(".audit-trail", has_text=REASON).count() == 1
    with AuditLog(var / "audit" / "gates.db") as log:
        manual = [e for e in log.entries() if e.kind == "manual"]
        assert [(e.actor, e.gate, e.old_state, e.new_state, e.reason) for e in manual] == [
            ("operator", "sma_cross/BTCUSDT", "OPEN", "CLOSED", REASON)]
        assert log.verify().ok
    page.watch.assert_clean()


def test_viewer_sees_the_gates_but_cannot_act(server, browser):
    url, var = server
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        from tests.conftest import PageWatch

        page.watch = PageWatch(page)
        _login(page, url, "viewer", "viewer-demo")
        assert "read-only" in page.locator("#whoami").inner_text()
        page.locator('.gate-state[data-gate="sma_cross/ETHUSDT"]').wait_for(timeout=15_000)
        assert page.get_by_role("button", name="Close gate").is_disabled()
        assert page.get_by_role("button", name="Open gate").is_disabled()
        page.watch.screenshot("gate_control_viewer")
        page.watch.assert_clean()
    finally:
        context.close()
    with AuditLog(var / "audit" / "gates.db") as log:
        assert not [e for e in log.entries() if e.actor == "viewer"]
