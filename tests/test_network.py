"""Hearts on other hosts (network namespaces, tests/hosts.py): a host that vanishes without a
FIN, one whose process is killed, one whose process is stopped; the monitor tells crashed,
hung and unreachable apart, and closes what a vanished host leaves behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import gevent
import pytest
import zmq

from greenheart import HeartMonitor
from greenheart.bench.proc import established
from greenheart.core.failures import Cause, Diagnosis
from greenheart.core.silence import MassSilence
from greenheart.core.transport import Keepalive
from greenheart.green.sockets import default_context
from greenheart.integrations.events import EventStream
from tests.helpers import wait_until
from tests.hosts import Host, hosts, needs_hosts

pytestmark = [needs_hosts, pytest.mark.subprocess, pytest.mark.timeout(90)]

PERIOD_MS = 200
MISSES = 2
#: the shortest transport timeout, so that a test waits seconds for it, not half a minute
TIMEOUT_S = 3.0


def _fleet(host: Host, monitor: HeartMonitor, gateway: str, size: int, prefix: str):
    ping = monitor.ping_addr.replace("0.0.0.0", gateway)
    pong = monitor.pong_addr.replace("0.0.0.0", gateway)
    return host.python(
        "-m", "greenheart", "fleet", "--ping", ping, "--pong", pong, "--size", str(size),
        "--prefix", prefix, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _established(monitor: HeartMonitor) -> int:
    """TCP connections the kernel holds established on the monitor's two ports."""
    return established(
        {int(addr.rsplit(":", 1)[1]) for addr in (monitor.ping_addr, monitor.pong_addr)}
    )


def _monitor(gateway: str, **settings: object) -> HeartMonitor:
    return HeartMonitor.bind(
        f"tcp://{gateway}:0",
        f"tcp://{gateway}:0",
        **{
            "period": PERIOD_MS,
            "max_misses": MISSES,
            "transport_timeout": TIMEOUT_S,
            "mass_silence": None,
            **settings,
        },
    )


def _hearts(prefix: str, size: int) -> set[bytes]:
    return {f"{prefix}-{n}".encode() for n in range(size)}


def test_a_vanished_hosts_hearts_fail_then_are_found_unreachable_and_its_connections_closed(
    caplog,
):
    """The link goes down: no FIN. The hearts fail by their misses, as hung (their connections
    still up), and once the kernel gives up on their connections, within the transport
    timeout, they are said unreachable (a log line, an event), and the connections and their
    descriptors are gone."""
    with (
        hosts(1) as (gateway, [host]),
        _monitor(gateway) as monitor,
        EventStream(monitor, "tcp://127.0.0.1:0") as stream,
    ):
        events = default_context().socket(zmq.SUB)
        events.setsockopt(zmq.SUBSCRIBE, b"unreachable")
        events.connect(stream.address)
        amended = []
        monitor.add_beat_handler(lambda beat: amended.extend(beat.unreachable))
        _fleet(host, monitor, gateway, 3, "far")
        wait_until(lambda: monitor.hearts == _hearts("far", 3), timeout=20)
        assert _established(monitor) == 4  # a fleet's pings come on one connection
        host.vanish()
        cut = monitor.clock()
        wait_until(lambda: not monitor.hearts, timeout=10)
        failures = list(monitor.ledger.failures)
        assert {f.heart for f in failures} == _hearts("far", 3)
        for failure in failures:
            assert failure.cause is Cause.MISSED
            assert failure.at - cut <= (MISSES + 2) * PERIOD_MS / 1000
        bound = Keepalive(TIMEOUT_S).bound
        wait_until(lambda: _established(monitor) == 0, timeout=bound + 2)
        closed = monitor.clock() - cut
        wait_until(lambda: len(amended) == 3, timeout=2)
        assert closed <= bound + 1
        assert {f.heart for f in amended} == _hearts("far", 3)
        assert all(f.diagnosis is Diagnosis.UNREACHABLE for f in monitor.ledger.failures)
        assert "connection timed out" in monitor.ledger.failures[-1].describe()
        assert monitor.ledger.counters.found_unreachable == 3
        said = [json.loads(events.recv_multipart()[2]) for _ in range(3)]
        events.close(linger=0)
        assert {event["heart"] for event in said} == {"far-0", "far-1", "far-2"}
        assert {event["diagnosis"] for event in said} == {"unreachable"}
        assert "unreachable: far-" in caplog.text


def test_a_killed_hosts_hearts_crash_within_milliseconds():
    """The process dies, the host stays: its kernel closes the connections at once."""
    with hosts(1) as (gateway, [host]), _monitor(gateway, fail_on_disconnect=True) as monitor:
        fleet = _fleet(host, monitor, gateway, 3, "near")
        wait_until(lambda: monitor.hearts == _hearts("near", 3), timeout=20)
        killed = monitor.clock()
        fleet.kill()
        wait_until(lambda: not monitor.hearts, timeout=5)
        for failure in monitor.ledger.failures:
            assert failure.cause is Cause.DISCONNECTED
            assert failure.diagnosis is Diagnosis.CRASHED
            assert failure.at - killed < 0.1


def test_a_stopped_process_is_hung_never_unreachable_and_a_false_failure_when_it_runs_again():
    """SIGSTOP: the process answers nothing, but its kernel still answers the keepalive, so
    its connections outlive the transport timeout; when it runs again, its answers on the
    same connection make its failures false ones."""
    with hosts(1) as (gateway, [host]), _monitor(gateway) as monitor:
        fleet = _fleet(host, monitor, gateway, 2, "stopped")
        wait_until(lambda: monitor.hearts == _hearts("stopped", 2), timeout=20)
        connections = _established(monitor)
        fleet.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: not monitor.hearts, timeout=10)
            deadline = time.monotonic() + Keepalive(TIMEOUT_S).bound + 2
            while time.monotonic() < deadline:  # past the timeout, nothing closes
                assert _established(monitor) == connections
                gevent.sleep(0.2)
            assert all(f.diagnosis is Diagnosis.HUNG for f in monitor.ledger.failures)
        finally:
            fleet.send_signal(signal.SIGCONT)
        wait_until(lambda: monitor.ledger.counters.false_failures == 2, timeout=10)
        assert monitor.hearts == _hearts("stopped", 2)


def test_a_healed_links_hearts_are_back_within_a_few_periods():
    with hosts(1) as (gateway, [host]), _monitor(gateway) as monitor:
        _fleet(host, monitor, gateway, 3, "flaky")
        wait_until(lambda: monitor.hearts == _hearts("flaky", 3), timeout=20)
        host.vanish()
        wait_until(lambda: not monitor.hearts, timeout=10)
        host.heal()
        healed = time.monotonic()
        wait_until(lambda: monitor.hearts == _hearts("flaky", 3), timeout=10)
        assert time.monotonic() - healed < 5 * PERIOD_MS / 1000 + 1


#: a heart whose hub blocks for argv[4] seconds on SIGUSR1, while libzmq's thread runs on
BLOCKING_HEART = """
import signal, sys, time
import gevent
from greenheart import Heart
heart = Heart(sys.argv[1], sys.argv[2], heart_id=sys.argv[3])
heart.start()
gevent.signal_handler(signal.SIGUSR1, lambda: time.sleep(float(sys.argv[4])))
gevent.sleep(3600)
"""


def test_a_heart_whose_hub_blocks_is_hung_never_unreachable_and_a_false_failure_after():
    with hosts(1) as (gateway, [host]), _monitor(gateway) as monitor:
        block = Keepalive(TIMEOUT_S).bound + 2
        heart = host.python(
            "-c", BLOCKING_HEART, monitor.ping_addr, monitor.pong_addr, "blocked", str(block),
        )  # fmt: skip
        wait_until(lambda: monitor.hearts == {b"blocked"}, timeout=20)
        connections = _established(monitor)
        heart.send_signal(signal.SIGUSR1)
        wait_until(lambda: not monitor.hearts, timeout=5)
        deadline = time.monotonic() + block - 1
        while time.monotonic() < deadline:  # past the timeout, the connections stay
            assert _established(monitor) == connections
            gevent.sleep(0.2)
        (failure,) = monitor.ledger.failures
        assert failure.diagnosis is Diagnosis.HUNG and failure.connected
        wait_until(lambda: monitor.ledger.counters.false_failures == 1, timeout=10)
        assert monitor.ledger.failures[0].diagnosis is Diagnosis.HUNG  # never amended


def test_a_cut_of_most_hearts_is_held_then_failed_as_unreachable():
    """Six hearts of ten behind a link that goes down: the mass-silence rule holds them (the
    monitor's own link may be at fault), their connections time out while they are held,
    and when the hold ends they fail as unreachable; the four others carry on."""
    hold = 25  # beats: 5 s, longer than the transport timeout
    rule = MassSilence(share=0.5, min_hearts=5, hold=hold)
    with hosts(2) as (gateway, [cut, kept]), _monitor(gateway, mass_silence=rule) as monitor:
        _fleet(cut, monitor, gateway, 6, "cut")
        _fleet(kept, monitor, gateway, 4, "kept")
        everyone = _hearts("cut", 6) | _hearts("kept", 4)
        wait_until(lambda: monitor.hearts == everyone, timeout=20)
        began = []
        monitor.add_beat_handler(lambda beat: beat.mass_silence_began and began.append(beat))
        cut.vanish()
        wait_until(lambda: began, timeout=5)
        assert set(began[0].held) == _hearts("cut", 6)
        bound = (MISSES + 2 + hold) * PERIOD_MS / 1000
        wait_until(lambda: monitor.hearts == _hearts("kept", 4), timeout=bound + 2)
        failures = list(monitor.ledger.failures)
        assert {f.heart for f in failures} == _hearts("cut", 6)
        assert all(f.cause is Cause.HELD for f in failures)
        assert all(f.diagnosis is Diagnosis.UNREACHABLE for f in failures)


def test_a_slow_links_hearts_keep_beating():
    """A host behind a slow link (tbf at 256 kbit/s; this kernel has no netem, so no delay or
    loss by rule): its pings and pongs fit, and nobody fails."""
    with hosts(1) as (gateway, [host]), _monitor(gateway) as monitor:
        host.shape("256kbit")
        _fleet(host, monitor, gateway, 3, "slow")
        wait_until(lambda: monitor.hearts == _hearts("slow", 3), timeout=20)
        beats = monitor.ledger.counters.beats
        wait_until(lambda: monitor.ledger.counters.beats >= beats + 10, timeout=10)
        assert monitor.hearts == _hearts("slow", 3) and not monitor.ledger.failures


def test_a_short_vanish_bench_leaves_the_monitor_where_it_started_only_with_keepalive(tmp_path):
    out = tmp_path / "vanish.json"
    done = subprocess.run(
        [sys.executable, "-m", "greenheart", "bench", "vanish", "--cycles", "3",
         "--transport-timeout", "3", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    kept, unwatched = json.loads(out.read_text())["runs"]
    assert kept["descriptors"]["after"] == kept["descriptors"]["before"]
    assert kept["established"]["after"] == 0 and kept["last_closed_after_s"] is not None
    assert unwatched["descriptors"]["after"] > unwatched["descriptors"]["before"]
    assert "transport timeout" in done.stdout
