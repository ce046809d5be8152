"""fail_on_disconnect: a heart whose connection closes is failed at once, and only that heart;
and a heart that leaves (stopped cleanly) is failed at once, as left, with or without it."""

from __future__ import annotations

import os
import signal
import time

import gevent
import pytest
import zmq
import zmq.green

from greenheart import Cause, Heart
from greenheart.core.failures import Diagnosis
from greenheart.curve import ClientCurve, KeyPair, ServerCurve
from tests.helpers import RecordingMonitor, ScriptedHeart, heart_process, wait_beats, wait_until


@pytest.fixture
def monitor(make_monitor) -> RecordingMonitor:
    # a long period: whatever is failed within a fraction of it was not failed by a beat
    return make_monitor(RecordingMonitor, period=1000, max_misses=3, fail_on_disconnect=True)


def registered(monitor: RecordingMonitor, heart: Heart) -> None:
    wait_until(lambda: heart.id in monitor.hearts, timeout=10)


def test_a_killed_heart_is_failed_at_once_not_at_a_beat(monitor):
    heart = Heart(monitor.ping_addr, monitor.pong_addr, heart_id="closing")
    heart.start()
    registered(monitor, heart)
    beats = monitor.ledger.counters.beats
    stopped_at = time.monotonic()
    heart.kill()  # its DEALER closes without a word, and with it the connection
    wait_until(lambda: b"closing" in monitor.failed, timeout=2)
    assert monitor.failed[b"closing"][0] - stopped_at < 0.1
    assert monitor.ledger.counters.beats == beats  # no beat came in between
    assert b"closing" not in monitor.hearts
    assert (monitor.ledger.failures[-1].cause, monitor.ledger.failures[-1].diagnosis) == (
        Cause.DISCONNECTED, Diagnosis.CRASHED,
    )  # fmt: skip


def test_a_killed_process_is_failed_within_milliseconds(monitor):
    child = heart_process(monitor, "process")
    try:
        wait_until(lambda: b"process" in monitor.hearts, timeout=30)
        killed_at = time.monotonic()
        child.kill()
        wait_until(lambda: b"process" in monitor.failed, timeout=2)
        assert monitor.failed[b"process"][0] - killed_at < 0.25
    finally:
        child.kill()
        child.wait()


def test_a_hung_process_keeps_its_connection_and_is_failed_by_missed_beats(make_monitor):
    period, max_misses = 0.1, 1
    monitor = make_monitor(
        RecordingMonitor, period=period * 1000, max_misses=max_misses, fail_on_disconnect=True
    )
    child = heart_process(monitor, "hung")
    try:
        wait_until(lambda: b"hung" in monitor.hearts, timeout=30)
        os.kill(child.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        wait_until(lambda: b"hung" in monitor.failed, timeout=5)
        assert max_misses * period < monitor.failed[b"hung"][0] - stopped_at
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.kill()
        child.wait()


def test_a_descriptor_reused_by_a_new_connection_never_fails_its_new_heart(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=200, max_misses=3, fail_on_disconnect=True)
    for round_number in range(6):
        old = Heart(monitor.ping_addr, monitor.pong_addr, heart_id=f"old-{round_number}")
        old.start()
        registered(monitor, old)
        old.kill()
        if round_number % 2:
            # once libzmq closed the old connection, the kernel hands its descriptor (the
            # lowest free) to the next one; else the new one races the old one's close
            wait_until(lambda old=old: old.id in monitor.failed, timeout=2)
        new = Heart(monitor.ping_addr, monitor.pong_addr, heart_id=f"new-{round_number}")
        new.start()
        try:
            wait_until(lambda old=old: old.id in monitor.failed, timeout=2)
            registered(monitor, new)
            wait_beats(monitor, 2)
            assert new.id not in monitor.failed
        finally:
            new.stop()
    monitor.assert_events_alternate()


def test_the_heart_that_took_over_an_identity_is_not_failed_for_its_predecessor(monitor):
    hung = []
    old = ScriptedHeart(
        monitor.ping_addr, monitor.pong_addr, b"twin", lambda n: None if hung else 0
    )
    wait_until(lambda: b"twin" in monitor.hearts, timeout=10)
    hung.append(True)  # the old process hangs, its connection open

    def answers() -> int:
        trips = monitor.ledger.round_trips(b"twin")
        return trips.count if trips else 0

    before = answers()
    new = Heart(monitor.ping_addr, monitor.pong_addr, heart_id="twin")
    new.start()
    try:
        wait_until(lambda: answers() >= before + 2, timeout=10)  # the new one is heard
        old.stop()  # and then the old one's connection closes
        wait_until(lambda: answers() >= before + 4, timeout=10)
        assert b"twin" not in monitor.failed and b"twin" in monitor.hearts
    finally:
        new.stop()


def test_with_curve_a_stopped_heart_is_failed_at_once(make_monitor):
    server, keys = KeyPair.generate(), KeyPair.generate()
    monitor = RecordingMonitor.bind(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", curve=ServerCurve(server, {keys.public}),
        period=1000, max_misses=3, fail_on_disconnect=True,
    )  # fmt: skip
    monitor.start()
    heart = Heart(
        monitor.ping_addr,
        monitor.pong_addr,
        heart_id="sealed",
        curve=ClientCurve(server.public, keys),
    )
    try:
        heart.start()
        registered(monitor, heart)
        stopped_at = time.monotonic()
        heart.stop()  # its leave, under its key, on its connection
        wait_until(lambda: b"sealed" in monitor.failed, timeout=2)
        assert monitor.failed[b"sealed"][0] - stopped_at < 0.1
        assert monitor.ledger.failures[-1].cause is Cause.LEFT
    finally:
        heart.stop()
        monitor.stop()


def test_a_heart_that_reconnects_between_beats_is_failed_once_and_registered_once(monitor):
    heart = Heart(monitor.ping_addr, monitor.pong_addr, heart_id="phoenix")
    heart.start()
    registered(monitor, heart)
    beats = monitor.ledger.counters.beats
    heart.kill()
    heart.start()  # back under its identity, on a new connection, within the round
    try:
        wait_beats(monitor, 3)
        assert monitor.ledger.counters.beats - beats >= 3
        failures = len(monitor.failed.get(b"phoenix", []))
        registrations = len(monitor.registered[b"phoenix"])
        # failed when its old connection closed and registered again once it answered; or
        # neither, when its new connection answered before the old one's close was read
        assert (failures, registrations) in {(1, 2), (0, 1)}
        assert b"phoenix" in monitor.hearts
    finally:
        heart.stop()
    monitor.assert_events_alternate()


def test_without_the_option_a_killed_heart_waits_for_its_missed_beats_a_stopped_one_not(
    make_monitor,
):
    monitor = make_monitor(RecordingMonitor, period=200, max_misses=1)
    failures = []
    monitor.add_failure_handler(failures.append)
    killed, stopped = (
        Heart(monitor.ping_addr, monitor.pong_addr, heart_id=name) for name in ("patient", "gone")
    )
    for heart in (killed, stopped):
        heart.start()
        registered(monitor, heart)
    stopped_at = time.monotonic()
    stopped.stop()
    wait_until(lambda: b"gone" in monitor.failed, timeout=5)
    assert monitor.failed[b"gone"][0] - stopped_at < 0.1  # its leave, between beats
    killed_at = time.monotonic()
    killed.kill()
    wait_until(lambda: b"patient" in monitor.failed, timeout=5)
    assert monitor.failed[b"patient"][0] - killed_at > 0.2  # a miss, then a beat to fail it
    assert [(f.heart, f.cause.value, f.diagnosis.value) for f in failures] == [
        (b"gone", "left", "stopped"), (b"patient", "missed", "crashed"),
    ]  # fmt: skip


def test_what_a_connection_sent_before_it_closed_registers_nobody(monitor):
    """libzmq hands on what a connection had queued after it closed: a heart killed right
    after it answered must not be registered again by that answer (nor tied to a connection
    that is gone, to be failed for its missed beats later)."""
    context = zmq.green.Context.instance()
    pings = context.socket(zmq.SUB)
    pings.linger = 0
    pings.setsockopt(zmq.SUBSCRIBE, b"")
    pings.connect(monitor.ping_addr)
    with gevent.Timeout(10):
        ping = pings.recv()
    pings.close()
    # A plain (blocking) context, and sleeps that block the hub: the monitor reads nothing
    # until the ghost has connected, answered and closed, as a heart killed between two reads.
    plain = zmq.Context()
    ghost = plain.socket(zmq.DEALER)
    ghost.setsockopt(zmq.IDENTITY, b"ghost")
    ghost.connect(monitor.pong_addr)
    ghost.send(ping)
    time.sleep(0.3)  # the answer reaches the monitor's ROUTER
    ghost.close(linger=0)
    time.sleep(0.3)  # and so does the close
    stale = monitor.ledger.counters.stale_pongs
    wait_beats(monitor, 2)
    assert b"ghost" not in monitor.registered and b"ghost" not in monitor.hearts
    assert (
        monitor.ledger.counters.stale_pongs == stale + 1
    )  # counted, as an answer too late to count
    plain.term()


def test_hearts_whose_processes_stop_cleanly_leave_and_a_sigkilled_one_crashes(monitor):
    """``greenheart heart`` stops its heart on SIGTERM: each says it leaves before its process
    ends and its connection closes, and is failed at once as left, diagnosed stopped, however
    the monitor reads the leave and the close (settled in the order they came); the SIGKILLed
    one says nothing and crashed."""
    failures = []
    monitor.add_failure_handler(failures.append)
    names = [f"proc-{n}" for n in range(4)]
    children = [heart_process(monitor, name) for name in names]
    try:
        wait_until(lambda: {name.encode() for name in names} <= monitor.hearts, timeout=30)
        children[0].kill()
        for child in children[1:]:
            child.terminate()
        for child in children:
            child.wait(timeout=10)
        wait_until(lambda: len(failures) == 4, timeout=5)
        verdicts = {f.heart: (f.cause.value, f.diagnosis.value) for f in failures}
        assert verdicts == {
            b"proc-0": ("disconnected", "crashed"),
            **{name.encode(): ("left", "stopped") for name in names[1:]},
        }
        # their connections' closes, once read, failed nobody again
        wait_until(lambda: len(monitor.ledger.connections) == 0, timeout=5)
        assert len(failures) == 4 and monitor.ledger.counters.stale_pongs == 0
        monitor.assert_events_alternate()
    finally:
        for child in children:
            child.kill()
            child.wait()
