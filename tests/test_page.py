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
from tests.helpers import wait_until

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


@pytest.fixture
def browser():
    if find_chromium() is None:
        pytest.skip("no Chromium here: apt-get install chromium (.ci/run installs it)")
    browser = Browser()
    try:
        yield browser
    finally:
        browser.stop()


@pytest.mark.timeout(120)
def test_a_heart_is_found_among_5000_with_its_round_trips_or_its_certificate(browser):
    with (
        HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=500) as monitor,
        HeartFleet(monitor.ping_addr, monitor.pong_addr, size=5000, prefix="w") as fleet,
        LiveServer(monitor) as page,
    ):
        failed: list[bytes] = []
        monitor.add_failure_handler(lambda failure: failed.append(failure.heart))
        wait_until(lambda: len(monitor.hearts) == 5000, timeout=60)
        fleet.kill([b"w-77"])
        wait_until(lambda: b"w-77" in failed, timeout=10)
        browser.open(page.url)
        browser.wait_for("window.greenheart && window.greenheart.updates >= 1", timeout=30)

        def find(text: str) -> list[dict]:
            found = browser.evaluate("window.greenheart.found")
            browser.evaluate(
                f"(f => {{ f.value = {json.dumps(text)}; f.dispatchEvent(new Event('input')) }})"
                "(document.getElementById('find'))"
            )
            browser.wait_for(f"window.greenheart.found > {found}", timeout=10)
            return browser.evaluate(
                "[...document.querySelectorAll('#found tbody tr')].map(tr => ({heart:"
                " tr.dataset.heart, state: tr.dataset.standing, cells: [...tr.cells]"
                ".map(td => td.textContent)}))"
            )

        (one,) = find("w-1234")
        assert one["heart"] == "w-1234" and one["state"] == "beating"
        assert float(one["cells"][4]) > 0  # its last round trip, ms
        assert sorted(r["heart"] for r in find("W-123")) == [
            "w-123",
            *(f"w-123{n}" for n in range(10)),
        ]
        (dead,) = find("w-77")[:1]
        assert dead["heart"] == "w-77" and dead["state"] == "failed"
        assert dead["cells"][6].startswith("missed")  # why, from its certificate


@pytest.mark.timeout(120)
def test_a_page_that_lived_through_200_deltas_equals_a_fresh_page(browser):
    """Hearts join, fail and come back all along; the page applies 200 deltas; then it holds
    exactly the rows a page opened at the end is given whole."""
    with (
        HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=20) as monitor,
        HeartFleet(monitor.ping_addr, monitor.pong_addr, size=200, prefix="d") as fleet,
        LiveServer(monitor) as page,
    ):
        wait_until(lambda: len(monitor.hearts) == 200, timeout=30)

        def churn() -> None:
            while True:
                fleet.replace(fleet.ids[:3])
                gevent.sleep(0.03)

        churner = gevent.spawn(churn)
        try:
            browser.open(page.url)
            browser.wait_for("window.greenheart && window.greenheart.updates >= 1", timeout=30)
            deltas = 0
            while deltas < 200:
                deltas = browser.evaluate(
                    "window.greenheart.next().then(() => window.greenheart.deltas)",
                    await_promise=True,
                )
        finally:
            churner.kill()
        monitor.stop()  # no more beats: the rows stay as they are
        browser.evaluate("window.greenheart.next()", await_promise=True)
        held = json.loads(browser.evaluate("window.greenheart.rows()"))
        fresh = browser.evaluate(
            "fetch('live.json').then(r => r.json()).then(d => d.full && d.hearts.set)",
            await_promise=True,
        )
    assert fresh and held == fresh
    assert {row[1] for row in held.values()} >= {"a", "f"}  # joins and failures both seen
