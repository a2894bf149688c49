"""Risk app in a real browser (Debian chromium): operators halt and resume with a reason, viewers look."""
from __future__ import annotations

import pytest

from spark_research.gates.audit import AuditLog
from spark_research.risk.store import RiskStore
from tests.apps.app_server import served_app
from tests.conftest import PageWatch

pytestmark = pytest.mark.browser
SECRET = "risk-app-test-cookie-secret-0123456789abcdef"
REASON = "browser test: exchange incident 7"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    var = tmp_path_factory.mktemp("var")
    with served_app("risk", var, cookie_secret=SECRET, env={"SPARK_RISK_DEMO_BARS": "120"}) as url:
        yield url, var


def _login(page, url: str, user: str, password: str) -> None:
    page.goto(url + "/risk", timeout=60_000)
    page.wait_for_url("**/login**", timeout=30_000)
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-submit", timeout=90_000)  # the first session trades the demo desk
    page.wait_for_url("**/risk", timeout=60_000)
    page.locator('#whoami[data-live="true"]').wait_for(timeout=60_000)


def test_operator_halts_and_resumes_with_a_reason_and_the_engine_follows(server, page):
    url, var = server
    _login(page, url, "operator", "operator-demo")
    assert "read-only" not in page.locator("#whoami").inner_text()
    # the desk's figures are on the page: equity, limits with utilisation, positions, VaR/ES, denials
    assert "equity" in page.locator("#risk-summary").inner_text()
    page.locator(".risk-limits", has_text="max_daily_loss").wait_for(timeout=15_000)
    page.locator(".risk-positions", has_text="BTCUSDT").wait_for(timeout=15_000)
    page.locator(".risk-var", has_text="0.99").wait_for(timeout=15_000)
    page.locator(".risk-denials", has_text="price_collar").wait_for(timeout=15_000)
    assert page.locator('.risk-state[data-scope="global"]').inner_text() == "ACTIVE"
    # no reason: refused
    page.get_by_role("button", name="Halt").click()
    page.locator("#risk-message", has_text="reason must be a non-empty text").wait_for(timeout=15_000)
    page.locator(".risk-reason input").fill(REASON)
    page.get_by_role("button", name="Halt").click()
    page.locator("#risk-message", has_text=f"global is HALTED (halt by operator: {REASON})").wait_for(timeout=15_000)
    page.locator('.risk-state[data-scope="global"]', has_text="HALTED").wait_for(timeout=15_000)
    page.locator(".risk-audit", has_text=REASON).wait_for(timeout=15_000)
    page.watch.screenshot("risk_operator")
    # a trading process on the same store refuses everything from its next bar on
    from spark_research.gates.model import Order
    from spark_research.risk.config import RiskConfig
    from spark_research.risk.engine import RiskEngine

    engine = RiskEngine(RiskConfig.from_dict({}), store=RiskStore(var / "risk" / "state.db"),
                        audit=AuditLog(var / "risk" / "audit.db"))
    engine.on_bar("BTCUSDT", 30_000.0)
    assert engine.evaluate(Order("x1", "sma_cross", "BTCUSDT", 0, "buy", 0.01, 30_000.0)).check == "halted"
    page.locator(".risk-reason input").fill("incident over")
    page.get_by_role("button", name="Resume").click()
    page.locator('.risk-state[data-scope="global"]', has_text="ACTIVE").wait_for(timeout=15_000)
    engine.on_bar("BTCUSDT", 30_000.0)
    assert isinstance(engine.evaluate(Order("x2", "sma_cross", "BTCUSDT", 0, "buy", 0.01, 30_000.0)), Order)
    engine.close()
    with AuditLog(var / "risk" / "audit.db") as log:
        manual = [(e.actor, e.gate, e.new_state, e.reason) for e in log.entries()
                  if e.kind == "risk_state" and e.actor == "operator"]
        assert manual == [("operator", "risk/global", "HALTED", REASON), ("operator", "risk/global", "ACTIVE",
                                                                          "incident over")]
        assert log.verify().ok
    page.watch.assert_clean()


def test_viewer_sees_the_desk_but_cannot_act(server, browser):
    url, var = server
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.watch = PageWatch(page)
        _login(page, url, "viewer", "viewer-demo")
        assert "read-only" in page.locator("#whoami").inner_text()
        page.locator('.risk-state[data-scope="global"]').wait_for(timeout=15_000)
        for name in ("Halt", "Reduce only", "Resume"):
            assert page.get_by_role("button", name=name).is_disabled()
        page.watch.screenshot("risk_viewer")
        page.watch.assert_clean()
    finally:
        context.close()
