"""The stream monitor in a real browser: Debian chromium via Playwright against `panel serve`."""
from __future__ import annotations

import time

import pytest


def _int(page, cls: str) -> int:
    return int(page.locator(f".{cls}").first.inner_text(timeout=10_000).replace(",", ""))


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_stream_monitor_loads_clean_and_numbers_move(panel_server, page, tmp_path):
    url = panel_server("apps/stream_monitor.py", env={
        "SPARK_VAR": str(tmp_path / "var"), "SPARK_STREAM_RATE": "400",
        "SPARK_STREAM_FAULTS": "skip_every=150,drop_every=1500", "SPARK_STREAM_TAPE": "60000"})
    page.goto(f"{url}/stream_monitor", wait_until="domcontentloaded", timeout=60_000)
    page.locator(".sr-msgs").first.wait_for(timeout=30_000)
    page.locator("canvas").first.wait_for(timeout=30_000)
    deadline = time.monotonic() + 20
    first_msgs, first_updates = _int(page, "sr-msgs"), _int(page, "sr-updates")
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if _int(page, "sr-msgs") > first_msgs + 200 and _int(page, "sr-gaps") > 0 and \
                _int(page, "sr-updates") >= first_updates + 8:
            break
    msgs, updates = _int(page, "sr-msgs"), _int(page, "sr-updates")
    assert msgs > first_msgs + 200, f"message count did not move: {first_msgs} -> {msgs}"
    assert updates >= first_updates + 8, "the page refreshes at less than 2 Hz"
    assert _int(page, "sr-gaps") > 0 and _int(page, "sr-resyncs") > 0, "skip faults must show as gaps and resyncs"
    # drop_every makes the replay exchange cut the socket: "disconnected" is a true, brief state,
    # so the indicator must come back to a live state within the reconnect backoff
    live_states = ("connected", "resyncing", "connecting")
    state_deadline = time.monotonic() + 10
    while page.locator(".sr-state-trade").first.inner_text() not in live_states and time.monotonic() < state_deadline:
        time.sleep(0.2)
    assert page.locator(".sr-state-trade").first.inner_text() in live_states
    page.watch.screenshot("stream_monitor")
    page.watch.assert_clean()
