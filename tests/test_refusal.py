"""Connection storms: refusing connections while out of descriptors (the rule with a fed
clock, then the guard on a live monitor's listeners), and a storm that must not wait on
Python."""

from __future__ import annotations

import socket
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenheart import Heart, HeartMonitor
from greenheart.core.refusal import HANDSHAKE_SECONDS, HEADROOM, Change, Refusal, headroom
from greenheart.green import refusal as guard_module
from greenheart.green.limits import open_descriptors
from greenheart.green.sockets import close_sockets, listener_descriptor
from tests.helpers import RecordingMonitor, callers_sockets, connects, wait_beats, wait_until

# -- the rule -------------------------------------------------------------------------------


@pytest.mark.pure
def test_refuses_when_none_is_free_and_admits_once_enough_are_and_the_storm_is_over():
    rule = Refusal(headroom=10, min_seconds=1.0, calm=100.0)
    assert rule.wanted() == 1 and rule.look(free=1, dropped=0, now=0.0) is None
    assert rule.look(free=0, dropped=0, now=1.0) is Change.REFUSE and rule.refusing
    assert rule.wanted() == 10
    assert rule.look(free=10, dropped=0, now=1.5) is None  # calm and enough free, too soon
    assert rule.look(free=10, dropped=1000, now=2.0) is None  # 1,000 a second: a storm
    assert rule.look(free=10, dropped=1500, now=2.5) is None  # 1,000 a second over the last 1 s
    assert rule.look(free=9, dropped=1500, now=3.0) is None  # calm, not enough free
    assert rule.drop_rate() == 500.0  # 500 dropped in the last second (looks at 2.0 and 3.0)
    # 20 dropped since the look at 2.5: calm for a second
    assert rule.look(free=10, dropped=1520, now=3.5) is Change.ADMIT and not rule.refusing
    assert (rule.refusals, rule.seconds) == (1, 2.5)


@pytest.mark.pure
def test_the_default_calm_is_the_rate_whose_handshakes_fit_in_the_headroom():
    assert Refusal(headroom=1000).calm == 1000 / HANDSHAKE_SECONDS


@pytest.mark.pure
def test_a_storm_stays_refused_however_long_it_lasts_and_is_admitted_a_look_after_it_ends():
    rule = Refusal(headroom=64, min_seconds=1.0)
    rule.look(free=0, dropped=0, now=0.0)
    dropped, now = 0, 0.0
    while now < 60.0:  # a storm of 2,000 connections a second for a minute
        now += 0.25
        dropped += 500
        assert rule.look(free=64, dropped=dropped, now=now) is None
    changes = []
    while rule.refusing:  # then only a few hearts' SYNs
        now += 0.25
        dropped += 1
        changes.append(rule.look(free=64, dropped=dropped, now=now))
    assert changes[-1] is Change.ADMIT and now <= 61.25


@pytest.mark.pure
@given(
    looks=st.lists(
        st.tuples(st.integers(0, 100), st.integers(0, 2000), st.floats(0.0, 3.0)), max_size=60
    ),
    share=st.integers(1, 50),
)
def test_admissions_only_with_enough_free_once_the_drops_were_calm_for_long_enough(looks, share):
    rule = Refusal(headroom=share, min_seconds=1.0, calm=100.0)
    now, dropped, history = 0.0, 0, []
    for free, more, step in looks:
        now += step
        dropped += more
        refusing, since = rule.refusing, rule.since
        change = rule.look(free=min(free, rule.wanted()), dropped=dropped, now=now)
        history.append((now, dropped))
        if change is Change.ADMIT:
            assert refusing and free >= share and since is not None and now - since >= 1.0
            # over the looks of at least the last second, fewer than 100 drops a second
            base = max((t, d) for t, d in history if t <= now - 1.0 and t >= since)
            assert (dropped - base[1]) / (now - base[0]) < 100.0
        if change is Change.REFUSE:
            assert not refusing and free == 0
        if not refusing and free > 0:
            assert change is None and not rule.refusing
    assert rule.seconds >= 1.0 * (rule.refusals - rule.refusing)


@pytest.mark.pure
def test_the_headroom_is_a_quarter_of_the_limit_and_never_below_the_least():
    assert headroom(20_000) == 5_000 and headroom(100) == HEADROOM


# -- the guard on a live monitor --------------------------------------------------------------

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="socket filters and /proc are Linux's"
)


@linux_only
def test_the_listeners_are_found_by_their_endpoints(make_monitor):
    monitor = make_monitor(period=100)
    for address in (monitor.ping_addr, monitor.pong_addr):
        fd = listener_descriptor(address)
        assert fd is not None
        assert socket.socket(fileno=fd).detach() == fd  # it is a socket, and stays open
    assert listener_descriptor("ipc:///tmp/nothing") is None


@linux_only
def test_out_of_descriptors_new_connections_are_dropped_and_hearts_kept(make_monitor, monkeypatch):
    free = {"count": 100}
    monkeypatch.setattr(
        guard_module, "_free_descriptors", lambda wanted: min(wanted, free["count"])
    )
    monkeypatch.setattr(guard_module, "LOOK_EVERY", 0.02)
    monitor = make_monitor(RecordingMonitor, period=50, max_misses=1)
    monitor._guard.refusal = Refusal(headroom=10, min_seconds=0.2)
    heart = Heart(monitor.ping_addr, monitor.pong_addr, heart_id="connected")
    heart.start()
    try:
        wait_until(lambda: b"connected" in monitor.hearts)
        assert connects(monitor.pong_addr) and not monitor.status().refusing_connections
        free["count"] = 0  # the last descriptor is gone
        wait_until(lambda: monitor.status().refusing_connections)
        assert monitor.status().connection_refusals == 1
        assert not connects(monitor.pong_addr) and not connects(monitor.ping_addr)
        wait_beats(monitor, 5)
        assert b"connected" in monitor.hearts and not monitor.failed  # kept, and heard
        free["count"] = 10
        wait_until(lambda: not monitor.status().refusing_connections)
        assert connects(monitor.pong_addr) and connects(monitor.ping_addr)
        late = Heart(monitor.ping_addr, monitor.pong_addr, heart_id="after")
        late.start()
        try:
            wait_until(lambda: b"after" in monitor.hearts)
        finally:
            late.stop()
    finally:
        heart.stop()


@linux_only
def test_a_stopped_monitor_leaves_no_filter_on_sockets_it_does_not_own(monkeypatch):
    """A caller's sockets outlive the monitor: stopped mid-refusal, it lets connections in."""
    monkeypatch.setattr(guard_module, "_free_descriptors", lambda wanted: 0)
    monkeypatch.setattr(guard_module, "LOOK_EVERY", 0.02)
    ping, pong = callers_sockets()
    try:
        with HeartMonitor(ping, pong, period=50) as monitor:
            wait_until(lambda: monitor.status().refusing_connections)
            assert not connects(monitor.pong_addr)
        assert connects(monitor.pong_addr) and connects(monitor.ping_addr)
    finally:
        close_sockets(ping, pong)


# -- a storm of connections while Python is busy ------------------------------------------------


@linux_only
def test_a_storm_of_connections_never_waits_on_a_busy_python_thread(make_monitor):
    """libzmq sends socket-monitor events from its I/O thread and waits when their queue is
    full: with pyzmq's 1,000 it stopped accepting (and, with it, moving every heart's pings
    and pongs) until Python read them. Here Python computes, never yielding, while 3,000
    connections come: every one is accepted all the same."""
    monitor = make_monitor(period=1000)
    host, port = monitor.pong_addr.removeprefix("tcp://").rsplit(":", 1)
    wait_beats(monitor, 1)
    before = open_descriptors()
    storm = []
    try:
        for _ in range(3000):
            peer = socket.socket()
            peer.setblocking(False)
            peer.connect_ex((host, int(port)))
            storm.append(peer)
        deadline = time.monotonic() + 10
        # the hub is not given a chance to run: time.sleep blocks this whole thread
        while open_descriptors() - before < 2 * len(storm) and time.monotonic() < deadline:
            time.sleep(0.05)
        accepted = open_descriptors() - before - len(storm)
        assert accepted == len(storm)
    finally:
        for peer in storm:
            peer.close()
