"""Test helpers: waiting with a deadline, and hearts whose answers a test scripts."""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import attrs
import gevent
import zmq
import zmq.green
from gevent import subprocess

from greenheart import HeartMonitor
from greenheart.green.limits import open_descriptors
from greenheart.green.sockets import close_sockets, default_context


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now, for a program that must bind a port
    known in advance (a monitor restarted on the same one)."""
    import socket  # here: below, ``socket`` names ZeroMQ sockets

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_pair() -> int:
    """A port free with the next one (an event stream and its snapshot socket)."""
    import socket

    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


def connects(address: str, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to ``address`` (``tcp://host:port``) is taken within
    ``timeout`` seconds; not if its listener drops SYNs. It blocks the hub meanwhile."""
    import socket

    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    probe = socket.socket()
    probe.settimeout(timeout)
    try:
        probe.connect((host, int(port)))
        return True
    except OSError:  # timed out: the listener dropped the SYN
        return False
    finally:
        probe.close()


def http_get(url: str) -> tuple[int, bytes]:
    """GET ``url`` from a thread, while the hub serves: its status and body."""

    def fetch() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    status, body = gevent.get_hub().threadpool.apply(fetch)
    return status, body


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, step: float = 0.005) -> None:
    """Poll ``predicate`` until it is true; fail the test if ``timeout`` seconds pass first,
    saying what was waited for (the lambda's text) and what it last gave."""
    deadline = time.monotonic() + timeout
    while not (seen := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not true within {timeout} s: {_text(predicate)} (last: {seen!r})"
            )
        gevent.sleep(step)


def _text(predicate: Callable[[], object]) -> str:
    """A predicate as its source says it: a lambda's expression, or a function's name."""
    if getattr(predicate, "__name__", "") != "<lambda>":
        return getattr(predicate, "__qualname__", repr(predicate))
    try:
        source = textwrap.dedent(inspect.getsource(predicate))
        lambdas = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Lambda)]
    except (OSError, TypeError, SyntaxError):  # no source, or a fragment of a statement
        return repr(predicate)
    return (
        ast.get_source_segment(source, lambdas[0]) or repr(predicate)
        if lambdas
        else repr(predicate)
    )


def heart_process(monitor: HeartMonitor, name: str) -> subprocess.Popen[bytes]:
    """``greenheart heart`` in a process of its own, answering ``monitor`` as ``name``."""
    return subprocess.Popen(
        [sys.executable, "-m", "greenheart", "heart", "--ping", monitor.ping_addr,
         "--pong", monitor.pong_addr, "--id", name],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def settled_descriptors(quiet: float = 0.2, timeout: float = 10.0) -> int:
    """The descriptors this process has open, once the count has held still for ``quiet``
    seconds: libzmq closes sockets on its own thread, a moment after ``close()`` returns."""
    deadline = time.monotonic() + timeout
    count = open_descriptors()
    while time.monotonic() < deadline:
        gevent.sleep(quiet)
        now = open_descriptors()
        if now == count:
            break
        count = now
    return count


def wait_beats(monitor: HeartMonitor, count: int, timeout: float = 10.0) -> None:
    """Return once ``monitor`` has beaten ``count`` more times."""
    target = monitor.ledger.counters.beats + count
    wait_until(lambda: monitor.ledger.counters.beats >= target, timeout=timeout)


def dealer(pong_addr: str, identity: bytes) -> zmq.green.Socket:
    """A bare DEALER with ``identity``, connected to a monitor's pong address."""
    socket = default_context().socket(zmq.DEALER)
    socket.linger = 0
    socket.setsockopt(zmq.IDENTITY, identity)
    socket.connect(pong_addr)
    return socket


def callers_sockets(backlog: int | None = None) -> tuple[zmq.green.Socket, zmq.green.Socket]:
    """A PUB and a ROUTER made as a caller of ``HeartMonitor(ping, pong)`` would: green, with
    ZeroMQ's defaults (or ``backlog``), bound to free loopback ports."""
    context = default_context()
    sockets = context.socket(zmq.PUB), context.socket(zmq.ROUTER)
    for socket in sockets:
        socket.linger = 0
        if backlog is not None:
            socket.setsockopt(zmq.BACKLOG, backlog)
        socket.bind("tcp://127.0.0.1:0")
    return sockets


class ScriptedHeart:
    """A heart whose answer to the n-th ping (from 0) is ``script(n)``: None drops the
    ping, a number of seconds delays the answer by that much."""

    def __init__(
        self, ping_addr: str, pong_addr: str, identity: bytes, script: Callable[[int], float | None]
    ) -> None:
        self.identity = identity
        self.script = script
        self.pings = 0
        self.answered = 0
        self._sub = default_context().socket(zmq.SUB)
        self._sub.linger = 0
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(ping_addr)
        self._dealer = dealer(pong_addr, identity)
        self._greenlets: list[gevent.Greenlet] = [gevent.spawn(self._run)]

    def _answer(self, payload: bytes) -> None:
        self._dealer.send(payload)
        self.answered += 1

    def _run(self) -> None:
        while True:
            payload = self._sub.recv()
            delay = self.script(self.pings)
            self.pings += 1
            if delay is None:
                continue
            if delay <= 0:
                self._answer(payload)
            else:
                self._greenlets.append(gevent.spawn_later(delay, self._answer, payload))

    def stop(self) -> None:
        gevent.killall(self._greenlets)
        close_sockets(self._sub, self._dealer)


@attrs.define(eq=False)
class RecordingMonitor(HeartMonitor):
    """Notes when each heart's first pong arrived, when it was registered, and when it failed."""

    first_pong: dict[bytes, float] = attrs.field(factory=dict, init=False)
    #: ("new" | "failed", heart), in the order the handlers were called
    events: list[tuple[str, bytes]] = attrs.field(factory=list, init=False)
    registered: dict[bytes, list[float]] = attrs.field(factory=dict, init=False)
    failed: dict[bytes, list[float]] = attrs.field(factory=dict, init=False)

    def handle_pong(self, msg, key=None, fd=-1):
        pong = super().handle_pong(msg, key, fd)
        self.first_pong.setdefault(pong.heart, time.monotonic())
        return pong

    def handle_new_heart(self, heart):
        self.registered.setdefault(heart, []).append(time.monotonic())
        self.events.append(("new", heart))
        super().handle_new_heart(heart)

    def handle_heart_failure(self, heart, failure=None):
        self.failed.setdefault(heart, []).append(time.monotonic())
        self.events.append(("failed", heart))
        super().handle_heart_failure(heart, failure)

    def assert_events_alternate(self) -> None:
        """Every heart's events are new, failed, new, ...: each delivered once, in order."""
        per_heart: dict[bytes, list[str]] = {}
        for event, heart in self.events:
            per_heart.setdefault(heart, []).append(event)
        for heart, events in per_heart.items():
            expected = ["new", "failed"] * len(events)
            assert events == expected[: len(events)], (heart, events)
