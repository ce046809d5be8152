"""An event stream a subscriber can trust: every event numbered, a snapshot only to who asks,
and a client that ends with every event once, in order, whatever it missed."""

from __future__ import annotations

import time

import gevent
import pytest
import zmq
import zmq.green
from hypothesis import given
from hypothesis import strategies as st

from greenheart import Heart, HeartMonitor
from greenheart.core.errors import UsageError
from greenheart.core.sequence import Follower, Step, Tail, first_seq, resume_seq
from greenheart.fleet import HeartFleet
from greenheart.green.sockets import close_sockets
from greenheart.integrations.events import EventClient, EventStream, snapshot_address
from tests.helpers import free_pair, wait_until


@pytest.mark.pure
@given(kept=st.integers(1, 30), made=st.integers(0, 60), asked=st.integers(-5, 70))
def test_the_tail_gives_back_what_it_still_has_or_says_it_cannot(kept, made, asked):
    tail = Tail(kept)
    for seq in range(1, made + 1):
        tail.add(seq, [b"%d" % seq])
    got = tail.since(asked, made)
    oldest = max(1, made - kept + 1)
    if asked > made or (asked < made and asked + 1 < oldest):
        assert got is None
    else:
        assert got == [[b"%d" % seq] for seq in range(asked + 1, made + 1)]


@pytest.mark.pure
@given(st.lists(st.integers(0, 20), max_size=40))
def test_a_follower_delivers_each_seq_once_in_order(arrivals):
    follower, delivered = Follower(0), []
    for seq in arrivals:
        step = follower.step(seq)
        if step is Step.CATCH_UP:  # the tail hands back what came between
            for missed in range(follower.last + 1, seq):
                delivered.append(missed)
                follower.delivered(missed)
            step = follower.step(seq)
        if step is Step.DELIVER:
            delivered.append(seq)
            follower.delivered(seq)
    assert delivered == list(range(1, len(delivered) + 1))


@pytest.mark.pure
@given(
    start=st.floats(1e9, 2e9),
    published=st.integers(0, 50),
    written=st.integers(0, 50),
    mark_kept=st.booleans(),
    later=st.floats(0, 1e6),
)
def test_a_restarted_stream_never_reuses_a_seq_and_goes_on_from_its_mark(
    start, published, written, mark_kept, later
):
    """A stream published ``published`` events and wrote the first ``written`` before it was
    killed; its mark (the last seq published) survived or not."""
    first = first_seq(start)
    written = min(written, published)
    mark = first + published if mark_kept and published else None
    # fewer than a million events a second, and a restart takes a moment: the clock moved on
    restart = start + published * 1e-6 + 1e-3 + later
    seq = resume_seq(mark, first + written if written else None, restart)
    assert seq >= first + published  # never a number used before
    if mark is not None:
        assert seq == mark  # and continuous


@pytest.mark.pure
def test_the_snapshot_socket_is_beside_the_stream():
    assert snapshot_address("tcp://127.0.0.1:5557") == "tcp://127.0.0.1:5558"
    assert snapshot_address("ipc:///tmp/events") == "ipc:///tmp/events-snapshot"
    assert first_seq(1.5) == 1_500_000


def _green_client(stream: EventStream, **settings: object) -> EventClient:
    return EventClient(
        stream.address, stream.snapshot_address, context=zmq.green.Context.instance(), **settings
    )


def test_subscribers_connecting_send_the_connected_ones_nothing():
    monitor = HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=50)
    with monitor, EventStream(monitor, "tcp://127.0.0.1:0") as stream:
        context = zmq.green.Context.instance()
        first = context.socket(zmq.SUB)
        first.setsockopt(zmq.SUBSCRIBE, b"")
        first.connect(stream.address)
        others = []
        try:
            gevent.sleep(0.2)
            for _ in range(10):
                other = context.socket(zmq.SUB)
                other.setsockopt(zmq.SUBSCRIBE, b"")
                other.connect(stream.address)
                others.append(other)
            assert not first.poll(500)  # no welcome broadcast to everyone
            with Heart(monitor.ping_addr, monitor.pong_addr, heart_id="one"):
                assert first.poll(5000) and first.recv_multipart()[:2] == [b"new_heart", b"one"]
        finally:
            close_sockets(first, *others)


def test_a_subscriber_gone_for_a_while_during_churn_ends_with_every_event_once():
    """Hearts join and die all along; a client follows, goes away for 5 s, and a new one
    resumes after the last event the first saw: between them, every seq once, none missing."""
    with (
        HeartMonitor.bind(
            "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=50, fail_on_disconnect=True
        ) as monitor,
        EventStream(monitor, "tcp://127.0.0.1:0") as stream,
        HeartFleet(monitor.ping_addr, monitor.pong_addr, size=20, prefix="c") as fleet,
    ):

        def churn() -> None:
            while True:
                fleet.replace(fleet.ids[:2])
                gevent.sleep(0.1)

        churner = gevent.spawn(churn)
        seen: list[int] = []
        try:
            first = _green_client(stream)
            with gevent.Timeout(10):
                for event in first.events():
                    if event["event"] != "hearts":
                        seen.append(event["seq"])
                    if len(seen) >= 20:
                        break
            first.close()
            gone = time.monotonic()  # away 5 s, while events go on
            wait_until(
                lambda: time.monotonic() - gone >= 5 and stream.seq > first.last + 100, timeout=10
            )
            second = _green_client(stream, since=first.last)
            with gevent.Timeout(10):
                for event in second.events():
                    seen.append(event["seq"])
                    if event["seq"] >= stream.seq and len(seen) > 60:
                        break
            second.close()
        finally:
            churner.kill()
    assert seen == list(range(seen[0], seen[0] + len(seen)))  # each once, none missing


def test_a_client_asks_again_when_the_stream_went_away_with_its_request():
    """The snapshot socket took the request and went away (a monitor killed); the stream that
    takes its place is asked again, on a new socket, and answers."""
    port = free_pair()
    context = zmq.green.Context.instance()
    gone = context.socket(zmq.ROUTER)
    gone.linger = 0
    gone.bind(f"tcp://127.0.0.1:{port + 1}")
    client = EventClient(f"tcp://127.0.0.1:{port}", context=context)
    first = gevent.spawn(lambda: next(client.events(timeout=10)))
    try:
        assert gone.poll(5000) and gone.recv_multipart()[1:] == [b"hearts"]
        gone.close()
        with HeartMonitor.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0") as monitor:
            streams: list[EventStream] = []

            def bound() -> bool:  # once libzmq has let go of the port
                try:
                    streams.append(EventStream(monitor, f"tcp://127.0.0.1:{port}").start())
                except UsageError:
                    return False
                return True

            wait_until(bound, timeout=5)
            try:
                assert first.get(timeout=10)["event"] == "hearts"
            finally:
                streams[0].stop()
    finally:
        first.kill()
        client.close()
