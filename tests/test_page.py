"""The live page in a real browser (headless Chromium): hearts, a failure and its cause, a
stopped monitor, and a hostile identity shown as text."""

from __future__ import annotations

import json
import urllib.request

import gevent
import pytest

from greenheart import HeartMonitor
from greenheart.bench.browser import Browser, find_chromium
from greenheart.fleet import HeartFleet
from greenheart.integrations.live import LiveServer

HOSTILE = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"


@pytest.fixture
def watched():
    """A monitor holding a fleet (one heart with a hostile identity), its page, a browser."""
    if find_chromium() is None:
        pytest.skip("no Chromium here: apt-get install chromium (.ci/run installs it)")
    monitor = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=100).start()
    fleet = HeartFleet(monitor.ping_addr, monitor.pong_addr, size=20, prefix="web").start()
    fleet.add_hearts([HOSTILE.encode()])
    page = LiveServer(monitor).start()
    browser = Browser()
    try:
        browser.open(page.url)
        yield monitor, fleet, browser
    finally:
        browser.stop()
        page.stop()
        fleet.stop()
        monitor.stop()


def rows_with(standing: str) -> str:
    return f"document.querySelectorAll('#attention tbody tr[data-standing=\"{standing}\"]').length"


@pytest.mark.timeout(60)
def test_the_page_shows_every_heart_answering(watched):
    _monitor, _fleet, browser = watched
    assert browser.wait_for(f"{rows_with('answering')} === 21")
    assert browser.evaluate("document.getElementById('state').dataset.state") == "running"
    assert browser.evaluate("window.greenheart.updates") >= 1


@pytest.mark.timeout(60)
def test_a_hostile_identity_is_shown_as_text(watched):
    _monitor, _fleet, browser = watched
    browser.wait_for(f"{rows_with('answering')} === 21")
    shown = browser.evaluate(
        "[...document.querySelectorAll('#attention td.id')].map(td => td.textContent)"
    )
    assert HOSTILE in shown
    assert browser.evaluate("window.pwned === undefined")
    assert browser.evaluate("document.querySelectorAll('#attention script, #attention img')"
                            ".length") == 0  # fmt: skip


@pytest.mark.timeout(60)
def test_a_killed_heart_turns_failed_with_its_cause(watched):
    _monitor, fleet, browser = watched
    browser.wait_for(f"{rows_with('answering')} === 21")
    fleet.kill([b"web-3"])
    cause = browser.wait_for(
        "document.querySelector('#failure-list li[data-heart=\"web-3\"]')?.dataset.cause"
    )
    assert cause == "missed"
    assert browser.evaluate(
        "document.querySelector('#attention tr[data-heart=\"web-3\"]').dataset.standing"
    ) == "failed"  # fmt: skip
    why = browser.evaluate(
        "document.querySelector('#failure-list li[data-heart=\"web-3\"] .why').textContent"
    )
    assert why.startswith("missed 2 beats")


@pytest.mark.timeout(60)
def test_a_stopped_monitor_is_shown_stopped(watched):
    monitor, _fleet, browser = watched
    browser.wait_for(f"{rows_with('answering')} === 21")
    monitor.stop()
    assert browser.wait_for("document.getElementById('state').dataset.state === 'stopped'")


@pytest.mark.timeout(30)
def test_the_page_and_its_data_come_from_the_monitor_alone():
    monitor = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=100).start()
    page = LiveServer(monitor).start()
    try:

        def get(path: str) -> tuple[dict, bytes]:
            with urllib.request.urlopen(page.url + path) as response:
                return dict(response.headers), response.read()

        headers, html = gevent.get_hub().threadpool.apply(get, ("",))
        assert b"http" not in html.replace(b"http-equiv", b"")  # nothing from elsewhere
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        _, body = gevent.get_hub().threadpool.apply(get, ("live.json",))
        assert json.loads(body)["monitor"]["running"] is True
        assert page.host == "127.0.0.1"
    finally:
        page.stop()
        monitor.stop()
