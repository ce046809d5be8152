"""What ZeroMQ's socket monitor says about a socket's connections: who was refused, and which
connections closed.

libzmq reports each connection whose handshake failed: a plaintext peer against a CURVE
socket (or bytes that are not ZeroMQ at all), a peer with the wrong server key, a key the
authenticator refused. A :class:`ConnectionWatch` reads those events from an inproc PAIR
socket, counts every refused peer by reason, and logs it (rate-limited) with the endpoint
that refused it. libzmq 4.3's events do not say who the peer was, and its connection is
closed before the event can be read, so the peer's address is logged only where it is known:
by the ZAP authenticator, for a refused key.

With ``on_accepted`` and ``on_closed``, the watch also reports every connection accepted and
closed, by descriptor: the monitor's ledger keeps which heart answers on which connection
(:class:`~greenheart.core.connections.ConnectionBook`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import struct
import time
from collections.abc import Callable

import attrs
import gevent
import zmq
import zmq.green

from greenheart.core.ratelimit import RateLimitedLog
from greenheart.green.sockets import close_sockets, wait_for_messages

log = logging.getLogger("greenheart.connections")

#: a refused peer's reason, by the event that told
REFUSALS: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth",
}

#: what each reason means, for the log
REASONS = {
    "protocol": "its handshake broke the protocol (plaintext against CURVE, not ZeroMQ, a wrong"
    " server key)",
    "handshake": "its handshake failed (plaintext against CURVE, a wrong server key, a connection"
    " cut short)",
    "auth": "the authenticator refused its key",
}

WATCHED = sum(REFUSALS)

#: what a watch that reports connections watches besides
CONNECTIONS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED

#: seconds the watch sleeps at most before it looks at the queue again
WAKE_INTERVAL = 1.0

#: seconds between two reads of the events at least: what a closed connection may wait to be
#: seen in a burst of events, and what bounds the wake-ups a storm of connections costs
READ_EVERY = 0.005

#: events queued for the watch before libzmq's I/O thread waits for it to read them. libzmq
#: sends an event without ZMQ_DONTWAIT, from its I/O thread: at pyzmq's 1,000 a storm of
#: connections made that thread, and with it every heart's pings and pongs, wait on Python.
#: Two frames of a few dozen bytes an event: at most a few MiB.
EVENTS_RCVHWM = 100_000

#: an event's first frame: the event (16 bits) and its value (32), in the machine's order
_EVENT = struct.Struct("=HI")

# A storm of connections makes thousands of events a second: they are read with the plain
# pyzmq method (nothing here waits) and parsed by hand, not by zmq.utils.monitor, whose
# conversions to zmq.Event cost more than everything else an event costs.
_base_recv = zmq.Socket.recv


@attrs.define(eq=False)
class ConnectionWatch:
    """Counts the peers ``socket`` refused, by reason; its owner runs :meth:`run` in a greenlet
    and calls :meth:`close` when it stops. With ``on_accepted`` and ``on_closed``, it calls
    them with the descriptor of each connection accepted and closed."""

    socket: zmq.green.Socket
    #: which of its owner's sockets this is, for the log ("pings", "pongs")
    role: str
    on_accepted: Callable[[int], object] | None = None
    on_closed: Callable[[int], object] | None = None
    #: reason -> peers refused ("protocol", "handshake", "auth")
    refused: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    _events: zmq.green.Socket | None = attrs.field(default=None, init=False)
    _limited: RateLimitedLog = attrs.field(factory=lambda: RateLimitedLog(log), init=False)

    def open(self) -> None:
        watched = WATCHED | (CONNECTIONS if self.on_closed is not None else 0)
        address = f"inproc://greenheart-watch-{id(self):x}"
        self.socket.monitor(address, watched)
        events = self._events = self.socket.context.socket(zmq.PAIR)
        events.linger = 0
        events.setsockopt(zmq.RCVHWM, EVENTS_RCVHWM)
        events.connect(address)

    def close(self) -> None:
        if self._events is not None and not self.socket.closed:
            with contextlib.suppress(zmq.ZMQError):  # the socket is going away anyway
                self.socket.disable_monitor()
        close_sockets(self._events)
        self._events = None

    def run(self) -> None:
        """Read the socket's events until killed."""
        events = self._events
        assert events is not None, "open() first"
        while True:
            self.read_queued()
            read_at = time.monotonic()
            wait_for_messages(events, WAKE_INTERVAL)
            # In a burst (a storm of connections) events come one by one: waking for each
            # would cost the monitor's thread more than the events themselves.
            if (rest := read_at + READ_EVERY - time.monotonic()) > 0:
                gevent.sleep(rest)

    def read_queued(self) -> None:
        """Take every event queued now, without waiting."""
        events = self._events
        if events is None:
            return
        handle, noblock = self.handle, zmq.NOBLOCK
        while True:
            try:
                event = _base_recv(events, noblock)
            except zmq.Again:
                return
            endpoint = _base_recv(events, noblock)  # every event is two frames, sent at once
            kind, value = _EVENT.unpack_from(event)
            handle(kind, value, endpoint)

    def handle(self, kind: int, fd: int, endpoint: bytes) -> None:
        """Take one event of ``kind`` (``zmq.EVENT_...``) about descriptor ``fd`` on the
        socket's ``endpoint``."""
        if kind == zmq.EVENT_ACCEPTED:
            if self.on_accepted is not None:
                self.on_accepted(fd)
        elif kind == zmq.EVENT_DISCONNECTED:
            if self.on_closed is not None:
                self.on_closed(fd)
        elif kind in REFUSALS:
            reason = REFUSALS[kind]
            self.refused[reason] += 1
            self._limited(
                logging.WARNING,
                f"refused {reason}",
                "refused a peer on the %s socket (%s): %s",
                self.role,
                endpoint.decode("utf-8", "replace"),
                REASONS[reason],
            )
