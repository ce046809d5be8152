"""The monitor's events on a ZeroMQ socket, for processes that are not in this one.

This is greenheart's own protocol, not ipyparallel's monitor stream (which sends signed
Jupyter messages to its hub): plain frames that any ZeroMQ SUB socket, in any language, can
follow to learn who joins and who fails. Every event is three frames:

    [kind, identity, json]

``kind`` is ``new_heart`` or ``heart_failure`` (subscribe to a prefix to filter),
``identity`` the heart's raw identity, and ``json`` an object with the event, the heart
as text, the beat number, the time (Unix seconds) and ``seq``. A ``heart_failure`` carries its
certificate's fields too (``cause``, ``misses``, ``silent_ms``, ``connected``, ...: see
:meth:`greenheart.core.failures.Failure.as_json`). Three more kinds, which a subscriber to
``new_heart`` or ``heart_failure`` alone never sees:

- ``false_failure``: a heart failed for its silence answered again on the same connection;
  its JSON says how long it was gone (``gone_ms``) and why it had been failed;
- ``unreachable``: a heart failed for its silence (as hung) whose connection has timed out
  since: its host or its network is gone, not only its process. The JSON is its certificate,
  amended (``diagnosis`` ``unreachable``, ``timed_out`` true);
- ``mass_silence`` (empty identity): the monitor began holding hearts as suspects of a mass
  silence (``"state": "began"``), or holds none any more (``"ended"``).

``seq`` rises by one per event and is never reused (:mod:`greenheart.core.sequence`); with
the monitor's state (``HeartMonitor(state=...)``) it goes on across a restart, and the tail
with it. A
subscriber that wants to know who is there, or finds a gap, asks the snapshot socket (a
ROUTER beside the PUB; see :data:`SNAPSHOT`): ``[b"hearts"]`` answers one ``hearts`` event
listing every heart known, stamped with the ``seq`` it reflects; ``[b"since", b"<seq>"]``
answers the events after it from the stream's tail, then ``[b"done", b"", json]``, or the
``hearts`` snapshot when the tail no longer reaches back. :class:`EventClient` does all this:
it yields every event once, in order.

Both sockets together hold at most ``connections``
(:class:`~greenheart.green.refusal.CappedListeners`), and hang up on a peer that has not
finished ZeroMQ's handshake within :data:`~greenheart.core.refusal.HANDSHAKE_SECONDS`, so
that they never take the hearts' descriptors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import time
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import zmq
import zmq.green

from greenheart.core.errors import UsageError
from greenheart.core.failures import Failure
from greenheart.core.refusal import HANDSHAKE_SECONDS, ConnectionCap, connection_cap
from greenheart.core.sequence import Follower, Step, Tail, first_seq
from greenheart.core.values import Beat
from greenheart.core.wire import display_id
from greenheart.green.lifecycle import Service
from greenheart.green.monitor import HeartMonitor
from greenheart.green.refusal import CappedListeners
from greenheart.green.sockets import (
    bind,
    close_sockets,
    connect,
    default_context,
    endpoint,
    wait_for_messages,
)
from greenheart.green.state import StateFile

log = logging.getLogger("greenheart.events")

NEW_HEART = b"new_heart"
HEART_FAILURE = b"heart_failure"
FALSE_FAILURE = b"false_failure"
UNREACHABLE = b"unreachable"
MASS_SILENCE = b"mass_silence"
HEARTS = b"hearts"
DONE = b"done"

#: the requests the snapshot socket answers
SNAPSHOT = b"hearts"
SINCE = b"since"

#: free ports tried for a stream on port 0 whose next port is taken
BIND_TRIES = 20

#: events queued per subscriber before the slowest ones lose some
EVENTS_SNDHWM = 100_000

#: seconds a client waits for an answer before asking again on a new socket: the stream went
#: away (a monitor restarting) with the request
ASK_AGAIN = 1.0


@attrs.define(eq=False)
class EventStream(Service):
    """Publishes ``monitor``'s events on a PUB bound to ``addr``, and answers snapshot and
    catch-up requests on a ROUTER bound to ``snapshot_addr``: by default
    :func:`snapshot_address` (the next port; with port 0, a free pair of ports)."""

    monitor: HeartMonitor
    addr: str
    context: zmq.green.Context | None = None
    snapshot_addr: str | None = None
    #: connections held at most by both sockets; None for
    #: :func:`~greenheart.core.refusal.connection_cap` of the open-file limit when it starts
    connections: int | None = attrs.field(
        default=None,
        kw_only=True,
        validator=attrs.validators.optional(
            [attrs.validators.instance_of(int), attrs.validators.gt(0)]
        ),
    )
    #: events published
    sent: int = attrs.field(default=0, init=False)
    #: the last event's ``seq``
    seq: int = attrs.field(init=False)
    _tail: Tail = attrs.field(factory=Tail, init=False)
    #: the monitor's state, which keeps this stream's seq and tail
    _saved: StateFile | None = attrs.field(default=None, init=False)
    _socket: zmq.green.Socket | None = attrs.field(default=None, init=False)
    _snapshots: zmq.green.Socket | None = attrs.field(default=None, init=False)
    #: closes the listeners to new connections while the cap is full
    _capped: CappedListeners | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.seq = first_seq(time.time())

    @property
    def address(self) -> str:
        """Where subscribers connect (with the real port when ``addr`` had port 0)."""
        assert self._socket is not None, "start() first"
        return endpoint(self._socket)

    @property
    def snapshot_address(self) -> str:
        assert self._snapshots is not None, "start() first"
        return endpoint(self._snapshots)

    @property
    def cap(self) -> ConnectionCap | None:
        """The cap on both sockets' connections and its counts, once started."""
        return None if self._capped is None else self._capped.cap

    def _open(self) -> None:
        state = self.monitor.state
        if state is not None:  # go on from the stream before this one
            self.seq, events = state.stream()
            for seq, frames in events:
                self._tail.add(seq, frames)
            self._saved = state
        context = self.context or default_context()
        self._socket = self._snapshots = None
        for _ in range(BIND_TRIES):
            close_sockets(self._socket, self._snapshots)
            self._socket = socket = context.socket(zmq.PUB)
            self._snapshots = snapshots = context.socket(zmq.ROUTER)
            socket.linger = snapshots.linger = 0
            socket.setsockopt(zmq.SNDHWM, EVENTS_SNDHWM)
            for each in (socket, snapshots):  # a peer that never speaks ZeroMQ is let go
                each.setsockopt(zmq.HANDSHAKE_IVL, int(HANDSHAKE_SECONDS * 1000))
            bind(socket, self.addr, "events")
            try:
                bind(snapshots, self.snapshot_addr or snapshot_address(self.address), "snapshots")
                break
            except UsageError:
                # beside a free port another program had the next: try another free one
                if self.snapshot_addr or not self.addr.endswith(":0"):
                    raise
        else:
            raise UsageError(f"no free pair of ports for events on {self.addr!r}")
        # the monitor's handlers, so that a failure is published when it is declared (a
        # closed connection fails a heart between beats)
        self.monitor.add_new_heart_handler(self._new_heart)
        self.monitor.add_failure_handler(self._heart_failure)
        self.monitor.add_beat_handler(self._beat)
        self._spawn(self._answer, snapshots)
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        cap = ConnectionCap(self.connections or connection_cap(limit))
        self._capped = CappedListeners((socket, snapshots), cap, "events")
        self._capped.open()
        for watch in self._capped.watches:
            self._spawn(watch.run)

    def _close(self) -> None:
        with contextlib.suppress(ValueError):  # never added: the bind failed
            self.monitor.remove_new_heart_handler(self._new_heart)
            self.monitor.remove_failure_handler(self._heart_failure)
            self.monitor.remove_beat_handler(self._beat)
        if self._capped is not None:
            self._capped.close()
        close_sockets(self._socket, self._snapshots)
        self._socket = self._snapshots = None

    def _new_heart(self, heart: bytes) -> None:
        self._send(NEW_HEART, heart)

    def _heart_failure(self, failure: Failure) -> None:
        self._send(HEART_FAILURE, failure.heart, **failure.as_json())

    def _beat(self, beat: Beat) -> None:
        for mistake in beat.false_failures:
            self._send(FALSE_FAILURE, mistake.heart, **mistake.as_json())
        for failure in beat.unreachable:
            self._send(UNREACHABLE, failure.heart, **failure.as_json())
        if beat.mass_silence_began or beat.mass_silence_ended:
            self._send(
                MASS_SILENCE,
                b"",
                state="began" if beat.mass_silence_began else "ended",
                suspects=len(beat.suspects),
                held=len(beat.held),
                released=len(beat.released),
            )

    def _send(self, kind: bytes, identity: bytes, **fields: object) -> None:
        self.seq += 1
        body = {
            "event": kind.decode(),
            "heart": display_id(identity) if identity else None,
            "beat": self.monitor.ledger.counters.beats,
            "time": time.time(),
            "seq": self.seq,
            **fields,
        }
        frames = [kind, identity, json.dumps(body).encode()]
        self._tail.add(self.seq, frames)
        if self._saved is not None:
            self._saved.published(self.seq, frames)
        self._send_frames(frames)

    def _send_frames(self, frames: Sequence[bytes]) -> None:
        if self._socket is None:
            return
        try:
            # A PUB never blocks: a subscriber whose queue is full loses events, not us time.
            self._socket.send_multipart(frames, zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            pass

    def _answer(self, socket: zmq.green.Socket) -> None:
        """Answer each snapshot or catch-up request, to the one who asked."""
        while True:
            try:
                request = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                wait_for_messages(socket, 1.0)
                continue
            who, what = request[0], request[1:]
            events = None
            if what[:1] == [SINCE] and len(what) == 2 and what[1].isdigit():
                events = self._tail.since(int(what[1]), self.seq)
            replies = (
                [[*frames] for frames in events] + [[DONE, b"", self._stamp({"event": "done"})]]
                if events is not None
                else [[HEARTS, b"", self._snapshot()]]
            )
            for reply in replies:
                try:
                    socket.send_multipart([who, *reply], zmq.NOBLOCK)
                except zmq.ZMQError:  # gone, or too slow to read its answer: it asks again
                    break

    def _snapshot(self) -> bytes:
        hearts = sorted(display_id(heart) for heart in self.monitor.hearts)
        return self._stamp({"event": "hearts", "hearts": hearts})

    def _stamp(self, body: dict[str, Any]) -> bytes:
        return json.dumps({**body, "seq": self.seq, "time": time.time()}).encode()


@attrs.define(eq=False)
class EventClient:
    """Follows an :class:`EventStream` at ``addr``: :meth:`events` yields every event once, in
    order, as JSON objects, catching up through the snapshot socket (``snapshot_addr``, by
    default :func:`snapshot_address`) whenever events were lost. It starts from a ``hearts``
    snapshot, or after the event ``since`` (a ``seq`` a client saw before)."""

    addr: str
    snapshot_addr: str | None = None
    since: int | None = None
    context: zmq.Context[Any] | None = None
    #: the ``seq`` of the last event yielded (or of the snapshot)
    last: int | None = attrs.field(default=None, init=False)
    _sub: zmq.Socket[Any] | None = attrs.field(default=None, init=False)
    _ask: zmq.Socket[Any] | None = attrs.field(default=None, init=False)

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Every event from now on; stops after ``timeout`` seconds without one."""
        context = self.context or zmq.Context.instance()
        self._sub = sub = context.socket(zmq.SUB)
        self._ask = ask = context.socket(zmq.DEALER)
        for socket in (sub, ask):
            socket.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        connect(sub, self.addr, "events")  # first: what comes while the snapshot is made is kept
        connect(ask, self.snapshot_addr or snapshot_address(self.addr), "snapshots")
        follower = Follower(-1)
        if self.since is None:
            yield from self._ask_for(None, follower, timeout)
        else:
            follower.last = self.since
            yield from self._ask_for(self.since, follower, timeout)
        while sub.poll(None if timeout is None else timeout * 1000):
            frames = sub.recv_multipart()
            event = json.loads(frames[2])
            step = follower.step(event["seq"])
            if step is Step.CATCH_UP:
                yield from self._ask_for(follower.last, follower, timeout)
                step = follower.step(event["seq"])
            if step is Step.DELIVER:
                yield self._delivered(event, follower)

    def close(self) -> None:
        close_sockets(self._sub, self._ask)
        self._sub = self._ask = None

    def _ask_for(
        self, since: int | None, follower: Follower, timeout: float | None
    ) -> Iterator[dict[str, Any]]:
        """The events after ``since`` (or the snapshot, if None) from the snapshot socket;
        nothing if it has not answered within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            assert self._ask is not None
            self._ask.send_multipart([SNAPSHOT] if since is None else [SINCE, b"%d" % since])
            while self._ask.poll(int(ASK_AGAIN * 1000)):
                kind, _, body = self._ask.recv_multipart()
                event = json.loads(body)
                if kind == DONE:
                    return
                if kind == HEARTS:
                    follower.last = event["seq"]
                    yield self._delivered(event, follower)
                    return
                if follower.step(event["seq"]) is Step.DELIVER:
                    yield self._delivered(event, follower)
            if deadline is not None and time.monotonic() > deadline:
                return
            # gone with the request, or with part of the answer: from where we are, anew
            since = None if since is None else follower.last
            self._ask = self._renewed(self._ask)

    def _renewed(self, ask: zmq.Socket[Any]) -> zmq.Socket[Any]:
        """A new socket in place of ``ask``, whose peer went away with a request (a DEALER
        would keep it queued for the peer, not the one that took its place)."""
        context = self.context or zmq.Context.instance()
        ask.close(linger=0)
        ask = context.socket(zmq.DEALER)
        ask.linger = 0
        connect(ask, self.snapshot_addr or snapshot_address(self.addr), "snapshots")
        return ask

    def _delivered(self, event: dict[str, Any], follower: Follower) -> dict[str, Any]:
        follower.delivered(event["seq"])
        self.last = follower.last
        return event


def snapshot_address(events: str) -> str:
    """Where the snapshot socket of a stream bound on ``events`` is: the next port of a TCP
    address; beside an IPC or inproc name."""
    transport, _, rest = events.partition("://")
    if transport == "tcp":
        host, _, port = rest.rpartition(":")
        return f"tcp://{host}:{int(port) + 1}" if port.isdigit() else events
    return f"{events}-snapshot"
