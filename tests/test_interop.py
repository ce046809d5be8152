"""Wire compatibility with the real ipyparallel, both ways.

ipyparallel's Heart is a thread device with no way to stop it, and its HeartMonitor
runs its own event loop, so each runs in a child process that the test kills.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import gevent
import ipyparallel  # noqa: F401  (a dev dependency: missing, these tests must fail, not skip)
import pytest
import zmq
import zmq.green

from greenheart import Heart
from greenheart.curve import ClientCurve, KeyPair, ServerCurve
from greenheart.fleet import HeartFleet
from greenheart.green.sockets import close_sockets, default_context
from tests.helpers import RecordingMonitor, wait_until

IPYPARALLEL_HEART = """
import sys, time
from ipyparallel.controller.heartmonitor import Heart
Heart(sys.argv[1], sys.argv[2], heart_id=sys.argv[3].encode()).start()
time.sleep(120)
"""

IPYPARALLEL_MONITOR = """
import sys
from ipyparallel.controller.heartmonitor import start_heartmonitor
ping, pong, monitor, period, misses = sys.argv[1:]
start_heartmonitor(ping, pong, monitor, period=int(period), max_heartmonitor_misses=int(misses))
"""

IPYPARALLEL_CURVE_HEART = """
import sys, time
from ipyparallel.controller.heartmonitor import Heart
ping, pong, name, server, public, secret = sys.argv[1:]
Heart(ping, pong, heart_id=name.encode(), curve_serverkey=server.encode(),
      curve_publickey=public.encode(), curve_secretkey=secret.encode()).start()
time.sleep(120)
"""

IPYPARALLEL_CURVE_MONITOR = """
import sys
from ipyparallel.controller.heartmonitor import start_heartmonitor
ping, pong, monitor, public, secret = sys.argv[1:]
start_heartmonitor(ping, pong, monitor, period=100, max_heartmonitor_misses=2,
                   curve_publickey=public.encode(), curve_secretkey=secret.encode())
"""

#: a child python with ipyparallel loaded takes a while to start
STARTUP = 30


def spawn(code: str, *args: str, stderr: Any = subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stderr=stderr)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def test_an_ipyparallel_heart_registers_with_our_monitor_and_fails_when_it_stops(
    make_monitor, children
):
    period, max_misses = 0.1, 2
    monitor = make_monitor(RecordingMonitor, period=period * 1000, max_misses=max_misses)
    child = spawn(IPYPARALLEL_HEART, monitor.ping_addr, monitor.pong_addr, "ipp-engine-0")
    children.append(child)
    wait_until(lambda: b"ipp-engine-0" in monitor.hearts, timeout=STARTUP)
    assert monitor.ledger.counters.bad_pongs == 0
    killed_at = time.monotonic()
    child.kill()
    wait_until(lambda: b"ipp-engine-0" in monitor.failed, timeout=10)
    # the bound, plus slack for beats that run late on a loaded machine
    assert monitor.failed[b"ipp-engine-0"][0] - killed_at <= (max_misses + 2) * period + 0.25


def heartmonitor_events(socket: zmq.green.Socket) -> Iterator[tuple[str, list[str]]]:
    """``(msg_type, hearts)`` of each jupyter message ipyparallel's monitor sends."""
    while True:
        frames = socket.recv_multipart()
        start = frames.index(b"<IDS|MSG>")
        header, content = frames[start + 2], frames[start + 5]
        yield json.loads(header)["msg_type"], json.loads(content)["hearts"]


def test_our_heart_registers_with_ipyparallels_monitor_and_is_reported_stopped(tmp_path, children):
    events = default_context().socket(zmq.SUB)
    events.linger = 0
    events.setsockopt(zmq.SUBSCRIBE, b"")
    events.bind("tcp://127.0.0.1:0")
    ping, pong = f"ipc://{tmp_path}/ping", f"ipc://{tmp_path}/pong"
    said = tmp_path / "monitor.log"
    with said.open("wb") as log:
        children.append(
            spawn(IPYPARALLEL_MONITOR, ping, pong, events.getsockopt_string(zmq.LAST_ENDPOINT),
                  "100", "2", stderr=log)
        )  # fmt: skip
    heart = Heart(ping, pong, heart_id="greenheart-0")
    heart.start()
    received = heartmonitor_events(events)
    try:
        with_deadline = zmq.green.Poller()
        with_deadline.register(events, zmq.POLLIN)
        assert with_deadline.poll(STARTUP * 1000), "ipyparallel's monitor said nothing"
        assert next(received) == ("new_heart", ["greenheart-0"])
        heart.stop()  # its leave is one bad heartbeat to ipyparallel's monitor, which goes on
        assert with_deadline.poll(10_000), "ipyparallel's monitor never noticed the heart stop"
        assert next(received) == ("stopped_heart", ["greenheart-0"])
        wait_until(lambda: b"got bad heartbeat" in said.read_bytes(), timeout=5)
        bad = [line for line in said.read_bytes().splitlines() if b"bad heartbeat" in line]
        assert len(bad) == 1 and b"greenheart:leave" in bad[0], bad
    finally:
        heart.stop()
        close_sockets(events)


def test_a_fleet_registers_with_ipyparallels_monitor_and_its_dead_are_reported(tmp_path, children):
    events = default_context().socket(zmq.SUB)
    events.linger = 0
    events.setsockopt(zmq.SUBSCRIBE, b"")
    events.bind("tcp://127.0.0.1:0")
    ping, pong = f"ipc://{tmp_path}/ping", f"ipc://{tmp_path}/pong"
    monitor_addr = events.getsockopt_string(zmq.LAST_ENDPOINT)
    children.append(spawn(IPYPARALLEL_MONITOR, ping, pong, monitor_addr, "100", "2"))
    received = heartmonitor_events(events)
    reported: dict[str, set[str]] = {"new_heart": set(), "stopped_heart": set()}

    def until(kind: str, hearts: set[str], timeout: float) -> None:
        with gevent.Timeout(timeout, AssertionError(f"{kind} never covered {hearts}")):
            while not hearts <= reported[kind]:
                msg_type, named = next(received)
                reported[msg_type].update(named)

    try:
        with HeartFleet(ping, pong, size=50, prefix="ipp-fleet") as fleet:
            until("new_heart", {heart.decode() for heart in fleet.ids}, STARTUP)
            victims = fleet.ids[:5]
            fleet.kill(victims)
            until("stopped_heart", {heart.decode() for heart in victims}, 10)
            assert reported["stopped_heart"] == {heart.decode() for heart in victims}
    finally:
        close_sockets(events)


def test_an_ipyparallel_heart_speaks_curve_with_our_monitor(children):
    server, engine, stranger = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    monitor = RecordingMonitor.bind(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        curve=ServerCurve(server, {engine.public}),
        period=100,
    )
    monitor.start()
    try:
        for name, keys in (("ipp-curve", engine), ("ipp-stranger", stranger)):
            children.append(
                spawn(IPYPARALLEL_CURVE_HEART, monitor.ping_addr, monitor.pong_addr, name,
                      server.public.decode(), keys.public.decode(), keys.secret.decode())
            )  # fmt: skip
        wait_until(lambda: b"ipp-curve" in monitor.hearts, timeout=STARTUP)
        wait_until(lambda: monitor.authenticator.refused >= 2, timeout=STARTUP)
        assert monitor.hearts == {b"ipp-curve"}
    finally:
        monitor.stop()


def test_our_heart_speaks_curve_with_ipyparallels_monitor(tmp_path, children):
    server = KeyPair.generate()
    events = zmq.green.Context.instance().socket(zmq.SUB)
    events.linger = 0
    events.setsockopt(zmq.SUBSCRIBE, b"")
    # ipyparallel's monitor connects its event stream as a client of its own key
    events.setsockopt(zmq.CURVE_SERVER, 1)
    events.setsockopt(zmq.CURVE_SECRETKEY, server.secret)
    events.bind("tcp://127.0.0.1:0")
    ping, pong = f"ipc://{tmp_path}/ping", f"ipc://{tmp_path}/pong"
    children.append(
        spawn(IPYPARALLEL_CURVE_MONITOR, ping, pong, events.getsockopt_string(zmq.LAST_ENDPOINT),
              server.public.decode(), server.secret.decode())
    )  # fmt: skip
    heart = Heart(
        ping,
        pong,
        heart_id="greenheart-curve",
        curve=ClientCurve(server.public, KeyPair.generate()),
    )
    heart.start()
    received = heartmonitor_events(events)
    try:
        with gevent.Timeout(STARTUP, AssertionError("ipyparallel's monitor said nothing")):
            assert next(received) == ("new_heart", ["greenheart-curve"])
    finally:
        heart.stop()
        close_sockets(events)
