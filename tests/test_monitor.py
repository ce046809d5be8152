"""HeartMonitor and Heart on real loopback sockets."""

from __future__ import annotations

import _socket
import gc
import logging
import struct
import time

import attrs
import gevent
import gevent.event
import pytest
import zmq
import zmq.green

from greenheart import Heart, HeartMonitor, MassSilence, Rules
from greenheart.green.limits import open_descriptors
from greenheart.green.monitor.sockets import LISTEN_BACKLOG
from greenheart.green.sockets import (
    close_sockets,
    default_context,
    listener_of,
    raise_listen_backlog,
)
from tests.helpers import RecordingMonitor, ScriptedHeart, callers_sockets, dealer, wait_until


def after_next_beat(monitor: HeartMonitor) -> None:
    """Return just after the monitor's next beat."""
    beaten = gevent.event.Event()
    monitor.add_beat_handler(lambda beat: beaten.set())
    assert beaten.wait(timeout=5)


def test_a_heart_is_registered_within_one_period_of_its_first_pong(make_monitor):
    period = 0.1
    monitor = make_monitor(RecordingMonitor, period=period * 1000)
    with Heart(monitor.ping_addr, monitor.pong_addr, heart_id=b"quick"):
        wait_until(lambda: b"quick" in monitor.hearts)
        # within a period exactly on a punctual grid (test_ledger proves it); beats run late
        # on a busy machine, so here a quarter of a second of slack
        assert monitor.registered[b"quick"][0] - monitor.first_pong[b"quick"] <= period + 0.25


@pytest.mark.parametrize("max_misses", [1, 3])
def test_a_killed_heart_fails_within_max_misses_plus_two_periods(make_monitor, max_misses):
    period = 0.05
    monitor = make_monitor(RecordingMonitor, period=period * 1000, max_misses=max_misses)
    heart = Heart(monitor.ping_addr, monitor.pong_addr, heart_id=b"mortal")
    heart.start()
    wait_until(lambda: b"mortal" in monitor.hearts)
    after_next_beat(monitor)
    gevent.sleep(period / 2)  # stop mid-round, away from either beat
    stopped_at = time.monotonic()
    heart.kill()  # without a word: a stopped heart would leave, failed at once
    wait_until(lambda: b"mortal" in monitor.failed, timeout=(max_misses + 2) * period + 5)
    detected_after = monitor.failed[b"mortal"][0] - stopped_at
    # the exact bound is test_ledger's; beats run late on a busy machine
    assert max_misses * period < detected_after <= (max_misses + 2) * period + 0.25
    assert b"mortal" not in monitor.hearts and b"mortal" not in monitor.on_probation


def test_a_heart_missing_max_misses_beats_at_a_time_never_fails(make_monitor):
    max_misses = 2
    monitor = make_monitor(RecordingMonitor, period=50, max_misses=max_misses)
    probation_seen = []
    monitor.add_beat_handler(lambda beat: probation_seen.append(monitor.on_probation.get(b"flaky")))
    # answer the first few pings to register, then drop max_misses of every max_misses + 1
    heart = ScriptedHeart(
        monitor.ping_addr,
        monitor.pong_addr,
        b"flaky",
        lambda n: 0 if n < 5 or n % (max_misses + 1) == 0 else None,
    )
    try:
        wait_until(lambda: heart.pings >= 30, timeout=10)
    finally:
        heart.stop()
    assert b"flaky" in monitor.registered
    assert max_misses in probation_seen  # it really did miss that many in a row
    assert b"flaky" not in monitor.failed


def test_a_late_answer_keeps_a_heart_alive_and_is_counted_late(make_monitor):
    period = 0.08
    monitor = make_monitor(RecordingMonitor, period=period * 1000, max_misses=1)
    late_seen = []
    monitor.add_beat_handler(lambda beat: late_seen.append(beat.late_hearts.get(b"slow")))
    # half a period after the next beat: a hiccup of the test's process up to 40 ms either
    # way leaves every answer late, and late by less than a period
    heart = ScriptedHeart(monitor.ping_addr, monitor.pong_addr, b"slow", lambda n: 1.5 * period)
    try:
        wait_until(lambda: heart.answered >= 15, timeout=10)
    finally:
        heart.stop()
    assert b"slow" in monitor.registered
    assert b"slow" not in monitor.failed
    assert monitor.ledger.counters.late_pongs >= 10
    assert monitor.ledger.counters.on_time_pongs == 0
    lateness = [late for late in late_seen if late is not None]
    assert lateness and all(0 < late < period for late in lateness)


def test_bad_input_is_counted_never_registered_and_the_monitor_keeps_beating(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=50)
    good = Heart(monitor.ping_addr, monitor.pong_addr, heart_id=b"good")
    good.start()
    garbage = dealer(monitor.pong_addr, b"garbage")
    oversized = dealer(monitor.pong_addr, b"oversized")
    try:
        wait_until(lambda: b"good" in monitor.hearts)
        before = monitor.ledger.counters
        stale = str(monitor.last_ping - 1).encode()
        garbage.send(stale)
        garbage.send(b"\xff\x00 not a ping")
        garbage.send_multipart([b"three", b"frames"])
        oversized.send(b"1" * 1_000_000)
        # and what a socket cannot deliver, handed to the monitor directly
        monitor.handle_pong([b"one frame"])
        monitor.handle_pong([])
        monitor.handle_pong([b"", str(monitor.lifetime).encode()])
        monitor.handle_pong([b"direct", b"2" * 1_000_000])
        wait_until(
            lambda: (
                monitor.ledger.counters.stale_pongs - before.stale_pongs >= 2
                and monitor.ledger.counters.malformed_pongs - before.malformed_pongs >= 5
            )
        )
        beats = monitor.ledger.counters.beats
        wait_until(lambda: monitor.ledger.counters.beats >= beats + 3)
    finally:
        good.stop()
        close_sockets(garbage, oversized)
    assert monitor.ledger.counters.stale_pongs - before.stale_pongs == 2
    assert monitor.ledger.counters.malformed_pongs - before.malformed_pongs == 5
    assert set(monitor.registered) == {b"good"}
    assert not monitor.failed


def test_beats_keep_a_fixed_schedule_despite_work_in_handlers(make_monitor):
    period, beats = 0.1, 30
    monitor = make_monitor(period=period * 1000)
    times: list[float] = []
    done = gevent.event.Event()

    def on_beat(beat):
        times.append(beat.at)
        time.sleep(period / 10)  # work that a sleep-after-work loop would add to every period
        if len(times) == beats:
            done.set()

    monitor.add_beat_handler(on_beat)
    assert done.wait(timeout=30)
    # On the grid the last beat is due (beats - 1) periods after the first; a loop that
    # slept a period after its work would be 10 ms later every beat, 290 ms in all.
    elapsed = times[beats - 1] - times[0]
    assert abs(elapsed - (beats - 1) * period) < 0.1


def live_greenlets() -> list[gevent.Greenlet]:
    return [obj for obj in gc.get_objects() if isinstance(obj, gevent.Greenlet) and not obj.dead]


def test_stop_leaves_no_greenlet_running_and_no_descriptor_open():
    def cycle() -> None:
        with (
            HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=10) as monitor,
            Heart(monitor.ping_addr, monitor.pong_addr, heart_id=b"cycler"),
        ):
            wait_until(lambda: b"cycler" in monitor.hearts)

    cycle()  # the shared context and its I/O thread are made once, on first use
    gc.collect()
    fds, greenlets = open_descriptors(), len(live_greenlets())
    for _ in range(50):
        cycle()
    # libzmq closes sockets on its own reaper thread, a moment after close() returns
    wait_until(lambda: open_descriptors() <= fds, timeout=10)
    gc.collect()
    assert len(live_greenlets()) == greenlets


def test_stop_is_idempotent_and_a_stopped_monitor_cannot_restart():
    monitor = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=10)
    monitor.start()
    with pytest.raises(RuntimeError):
        monitor.start()
    monitor.stop()
    monitor.stop()
    assert monitor.pingstream.closed and monitor.pongstream.closed
    with pytest.raises(RuntimeError):
        monitor.start()


def test_a_handler_that_raises_is_logged_and_stops_nothing(make_monitor, caplog):
    monitor = make_monitor(period=20)
    seen = []

    def broken(heart):
        raise RuntimeError("handler bug")

    monitor.add_new_heart_handler(broken)
    monitor.add_new_heart_handler(seen.append)
    with Heart(monitor.ping_addr, monitor.pong_addr, heart_id=b"h1"):
        wait_until(lambda: seen == [b"h1"])
        beats = monitor.ledger.counters.beats
        wait_until(lambda: monitor.ledger.counters.beats >= beats + 3)
    assert monitor.handler_errors == 1
    assert "handler bug" in caplog.text
    monitor.remove_new_heart_handler(broken)
    with pytest.raises(ValueError):
        monitor.remove_new_heart_handler(broken)
    with pytest.raises(TypeError):
        monitor.add_heart_failure_handler("not callable")


def test_a_failure_handler_may_stop_the_monitor():
    monitor = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=20)
    stopped = gevent.event.Event()

    def stop_on_failure(heart):
        monitor.stop()
        stopped.set()

    monitor.add_heart_failure_handler(stop_on_failure)
    with monitor:
        heart = Heart(monitor.ping_addr, monitor.pong_addr, heart_id=b"last")
        heart.start()
        wait_until(lambda: b"last" in monitor.hearts)
        heart.stop()
        assert stopped.wait(timeout=5)
        assert monitor.join(timeout=5)  # every greenlet of the monitor ended
    assert not monitor.running and monitor.pongstream.closed


def test_a_heart_restarted_with_its_identity_is_heard_again(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=20)
    with Heart(monitor.ping_addr, monitor.pong_addr, heart_id=b"phoenix") as heart:
        wait_until(lambda: b"phoenix" in monitor.hearts)
    wait_until(lambda: b"phoenix" in monitor.failed)
    heart.start()
    try:
        wait_until(lambda: len(monitor.registered[b"phoenix"]) == 2)
    finally:
        heart.stop()


def test_a_new_connection_takes_over_an_identity_from_a_stale_one(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=20, max_misses=1)
    hung = []
    old = ScriptedHeart(
        monitor.ping_addr, monitor.pong_addr, b"twin", lambda n: None if hung else 0
    )
    wait_until(lambda: b"twin" in monitor.hearts)
    # the old heart hangs with its connection still open, as a frozen process would
    hung.append(True)
    new = Heart(monitor.ping_addr, monitor.pong_addr, heart_id=b"twin")
    new.start()
    try:
        beats = monitor.ledger.counters.beats
        wait_until(lambda: monitor.ledger.counters.beats >= beats + 10)
    finally:
        new.stop()
        old.stop()
    assert b"twin" not in monitor.failed


def test_sockets_are_checked_where_they_enter():
    context = default_context()
    ping, pong = context.socket(zmq.PUB), context.socket(zmq.ROUTER)
    plain = zmq.Context.instance().socket(zmq.PUB)
    try:
        with pytest.raises(ValueError, match="ROUTER"):
            HeartMonitor(ping, ping)
        with pytest.raises(TypeError, match=r"zmq\.green"):
            HeartMonitor(plain, pong)
        with pytest.raises(ValueError):
            HeartMonitor(ping, pong, period=0)
        monitor = HeartMonitor(ping, pong, period="250")
        assert monitor.period == 250.0
        monitor.stop()
        assert not ping.closed  # the caller's sockets stay the caller's
    finally:
        close_sockets(ping, pong, plain)


def test_heart_identities():
    assert len(Heart("inproc://a", "inproc://b").id) == 16  # a random uuid
    assert Heart("inproc://a", "inproc://b", heart_id="engine-1").id == b"engine-1"
    for bad in (b"", b"\x00reserved", b"x" * 256):
        with pytest.raises(ValueError):
            Heart("inproc://a", "inproc://b", heart_id=bad)


def test_a_beat_first_reads_the_pongs_already_queued():
    monitor = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=1000)
    early = dealer(monitor.pong_addr, b"early")
    try:
        early.send(str(monitor.lifetime).encode())  # answers the first ping, never sent here
        queued = zmq.green.Poller()
        queued.register(monitor.pongstream, zmq.POLLIN)
        assert queued.poll(5000), "the pong never reached the monitor's socket"
        # nothing has read the socket: only the beat itself can count this pong
        assert monitor.beat().new_hearts == (b"early",)
    finally:
        close_sockets(early)
        monitor.stop()


@pytest.mark.timeout(20)
def test_one_status_holds_every_count_a_report_reads(make_monitor):
    monitor = make_monitor(period=50, max_misses=2)
    with Heart(monitor.ping_addr, monitor.pong_addr, heart_id=b"counted"):
        wait_until(lambda: monitor.hearts == {b"counted"})
        status = monitor.status()
    assert status.running and (
        status.heart_count,
        status.probation_count,
        status.suspect_count,
    ) == (1, 0, 0)
    assert status.counters.new_hearts == 1 and status.counters.beats >= 1
    assert (status.stalls, status.busy_beats, status.behind_beats) == (0, 0, 0)
    assert not status.refusing_connections and status.refused_peers == {}


@pytest.mark.timeout(20)
def test_a_stopped_monitors_status_says_so(make_monitor):
    monitor = make_monitor(period=50)
    monitor.stop()
    assert not monitor.status().running


def test_a_callers_green_router_goes_quiet_while_the_monitor_reads_it_and_works_after():
    ping, pong = callers_sockets()
    try:
        monitor = HeartMonitor(ping, pong, period=30)
        with monitor:
            with Heart(monitor.ping_addr, monitor.pong_addr, heart_id="a"):
                wait_until(lambda: monitor.hearts == {b"a"})
                # the green wrapper's watcher would run a callback at every edge, for nothing
                assert not pong._state_event.active
            wait_until(lambda: monitor.ledger.counters.failed_left == 1)  # its leave, read
        assert pong._state_event.active
        with dealer(monitor.pong_addr, b"caller") as peer:  # the caller's again, green
            peer.send(b"hello")
            with gevent.Timeout(5):
                assert pong.recv_multipart() == [b"caller", b"hello"]
    finally:
        close_sockets(ping, pong)


def listen_queue(socket: zmq.Socket) -> int:
    """How many new connections the kernel queues for the socket's TCP listener: for a
    listener, tcp_info's tcpi_sacked."""
    with listener_of(socket) as found:
        assert found is not None
        info = found.getsockopt(_socket.IPPROTO_TCP, _socket.TCP_INFO, 104)
        return int(struct.unpack_from("I", info, 28)[0])


def capped(backlog: int) -> int:
    """What the kernel makes of a backlog: at most net.core.somaxconn."""
    with open("/proc/sys/net/core/somaxconn") as somaxconn:
        return min(backlog, int(somaxconn.read()))


def test_a_callers_sockets_listen_with_the_backlog_bind_gives(caplog):
    ping, pong = callers_sockets()
    try:
        assert {listen_queue(ping), listen_queue(pong)} == {100}  # ZeroMQ's
        with caplog.at_level(logging.INFO, logger="greenheart.monitor"):
            HeartMonitor(ping, pong, period=1000)
        assert {listen_queue(ping), listen_queue(pong)} == {capped(LISTEN_BACKLOG)}
        assert caplog.text.count("listener now queues 4096 connections, not 100") == 2
        assert "WARNING" not in caplog.text
    finally:
        close_sockets(ping, pong)


def test_a_short_backlog_the_monitor_cannot_lengthen_is_warned_of(caplog, monkeypatch):
    monkeypatch.setattr("greenheart.green.monitor.sockets.raise_listen_backlog", lambda *_: False)
    ping, pong = callers_sockets()
    try:
        with caplog.at_level(logging.WARNING, logger="greenheart.monitor"):
            HeartMonitor(ping, pong, period=1000)
        for role in ("ping", "pong"):
            assert f"the {role} socket listens with a backlog of 100" in caplog.text
    finally:
        close_sockets(ping, pong)


def test_a_long_enough_backlog_is_left_alone(caplog):
    ping, pong = callers_sockets(backlog=LISTEN_BACKLOG + 1)
    try:
        with caplog.at_level(logging.INFO, logger="greenheart.monitor"):
            HeartMonitor(ping, pong, period=1000)
        assert "listen" not in caplog.text
        assert {listen_queue(ping), listen_queue(pong)} == {capped(LISTEN_BACKLOG + 1)}
    finally:
        close_sockets(ping, pong)


def test_a_bound_monitor_listens_with_a_long_backlog():
    with HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=1000) as monitor:
        for socket in (monitor.pingstream, monitor.pongstream):
            assert listen_queue(socket) == capped(LISTEN_BACKLOG)


def test_an_ipc_listener_is_found_and_an_inproc_socket_has_none(tmp_path):
    context = default_context()
    ipc, inproc = context.socket(zmq.ROUTER), context.socket(zmq.ROUTER)
    try:
        for socket, address in ((ipc, f"ipc://{tmp_path}/pongs"), (inproc, "inproc://pongs-x")):
            socket.linger = 0
            socket.bind(address)
        assert raise_listen_backlog(ipc, LISTEN_BACKLOG)
        assert not raise_listen_backlog(inproc, LISTEN_BACKLOG)
    finally:
        close_sockets(ipc, inproc)


def test_the_judging_settings_are_one_rules_and_read_only():
    monitor = HeartMonitor.bind(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", max_misses=2, mass_silence=None
    )
    try:
        assert monitor.rules == Rules(max_misses=2, mass_silence=None)
        for name, value in [
            ("max_misses", 3),
            ("period", 10.0),
            ("mass_silence", MassSilence()),
            ("rules", Rules()),
        ]:
            with pytest.raises(attrs.exceptions.FrozenAttributeError):
                setattr(monitor, name, value)
        assert monitor.rules == Rules(max_misses=2, mass_silence=None)
    finally:
        monitor.stop()
    with pytest.raises(ValueError):  # checked where they enter, as Rules checks them
        HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", max_misses=-1)


def test_failure_handlers_of_either_kind_are_called_in_the_order_they_were_added():
    from greenheart import Cause, Failure

    monitor = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0")
    try:
        calls = []
        first, second = (lambda heart: calls.append(("heart", heart))), calls.append
        monitor.add_heart_failure_handler(first)
        monitor.add_failure_handler(second)
        monitor.add_heart_failure_handler(lambda heart: calls.append(("again", heart)))
        failure = Failure(b"x", Cause.MISSED, 1.0, 1, 2, None, None, None, None, True, 0.0, None, 1)
        monitor.handle_heart_failure(b"x", failure)
        assert calls == [("heart", b"x"), failure, ("again", b"x")]
        monitor.remove_failure_handler(second)
        with pytest.raises(ValueError):  # it takes the certificate: not a heart-failure handler
            monitor.remove_heart_failure_handler(second)
        monitor.remove_heart_failure_handler(first)
        calls.clear()
        monitor.handle_heart_failure(b"x", failure)
        assert calls == [("again", b"x")]
    finally:
        monitor.stop()
