"""The model monitor in a real browser: Debian chromium via Playwright against `panel serve`."""
from __future__ import annotations

import time

import pytest


def _int(page, cls: str) -> int:
    return int(page.locator(f".{cls}").first.inner_text(timeout=10_000).replace(",", ""))


@pytest.mark.browser
@pytest.mark.timeout(150)
def test_model_monitor_loads_clean_and_predictions_move(panel_server, page, tmp_path):
    url = panel_server("apps/model_monitor.py", env={"SPARK_VAR": str(tmp_path / "var")}, timeout=120)
    page.goto(f"{url}/model_monitor", wait_until="domcontentloaded", timeout=90_000)
    page.locator(".sr-model-predictions").first.wait_for(timeout=60_000)
    page.locator("canvas").first.wait_for(timeout=30_000)
    model_id = page.locator(".sr-model-id").first.inner_text()
    assert len(model_id) == 12 and all(c in "0123456789abcdef" for c in model_id)
    first_preds, first_updates = _int(page, "sr-model-predictions"), _int(page, "sr-model-updates")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if _int(page, "sr-model-predictions") >= first_preds + 50 and _int(page, "sr-model-updates") >= first_updates + 5:
            break
    preds, bars = _int(page, "sr-model-predictions"), _int(page, "sr-model-bars")
    assert preds >= first_preds + 50, f"prediction count did not move: {first_preds} -> {preds}"
    assert bars >= preds  # one prediction per bar once warm (the monitor starts warm: no bar without one)
    assert page.locator(".sr-model-drift").first.inner_text().startswith(("no drift", "DRIFT: "))
    assert page.locator("canvas").count() >= 3  # drift bars, prediction distribution, latency
    page.watch.screenshot("model_monitor")
    page.watch.assert_clean()
