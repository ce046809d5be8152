"""HeartFleet against real monitors on loopback."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import gevent
import pytest
import zmq
import zmq.green
from gevent import subprocess

from greenheart import TooManyHearts
from greenheart.fleet import Behaviour, Churn, Delay, Die, Flap, HeartFleet, Revive
from greenheart.green.delays import DelayQueue
from greenheart.green.limits import open_descriptors
from greenheart.green.sockets import close_sockets, default_context
from tests.helpers import RecordingMonitor, settled_descriptors, wait_until


@pytest.fixture
def monitor(make_monitor) -> RecordingMonitor:
    return make_monitor(RecordingMonitor, period=50, max_misses=1)


def test_grow_shrink_kill_and_revive_are_seen_by_a_monitor(monitor):
    with HeartFleet(monitor.ping_addr, monitor.pong_addr, size=10, prefix="f") as fleet:
        assert len(fleet.ids) == 10 and fleet.alive == fleet.ids
        wait_until(lambda: monitor.hearts == set(fleet.ids))

        victims = list(fleet.ids[2:4])
        fleet.kill(victims)
        assert fleet.dead == tuple(victims)
        wait_until(lambda: set(victims) <= set(monitor.failed))
        assert set(monitor.failed) == set(victims)
        assert not fleet.counters(victims[0]).alive

        fleet.revive(victims)
        wait_until(lambda: all(len(monitor.registered[v]) == 2 for v in victims))
        assert fleet.dead == () and fleet.counters(victims[0]).alive

        grown = fleet.grow(3)
        assert grown == [b"f-10", b"f-11", b"f-12"] and len(fleet.ids) == 13
        wait_until(lambda: set(grown) <= monitor.hearts)

        assert fleet.shrink(3) == grown
        wait_until(lambda: set(grown) <= set(monitor.failed))
        assert monitor.hearts == set(fleet.ids)
        status = fleet.status()
        assert status.heart_count == status.alive_count == 10 and status.pongs > 0

        with pytest.raises(KeyError):
            fleet.kill([b"not-in-this-fleet"])


def run_seeded(seed: int) -> tuple[list[tuple[bytes, int, float | None]], dict[bytes, int]]:
    """Send 30 pings to a fleet of 20 with loss and delays; what it decided, and what arrived."""
    context = default_context()
    pub, router = context.socket(zmq.XPUB), context.socket(zmq.ROUTER)
    for socket in (pub, router):
        socket.linger = 0
        socket.bind("tcp://127.0.0.1:0")
    decisions: list[tuple[bytes, int, float | None]] = []
    arrived: dict[bytes, int] = {}
    behaviour = Behaviour(seed=seed, loss=0.3, delay=Delay.parse("uniform:1:5"))
    fleet = HeartFleet(
        pub.getsockopt_string(zmq.LAST_ENDPOINT),
        router.getsockopt_string(zmq.LAST_ENDPOINT),
        size=20,
        behaviour=behaviour,
        prefix="seeded",
        on_decision=lambda *decision: decisions.append(decision),
        answer_every_ping=True,  # the 30 pings come at once: every one is to be decided
    )
    try:
        with fleet:
            pub.recv()  # the fleet's subscription: from now on it hears every ping
            for n in range(30):
                pub.send(b"ping %d" % n)
            wait_until(lambda: fleet.status().fleet_pings == 30 and fleet.status().pending == 0)
            status = fleet.status()
            sent = status.pongs
            while sum(arrived.values()) < sent:
                with gevent.Timeout(5):
                    heart, _ = router.recv_multipart()
                arrived[heart] = arrived.get(heart, 0) + 1
            assert status.pongs + status.unsent + status.dropped == 20 * 30
            assert status.dropped == sum(delay is None for *_, delay in decisions)
    finally:
        close_sockets(pub, router)
    return decisions, arrived


def test_a_seeded_run_drops_and_delays_the_same_pongs_twice():
    first, arrived = run_seeded(seed=11)
    again, _ = run_seeded(seed=11)
    other, _ = run_seeded(seed=12)
    assert len(first) == 20 * 30
    assert first == again
    assert first != other
    drops = sum(delay is None for *_, delay in first)
    assert 0.2 < drops / len(first) < 0.4
    assert all(0.001 <= delay <= 0.005 for *_, delay in first if delay is not None)
    assert set(arrived) <= {b"seeded-%d" % n for n in range(20)}


def test_an_impossible_size_is_refused_before_anything_opens():
    fds = settled_descriptors()  # what earlier tests closed may still be closing
    fleet = HeartFleet("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", size=50_000)
    with pytest.raises(TooManyHearts, match=r"open-file limit at \d+ .* at most \d+ fit"):
        fleet.start()
    assert open_descriptors() == fds
    with pytest.raises(TooManyHearts, match="a fleet of 50000 hearts"):
        fleet.start()  # nothing changed, so it is refused again the same way
    assert open_descriptors() == fds


def test_stopping_a_2000_heart_fleet_leaves_no_descriptors(make_monitor):
    monitor = make_monitor(period=200, max_misses=10)
    fds = open_descriptors()
    fleet = HeartFleet(monitor.ping_addr, monitor.pong_addr, size=2000)
    fleet.start()
    try:
        # 2 descriptors a heart in the fleet, and 1 for the monitor's end of each connection
        wait_until(lambda: len(monitor.hearts) == 2000, timeout=20)
        assert open_descriptors() - fds <= 3 * 2000 + 10
    finally:
        fleet.stop()
    wait_until(lambda: open_descriptors() <= fds, timeout=10)
    # stopped, every heart said it leaves, and each leave was taken as one (counted by the
    # beat after it was read)
    wait_until(lambda: monitor.ledger.counters.failed_hearts == 2000, timeout=5)
    counters = monitor.ledger.counters
    assert (counters.failed_left, counters.failed_hearts, counters.bad_pongs) == (2000, 2000, 0)


def test_a_killed_heart_crashes_and_one_that_leaves_or_a_stopped_fleets_is_stopped(make_monitor):
    monitor = make_monitor(RecordingMonitor, period=200, max_misses=10, fail_on_disconnect=True)
    failures = []
    monitor.add_failure_handler(failures.append)
    fleet = HeartFleet(monitor.ping_addr, monitor.pong_addr, size=6, prefix="end").start()
    try:
        wait_until(lambda: monitor.hearts == set(fleet.ids), timeout=10)
        fleet.kill([b"end-0"])
        fleet.leave([b"end-1", b"end-2"])
        assert fleet.dead == (b"end-0", b"end-1", b"end-2")
        wait_until(lambda: len(failures) == 3)
        fleet.revive([b"end-1"])  # left, and back as a new heart
        wait_until(lambda: len(monitor.registered[b"end-1"]) == 2, timeout=5)
    finally:
        fleet.stop()
    wait_until(lambda: len(failures) == 7)
    verdicts = sorted((f.heart, f.cause.value, f.diagnosis.value) for f in failures)
    assert verdicts[0] == (b"end-0", "disconnected", "crashed")
    assert verdicts[1:] == [
        (heart, "left", "stopped")
        for heart in (b"end-1", b"end-1", b"end-2", b"end-3", b"end-4", b"end-5")
    ]
    monitor.assert_events_alternate()


def test_scripted_deaths_revivals_and_flapping(monitor):
    scenario = [Die(at=0.3, count=3), Revive(at=0.8, count=3), Flap(count=2, down=0.5, up=0.6)]
    with HeartFleet(
        monitor.ping_addr,
        monitor.pong_addr,
        size=10,
        behaviour=Behaviour(seed=5),
        scenario=scenario,
    ) as fleet:
        # 3 die and come back; 2 others fall silent for 10 periods at 0.6 s, then answer again
        wait_until(lambda: len(monitor.failed) == 5)
        wait_until(lambda: all(len(monitor.registered[heart]) == 2 for heart in monitor.failed))
        assert monitor.hearts == set(fleet.ids) and fleet.dead == ()
        assert fleet.status().dropped > 0  # the flappers' silence


def test_churn_replaces_hearts(monitor):
    with HeartFleet(
        monitor.ping_addr, monitor.pong_addr, size=6, scenario=[Churn(every=0.3, count=2)]
    ) as fleet:
        first = set(fleet.ids)
        wait_until(lambda: len(set(fleet.ids) - first) >= 4)
        assert len(fleet.ids) == 6
        wait_until(lambda: len(monitor.failed) >= 2)
        assert set(monitor.failed) <= first


def test_delays_wait_in_one_queue_not_a_greenlet_each():
    sent = []
    queue = DelayQueue(lambda item: sent.append(item))
    sender = gevent.spawn(queue.run)
    try:
        now = time.monotonic()
        for n in range(1000):
            queue.push(now + 0.05 - n * 0.00004, n)  # pushed latest first
        assert len(queue) == 1000
        wait_until(lambda: len(sent) == 1000)
        assert sent == sorted(sent, reverse=True)
    finally:
        sender.kill()


def test_hearts_killed_while_a_ping_is_being_fanned_out(make_monitor):
    # The fan-out yields every few hundred hearts; kills landing in between must not
    # break it (it once died on a killed heart's closed socket, silencing the whole fleet).
    monitor = make_monitor(period=50)
    with HeartFleet(monitor.ping_addr, monitor.pong_addr, size=1500) as fleet:
        wait_until(lambda: len(monitor.hearts) == 1500, timeout=15)
        pings = fleet.status().fleet_pings
        while fleet.status().fleet_pings < pings + 10:
            fleet.kill(fleet.alive[-2:])
            gevent.sleep(0.002)
        alive = set(fleet.alive)
        assert 500 < len(alive) < 1500
        wait_until(lambda: monitor.hearts == alive, timeout=10)


def test_a_fleet_that_fell_behind_answers_the_newest_ping_and_catches_up(make_monitor):
    monitor = make_monitor(period=50, max_misses=1000)
    beats: list = []
    monitor.add_beat_handler(beats.append)
    fleet = subprocess.Popen(
        [sys.executable, "-m", "greenheart", "fleet", "--ping", monitor.ping_addr,
         "--pong", monitor.pong_addr, "--size", "300", "--prefix", "behind", "--json",
         "--status-every", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: len(monitor.hearts) == 300, timeout=30)
        os.kill(fleet.pid, signal.SIGSTOP)  # a stolen core: 20 pings queue up in its SUB
        gevent.sleep(1.0)
        os.kill(fleet.pid, signal.SIGCONT)
        resumed = len(beats)
        # it skips the queued pings, answers the newest, and is on time again at once
        wait_until(lambda: any(b.on_time_pongs == 300 for b in beats[resumed + 1 :]), timeout=5)
        caught_up = next(n for n, b in enumerate(beats[resumed:]) if b.on_time_pongs == 300)
        assert caught_up <= 3
        with gevent.Timeout(10):
            for line in fleet.stdout:
                if json.loads(line)["skipped_pings"] > 0:
                    break
    finally:
        os.kill(fleet.pid, signal.SIGCONT)
        fleet.kill()
        fleet.wait()


def test_a_fleet_started_cold_against_a_fast_monitor_registers_every_heart(make_monitor):
    # 1,000 hearts at 20 ms ask for 50,000 pongs a second, more than a fleet sharing two cores
    # with its monitor can send: it falls behind while its connections open, and must catch up
    monitor = make_monitor(period=20, max_misses=1000)
    fleet = subprocess.Popen(
        [sys.executable, "-m", "greenheart", "fleet", "--ping", monitor.ping_addr,
         "--pong", monitor.pong_addr, "--size", "1000", "--prefix", "cold"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: len(monitor.hearts) == 1000, timeout=30)
    finally:
        fleet.kill()
        fleet.wait()


def test_hearts_with_a_ping_socket_each_answer_go_silent_die_and_come_back(monitor):
    fds = open_descriptors()
    fleet = HeartFleet(monitor.ping_addr, monitor.pong_addr, ping_per_heart=True, prefix="own")
    with fleet:
        joined = fleet.add_hearts([b"engine-a", b"engine-b", b"engine-c"])
        assert joined == [b"engine-a", b"engine-b", b"engine-c"]
        wait_until(lambda: monitor.hearts == set(joined))
        # each heart's SUB and DEALER (2 descriptors each), and the monitor's 2 connections a heart
        assert open_descriptors() - fds <= 3 * (4 + 2) + 10
        fleet.silence([b"engine-a"])  # hung: its connections stay up, it stops answering
        wait_until(lambda: b"engine-a" in monitor.failed)
        fleet.kill([b"engine-b"])  # its listening greenlet ends with its sockets
        wait_until(lambda: b"engine-b" in monitor.failed)
        fleet.revive([b"engine-b"])
        wait_until(lambda: len(monitor.registered[b"engine-b"]) == 2)
        assert b"engine-c" not in monitor.failed
        with pytest.raises(ValueError):
            fleet.add_hearts([b"engine-c"])  # already in the fleet
    wait_until(lambda: open_descriptors() <= fds, timeout=10)
