"""A heart's hearing of its monitor: lost after a few periods without a ping (or none at
first), found at the next ping; and a Heart that says so."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenheart import Heart, HeartMonitor
from greenheart.core.pingwatch import Change, Hearing
from tests.helpers import wait_until


@pytest.mark.pure
@given(
    period=st.floats(0.01, 10.0),
    beats=st.integers(2, 20),
    gap=st.floats(0.0, 20.0),
    misses=st.integers(1, 5),
)
def test_the_monitor_is_lost_only_after_its_misses_and_found_at_the_next_ping(
    period, beats, gap, misses
):
    hearing = Hearing(0.0, misses=misses)
    now = 0.0
    for _ in range(beats):
        now += period
        assert hearing.ping(now) is None
    assert hearing.period == pytest.approx(period)
    silent_until = now + gap * period
    lost = gap >= misses + 1
    assert hearing.check(silent_until) is (Change.LOST if lost else None)
    assert hearing.check(silent_until) is None  # said once
    assert hearing.ping(silent_until) is (Change.FOUND if lost else None)
    if lost:  # the gap is not taken for a period
        assert hearing.period == pytest.approx(period)


@pytest.mark.pure
def test_before_any_ping_the_monitor_is_lost_after_the_first_wait():
    hearing = Hearing(5.0, first_wait=10.0)
    assert hearing.check(14.9) is None and hearing.check(15.0) is Change.LOST
    assert hearing.ping(16.0) is Change.FOUND and not hearing.lost


def test_a_heart_says_its_monitor_is_lost_and_back(caplog):
    """Pointed at a monitor that is not there yet it says the monitor is lost; when the
    monitor comes, it says so; when the monitor stops, lost again."""
    heard = []
    with HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=50) as probe:
        ping, pong = probe.ping_addr, probe.pong_addr
    heart = Heart(ping, pong, heart_id="ear", first_wait=0.3, lost_after=3)
    heart.add_hearing_handler(lambda change, silence: heard.append(change))
    with heart:
        wait_until(lambda: heard == [Change.LOST], timeout=3)
        with HeartMonitor.bind(ping, pong, period=50):
            wait_until(lambda: heard == [Change.LOST, Change.FOUND], timeout=5)
        wait_until(lambda: heard == [Change.LOST, Change.FOUND, Change.LOST], timeout=3)
    assert "its monitor is lost" in caplog.text and "its monitor is back" in caplog.text


def test_a_hearing_handler_must_be_callable():
    with pytest.raises(TypeError, match="must be callable"):
        Heart("tcp://127.0.0.1:1", "tcp://127.0.0.1:2").add_hearing_handler("not a function")


def test_a_fleet_says_its_monitor_is_lost_and_back(monkeypatch):
    import functools

    from greenheart.fleet import HeartFleet

    monkeypatch.setattr(
        "greenheart.green.fleet.Hearing", functools.partial(Hearing, first_wait=0.3)
    )
    with HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=50) as probe:
        ping, pong = probe.ping_addr, probe.pong_addr
    with HeartFleet(ping, pong, size=3) as fleet:
        wait_until(lambda: fleet.status().monitor_lost, timeout=3)
        with HeartMonitor.bind(ping, pong, period=50):
            wait_until(lambda: not fleet.status().monitor_lost, timeout=5)
