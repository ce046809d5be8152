"""The monitor's other servers never compete with the hearts for descriptors: the cap's rule,
then thousands of idle connections to a live page while new hearts register, the timeouts of
a half-sent request and of an idle kept-alive connection, and the event stream's cap."""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import time

import gevent
import gevent.socket
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from greenheart import HeartMonitor
from greenheart.core.refusal import (
    CAP_LEAST,
    CAP_MOST,
    HANDSHAKE_SECONDS,
    Change,
    ConnectionCap,
    connection_cap,
)
from greenheart.fleet import HeartFleet
from greenheart.green.limits import raise_open_file_limit
from greenheart.integrations.events import EventStream
from greenheart.integrations.live import LiveServer
from greenheart.integrations.metrics import MetricsServer
from tests.helpers import connects, http_get, wait_until

# -- the rule -----------------------------------------------------------------------------------


@pytest.mark.pure
def test_the_default_cap_is_a_twentieth_of_the_open_file_limit_within_its_bounds():
    assert connection_cap(20_000) == 1000
    assert connection_cap(1024) == 51
    assert connection_cap(100) == CAP_LEAST
    assert connection_cap(1 << 20) == CAP_MOST


@pytest.mark.pure
@given(most=st.integers(1, 20), steps=st.lists(st.booleans(), max_size=200))
def test_an_http_server_never_holds_more_than_its_cap(most, steps):
    cap = ConnectionCap(most)
    held = came = 0
    for come in steps:  # a connection comes, or one held closes
        if come:
            came += 1
            full = cap.full
            assert cap.admit() is not full
            held += not full
        elif held:
            cap.closed()
            held -= 1
        assert cap.open == held <= most
        assert cap.refused + held <= came  # each came once: held, refused or closed since


@pytest.mark.pure
@given(most=st.integers(1, 20), steps=st.lists(st.booleans(), max_size=200))
def test_a_listener_stops_taking_connections_while_full_and_takes_them_again_at_a_close(
    most, steps
):
    cap = ConnectionCap(most)
    changes = []
    for come in steps:
        before = cap.open
        change = cap.opened() if come else cap.closed()
        if change is not None:
            changes.append(change)
        # it refuses as the count reaches the cap, admits as it falls under it, nothing else
        assert (change is Change.REFUSE) == (come and before == most - 1)
        assert (change is Change.ADMIT) == (not come and before == most)
        assert cap.full == (bool(changes) and changes[-1] is Change.REFUSE)
    assert changes[::2] == [Change.REFUSE] * len(changes[::2])  # they alternate
    assert changes[1::2] == [Change.ADMIT] * len(changes[1::2])
    assert cap.refusals == len(changes[::2])


# -- idle connections to a live page --------------------------------------------------------------

#: a request line and one header, then nothing: what slowloris sends
HALF_REQUEST = b"GET /live.json HTTP/1.1\r\nHost: 127.0.0.1\r\n"

#: descriptors the test runs under at most: the open-file limit it was written against (a
#: higher one would only make it longer)
BUDGET = 20_000

#: new hearts that must register while the page is full
NEW_HEARTS = 50


@pytest.fixture
def budget():
    """The soft open-file limit at :data:`BUDGET` (or the hard limit, if lower) for the test."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = min(raise_open_file_limit(), BUDGET)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, before[1]))
    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def half_requests(port: int, count: int) -> list[gevent.socket.socket]:
    """``count`` connections to ``port`` that each send :data:`HALF_REQUEST` (fewer if this
    process runs out of descriptors)."""
    held = []
    for _ in range(count):
        try:
            peer = gevent.socket.create_connection(("127.0.0.1", port))
        except OSError:  # EMFILE: the page took what the test meant to hold
            break
        held.append(peer)
        with contextlib.suppress(OSError):  # refused already: the server closed it
            peer.sendall(HALF_REQUEST)
    return held


@pytest.mark.timeout(120)
def test_thousands_of_idle_connections_to_the_page_leave_new_hearts_room(budget):
    """Half the descriptor budget in idle half-requests to the page: without a cap the page's
    server held as many again, every descriptor (both ends are in this process), and no new
    heart could register; with it the page holds at most its cap and refuses the rest."""
    idle = budget // 2
    monitor = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=100).start()
    page = LiveServer(monitor).start()
    fleet = None
    held: list[gevent.socket.socket] = []
    try:
        began = time.monotonic()
        held = half_requests(page.server_port, idle)
        opened = time.monotonic() - began
        fleet = HeartFleet(monitor.ping_addr, monitor.pong_addr, size=NEW_HEARTS, prefix="new")
        began = time.monotonic()
        fleet.start()
        wait_until(lambda: len(monitor.hearts) == NEW_HEARTS, timeout=5.0)
        registered = time.monotonic() - began
        print(f"{len(held)} idle connections in {opened:.1f} s; {NEW_HEARTS} hearts in"
              f" {registered:.2f} s; the page held {page.cap.open}")  # fmt: skip
        assert len(held) == idle and not monitor.status().refusing_connections
        cap = page.cap
        assert cap.most == connection_cap(budget) and cap.open == cap.most
        assert cap.refused + cap.open + page.timed_out == idle  # every one held or let go
        status, body = http_get(page.url + "live.json")
        assert status == 503 and body == b"too many connections\r\n"
        for peer in held:
            peer.close()
        wait_until(lambda: page.cap.open == 0)
        status, body = http_get(page.url + "live.json")
        assert status == 200 and len(json.loads(body)["hearts"]["set"]) == NEW_HEARTS
    finally:
        for peer in held:
            peer.close()
        if fleet is not None:
            fleet.stop()
        page.stop()
        monitor.stop()


# -- timeouts ------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_half_sent_request_is_closed_after_the_request_timeout(make_monitor):
    page = LiveServer(make_monitor(period=100), request_timeout=0.3).start()
    try:
        peer = gevent.socket.create_connection(("127.0.0.1", page.server_port))
        peer.sendall(HALF_REQUEST)
        began = time.monotonic()
        with gevent.Timeout(10, AssertionError("never closed")):
            assert peer.recv(100) == b""  # closed, with no answer
        assert 0.3 <= time.monotonic() - began < 3
        assert (page.timed_out, page.idle_closed, page.cap.open) == (1, 0, 0)
        peer.close()
    finally:
        page.stop()


@pytest.mark.timeout(30)
def test_a_kept_alive_connection_stays_while_polled_and_closes_once_idle(make_monitor):
    idle = 0.5
    page = LiveServer(make_monitor(period=100), idle_timeout=idle).start()
    connection = http.client.HTTPConnection("127.0.0.1", page.server_port, timeout=10)
    pool = gevent.get_hub().threadpool

    def poll() -> int:
        connection.request("GET", "/live.json")
        response = connection.getresponse()
        response.read()
        return response.status

    try:
        for _ in range(6):  # the page's own polling, more often than the idle timeout
            assert pool.apply(poll) == 200
            gevent.sleep(idle / 3)  # the poll period
        assert (page.cap.open, page.idle_closed, page.timed_out) == (1, 0, 0)  # one connection
        wait_until(lambda: page.idle_closed == 1, timeout=5)
        assert page.cap.open == 0 and pool.apply(connection.sock.recv, (1,)) == b""  # closed
    finally:
        connection.close()
        page.stop()


# -- the metrics server ------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_metrics_say_how_many_http_connections_were_held_refused_and_timed_out(make_monitor):
    monitor = make_monitor(period=100)
    page = LiveServer(monitor, connections=1, request_timeout=0.3).start()
    metrics = MetricsServer(monitor, connections=5, servers=[page]).start()
    held = []
    try:
        held = half_requests(page.server_port, 2)  # one held, then timed out; one refused
        wait_until(lambda: page.timed_out == 1)
        status, body = http_get(f"http://127.0.0.1:{metrics.server_port}/metrics")
        assert status == 200
        text = body.decode()
        for line in (
            'greenheart_http_refused_connections_total{server="page"} 1.0',
            'greenheart_http_timed_out_connections_total{server="page"} 1.0',
            'greenheart_http_connections{server="page"} 0.0',
            'greenheart_http_connections{server="metrics"} 1.0',  # this request's
        ):
            assert line in text.splitlines()
    finally:
        for peer in held:
            peer.close()
        metrics.stop()
        page.stop()


# -- the event stream ----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_event_stream_takes_no_connection_past_its_cap_until_one_closes(make_monitor):
    stream = EventStream(make_monitor(period=100), "tcp://127.0.0.1:0", connections=2).start()
    peers = []
    try:
        for socket_ in (stream._socket, stream._snapshots):
            assert socket_.getsockopt(zmq.HANDSHAKE_IVL) == HANDSHAKE_SECONDS * 1000
        host, port = stream.address.removeprefix("tcp://").rsplit(":", 1)
        peers = [gevent.socket.create_connection((host, int(port))) for _ in range(2)]
        wait_until(lambda: stream.cap.full)
        assert not connects(stream.address) and not connects(stream.snapshot_address)
        peers.pop().close()
        wait_until(lambda: not stream.cap.full)
        assert connects(stream.snapshot_address)
    finally:
        for peer in peers:
            peer.close()
        stream.stop()
