"""Faults: a stalled monitor, floods, garbage, restarts, paused hearts. The monitor must not
lie (no false failures), must not be fooled (nothing registered from garbage) and must not
fall over; and every heart's events come exactly once, in order."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import sys
import time

import gevent
import pytest
import zmq
import zmq.green
from gevent import subprocess

from greenheart import Heart, HeartMonitor, UsageError
from greenheart.core.phi import PhiAccrual
from greenheart.fleet import HeartFleet
from greenheart.green.sockets import close_sockets
from tests.helpers import RecordingMonitor, dealer, wait_until


def start_hearts(monitor: HeartMonitor, count: int, prefix: str = "real") -> list[Heart]:
    hearts = [
        Heart(monitor.ping_addr, monitor.pong_addr, heart_id=f"{prefix}-{n}") for n in range(count)
    ]
    for heart in hearts:
        heart.start()
    wait_until(lambda: {heart.id for heart in hearts} <= monitor.hearts)
    return hearts


def stop_hearts(hearts: list[Heart]) -> None:
    for heart in hearts:
        heart.stop()


def beats_seen(monitor: HeartMonitor, count: int, timeout: float = 10.0) -> list:
    beats: list = []
    monitor.add_beat_handler(beats.append)
    wait_until(lambda: len(beats) >= count, timeout=timeout)
    return beats


def test_a_hub_blocked_for_five_periods_fails_no_heart(make_monitor, caplog):
    period = 0.1
    # max_misses=0: a heart fails at its first miss, so a single wrongly judged beat shows
    monitor = make_monitor(RecordingMonitor, period=period * 1000, max_misses=0)
    hearts = start_hearts(monitor, 5)
    try:
        blocked = []

        def block_once(beat):
            # Right after a ping went out, before any heart in this process could answer it:
            # time.sleep holds the whole hub, as CPU-bound code or a GIL-holding call would.
            if not blocked:
                blocked.append(beat.number)
                time.sleep(5 * period)

        monitor.add_beat_handler(block_once)
        with caplog.at_level(logging.WARNING, logger="greenheart.monitor"):
            beats = beats_seen(monitor, 10)
        assert blocked and monitor.failed == {}
        assert monitor.hearts == {heart.id for heart in hearts}
        stalled = [beat for beat in beats if not beat.judged]
        assert len(stalled) == 1 and stalled[0].lag >= 4 * period
        assert monitor.stalls == 1
        assert any("monitor stalled" in record.getMessage() for record in caplog.records)
        # and the next round was a whole period long, not what was left of a lost slot
        after = beats.index(stalled[0]) + 1
        assert beats[after].at - stalled[0].at >= period * 0.9
    finally:
        stop_hearts(hearts)


FLOODER = """
import sys, zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB); sub.setsockopt(zmq.SUBSCRIBE, b""); sub.connect(sys.argv[1])
out = ctx.socket(zmq.DEALER); out.setsockopt(zmq.IDENTITY, b"flood"); out.connect(sys.argv[2])
ping = sub.recv()
print("flooding", flush=True)
while True:
    for _ in range(100):
        out.send(ping)  # blocks when the monitor's queue for this peer is full
    while sub.poll(0):
        ping = sub.recv()
"""


def test_a_flood_from_one_peer_neither_starves_the_beat_nor_stops_judging(make_monitor):
    period = 0.05
    monitor = make_monitor(RecordingMonitor, period=period * 1000, max_misses=1)
    hearts = start_hearts(monitor, 10)
    flooder = subprocess.Popen(
        [sys.executable, "-c", FLOODER, monitor.ping_addr, monitor.pong_addr],
        stdout=subprocess.PIPE,
    )
    try:
        assert flooder.stdout.readline() == b"flooding\n"
        wait_until(lambda: monitor.ledger.counters.bad_pongs > 20_000, timeout=20)
        victim = hearts.pop()
        stopped_at = time.monotonic()
        victim.kill()
        wait_until(lambda: victim.id in monitor.failed, timeout=5)
        # it was found out in time, though thousands of repeats arrive every period
        assert monitor.failed[victim.id][0] - stopped_at <= 3 * period + 0.1
        beats = beats_seen(monitor, 20)
        assert all(beat.judged for beat in beats)
        assert all(len(beat.rtts) <= len(hearts) + 1 for beat in beats)
        assert all(beat.bad_pongs > 0 for beat in beats[1:])
        assert set(monitor.failed) - {b"flood"} == {victim.id}
        assert {heart.id for heart in hearts} <= monitor.hearts
    finally:
        flooder.kill()
        flooder.wait()
        stop_hearts(hearts)
    monitor.assert_events_alternate()


def test_hearts_beyond_max_hearts_are_refused_until_there_is_room(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=50, max_misses=0, max_hearts=3)
    hearts = [Heart(monitor.ping_addr, monitor.pong_addr, heart_id=f"h-{n}") for n in range(5)]
    try:
        for heart in hearts:
            heart.start()
        wait_until(lambda: monitor.ledger.counters.refused_hearts >= 10)
        assert len(monitor.hearts) == 3
        admitted = sorted(monitor.hearts)
        waiting = sorted({heart.id for heart in hearts} - monitor.hearts)
        next(heart for heart in hearts if heart.id == admitted[0]).stop()
        wait_until(lambda: admitted[0] in monitor.failed)
        wait_until(lambda: len(monitor.hearts) == 3 and monitor.hearts & set(waiting))
    finally:
        stop_hearts(hearts)
    monitor.assert_events_alternate()


def test_round_trips_per_heart(make_monitor):
    monitor = make_monitor(period=20)
    (heart,) = start_hearts(monitor, 1)
    try:
        wait_until(
            lambda: (
                (monitor.ledger.round_trips(heart.id) or ())
                and monitor.ledger.round_trips(heart.id).count >= 5
            )
        )
        trips = monitor.ledger.round_trips(heart.id)
        assert 0 < trips.last <= trips.max and 0 < trips.mean <= trips.max < 0.02
        assert monitor.ledger.round_trips(b"nobody") is None
        assert monitor.ledger.suspicion(heart.id, monitor.clock()) is None  # no phi detector
    finally:
        heart.stop()


def test_phi_accrual_fails_a_killed_heart_and_spares_the_rest(make_monitor):
    period = 0.05
    # mean interval 50 ms + 100 ms of acceptable pause, spread at least 50 ms: phi passes 8
    # about 0.41 s after the last answer
    detector = PhiAccrual(threshold=8, min_std_deviation=0.05, acceptable_pause=2 * period)
    monitor = make_monitor(RecordingMonitor, period=period * 1000, phi=detector)
    hearts = start_hearts(monitor, 3)
    try:
        beats_seen(monitor, 10)
        victim = hearts.pop()
        assert monitor.ledger.suspicion(victim.id, monitor.clock()) < 3
        stopped_at = time.monotonic()
        victim.kill()
        wait_until(lambda: victim.id in monitor.failed, timeout=5)
        assert 0.3 <= monitor.failed[victim.id][0] - stopped_at <= 0.6
        assert set(monitor.failed) == {victim.id}
    finally:
        stop_hearts(hearts)


def rebind(ping_addr: str, pong_addr: str, period: float = 50) -> RecordingMonitor:
    """A new monitor on the addresses of one just stopped, once ZeroMQ has let go of them."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return RecordingMonitor.bind(ping_addr, pong_addr, period=period)
        except UsageError:  # the address is still in use
            if time.monotonic() > deadline:
                raise
            gevent.sleep(0.01)


def test_a_restarted_monitor_hears_every_heart_again():
    first = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=50)
    first.start()
    ping_addr, pong_addr = first.ping_addr, first.pong_addr
    hearts = start_hearts(first, 5)
    fleet = HeartFleet(ping_addr, pong_addr, size=50, prefix="restart")
    fleet.start()
    second = None
    try:
        wait_until(lambda: len(first.hearts) == 55)
        first.stop()
        second = rebind(ping_addr, pong_addr)
        second.start()
        wait_until(lambda: len(second.hearts) == 55, timeout=15)
        assert second.hearts == {heart.id for heart in hearts} | set(fleet.ids)
        second.assert_events_alternate()
    finally:
        fleet.stop()
        stop_hearts(hearts)
        if second is not None:
            second.stop()


def test_after_a_five_second_outage_every_heart_is_back_within_three_periods():
    period = 0.2
    first = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=period * 1000)
    first.start()
    ping_addr, pong_addr = first.ping_addr, first.pong_addr
    hearts = start_hearts(first, 3)
    fleet = HeartFleet(ping_addr, pong_addr, size=100, prefix="outage")
    fleet.start()
    second = None
    try:
        wait_until(lambda: len(first.hearts) == 103, timeout=15)
        first.stop()
        # the hearts retry all along, as real ones do (with the fleet's old 2 s backoff its
        # hearts would be back 1.6 s after the new monitor, at their attempt of 7.1 s)
        gevent.sleep(5.5)
        second = rebind(ping_addr, pong_addr, period=period * 1000)
        beats = beats_seen_from_start(second)
        wait_until(lambda: len(second.hearts) == 103, timeout=15)
        last = max(times[0] for times in second.registered.values())
        assert last - beats[0].at <= 3 * period
    finally:
        fleet.stop()
        stop_hearts(hearts)
        if second is not None:
            second.stop()


def beats_seen_from_start(monitor: HeartMonitor) -> list:
    """Start ``monitor``; the list every one of its beats will be added to."""
    beats: list = []
    monitor.add_beat_handler(beats.append)
    monitor.start()
    return beats


def test_hearts_of_a_paused_process_fail_and_come_back(make_monitor):
    """Without the mass-silence rule (tests/test_mass_silence.py has it on: the same pause is
    held first), most hearts silent at once fail as one would."""
    period = 0.05
    monitor = make_monitor(RecordingMonitor, period=period * 1000, max_misses=1, mass_silence=None)
    steady = start_hearts(monitor, 2, prefix="steady")
    fleet = subprocess.Popen(
        [sys.executable, "-m", "greenheart", "fleet", "--ping", monitor.ping_addr,
         "--pong", monitor.pong_addr, "--size", "20", "--prefix", "paused"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    paused = {f"paused-{n}".encode() for n in range(20)}
    try:
        wait_until(lambda: paused <= monitor.hearts, timeout=15)
        os.kill(fleet.pid, signal.SIGSTOP)  # the network to these hearts goes quiet
        stopped_at = time.monotonic()
        wait_until(lambda: paused <= monitor.failed.keys(), timeout=5)
        assert max(monitor.failed[heart][0] for heart in paused) - stopped_at <= 3 * period + 0.1
        os.kill(fleet.pid, signal.SIGCONT)
        wait_until(lambda: all(len(monitor.registered[heart]) == 2 for heart in paused), timeout=5)
        assert not any(heart.id in monitor.failed for heart in steady)
    finally:
        os.kill(fleet.pid, signal.SIGCONT)
        fleet.terminate()
        fleet.wait()
        stop_hearts(steady)
    monitor.assert_events_alternate()


#: frames worth trying on a monitor: near-pings, oversized, empty, binary
AWKWARD_FRAMES = [b"", b"0.0", b"1e308", b"nan", b"-1", b"\x00" * 64, b"x" * 65, b"y" * 2000]


def garbage(rng: random.Random) -> list[bytes]:
    """A message of 1 to 4 frames, each random bytes, random text or an awkward frame."""

    def frame() -> bytes:
        kind = rng.randrange(3)
        if kind == 0:
            return rng.randbytes(rng.randint(0, 40))
        if kind == 1:
            return "".join(chr(rng.randint(32, 0x2FF)) for _ in range(rng.randint(0, 20))).encode()
        return rng.choice(AWKWARD_FRAMES)

    return [frame() for _ in range(rng.randint(1, 4))]


@pytest.mark.parametrize("fail_on_disconnect", [False, True])
def test_ten_thousand_garbage_messages_register_nobody_and_harm_no_heart(
    make_monitor, fail_on_disconnect
):
    # the raw bytes below include some that libzmq reads as ZMTP 1.0 messages, for which it
    # knows no source descriptor: the monitor must not die asking for it
    monitor = make_monitor(
        RecordingMonitor, period=50, max_misses=1, fail_on_disconnect=fail_on_disconnect
    )
    hearts = start_hearts(monitor, 5)
    senders = [dealer(monitor.pong_addr, b"garbage-%d" % n) for n in range(3)]
    anonymous = zmq.green.Context.instance().socket(zmq.DEALER)  # ZeroMQ makes up its identity
    anonymous.linger = 0
    anonymous.connect(monitor.pong_addr)
    senders.append(anonymous)
    host, port = monitor.pong_addr.removeprefix("tcp://").rsplit(":", 1)
    raw = socket.create_connection((host, int(port)))
    rng = random.Random(20261203)
    sent = 0
    deadline = time.monotonic() + 30
    try:
        # Connections dropped for an oversized frame lose what they had queued, so how much
        # of the garbage arrives varies: go on until enough of it has been counted.
        while sent < 10_000 or monitor.ledger.counters.bad_pongs <= 1_000:
            assert time.monotonic() < deadline, (
                f"{monitor.ledger.counters.bad_pongs} bad pongs counted"
            )
            for _ in range(100):
                with contextlib.suppress(zmq.Again):  # the monitor's queue for it is full
                    rng.choice(senders).send_multipart(garbage(rng), zmq.NOBLOCK)
                    sent += 1
            try:
                raw.send(rng.randbytes(64))  # and bytes that are not ZeroMQ at all
            except OSError:  # ZeroMQ hung up on them; come back
                raw.close()
                raw = socket.create_connection((host, int(port)))
            gevent.sleep(0.001)
        beats_seen(monitor, 3)
        assert monitor.hearts == {heart.id for heart in hearts}
        assert monitor.failed == {}
        assert monitor.ledger.counters.bad_pongs > 1_000
        assert monitor.running
    finally:
        raw.close()
        close_sockets(*senders)
        stop_hearts(hearts)
    monitor.assert_events_alternate()


def test_handlers_that_raise_do_not_lose_events(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=30, max_misses=0)

    def explode(*args):
        raise RuntimeError("a handler bug")

    monitor.add_new_heart_handler(explode)
    monitor.add_heart_failure_handler(explode)
    monitor.add_beat_handler(explode)
    hearts = start_hearts(monitor, 3)
    stop_hearts(hearts)
    wait_until(lambda: len(monitor.failed) == 3)
    hearts = start_hearts(monitor, 3)
    stop_hearts(hearts)
    wait_until(lambda: all(len(times) == 2 for times in monitor.failed.values()))
    assert monitor.handler_errors >= 12 and monitor.running
    monitor.assert_events_alternate()
