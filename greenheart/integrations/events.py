"""The monitor's events on a ZeroMQ socket, for processes that are not in this one.

This is greenheart's own protocol, not ipyparallel's monitor stream (which sends signed
Jupyter messages to its hub): plain frames that any ZeroMQ SUB socket, in any language, can
follow to learn who joins and who fails. Every event is three frames:

    [kind, identity, json]

``kind`` is ``new_heart`` or ``heart_failure`` (subscribe to a prefix to filter),
``identity`` the heart's raw identity, and ``json`` an object with the event, the heart
as text, the beat number and the time (Unix seconds). A ``heart_failure`` carries its
certificate's fields too (``cause``, ``misses``, ``silent_ms``, ``connected``, ...: see
:meth:`greenheart.core.failures.Failure.as_json`). Two more kinds, which a subscriber to
``new_heart`` or ``heart_failure`` alone never sees:

- ``false_failure``: a heart failed for its silence answered again on the same connection;
  its JSON says how long it was gone (``gone_ms``) and why it had been failed;
- ``unreachable``: a heart failed for its silence (as hung) whose connection has timed out
  since: its host or its network is gone, not only its process. The JSON is its certificate,
  amended (``diagnosis`` ``unreachable``, ``timed_out`` true);
- ``mass_silence`` (empty identity): the monitor began holding hearts as suspects of a mass
  silence (``"state": "began"``), or holds none any more (``"ended"``).

The socket is an XPUB: a new subscriber first gets a ``hearts`` event whose JSON lists every
heart known, so it need not wait for hearts to join again to know who is there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence

import attrs
import zmq
import zmq.green

from greenheart.core.failures import Failure
from greenheart.core.values import Beat
from greenheart.core.wire import display_id
from greenheart.green.lifecycle import Service
from greenheart.green.monitor import HeartMonitor
from greenheart.green.sockets import (
    bind,
    close_sockets,
    default_context,
    endpoint,
    wait_for_messages,
)

log = logging.getLogger("greenheart.events")

NEW_HEART = b"new_heart"
HEART_FAILURE = b"heart_failure"
FALSE_FAILURE = b"false_failure"
UNREACHABLE = b"unreachable"
MASS_SILENCE = b"mass_silence"
HEARTS = b"hearts"

#: events queued per subscriber before the slowest ones lose some
EVENTS_SNDHWM = 100_000


@attrs.define(eq=False)
class EventStream(Service):
    """Publishes ``monitor``'s new-heart and heart-failure events on an XPUB bound to ``addr``."""

    monitor: HeartMonitor
    addr: str
    context: zmq.green.Context | None = None
    #: events published
    sent: int = attrs.field(default=0, init=False)
    _socket: zmq.green.Socket | None = attrs.field(default=None, init=False)

    @property
    def address(self) -> str:
        """Where subscribers connect (with the real port when ``addr`` had port 0)."""
        assert self._socket is not None, "start() first"
        return endpoint(self._socket)

    def _open(self) -> None:
        socket = (self.context or default_context()).socket(zmq.XPUB)
        self._socket = socket
        socket.linger = 0
        socket.setsockopt(zmq.SNDHWM, EVENTS_SNDHWM)
        # every subscription, so that every subscriber is welcomed
        socket.setsockopt(zmq.XPUB_VERBOSE, 1)
        bind(socket, self.addr, "events")
        # the monitor's handlers, so that a failure is published when it is declared (a
        # closed connection fails a heart between beats)
        self.monitor.add_new_heart_handler(self._new_heart)
        self.monitor.add_failure_handler(self._heart_failure)
        self.monitor.add_beat_handler(self._beat)
        self._spawn(self._welcome, socket)

    def _close(self) -> None:
        with contextlib.suppress(ValueError):  # never added: the bind failed
            self.monitor.remove_new_heart_handler(self._new_heart)
            self.monitor.remove_failure_handler(self._heart_failure)
            self.monitor.remove_beat_handler(self._beat)
        close_sockets(self._socket)
        self._socket = None

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
        body = {
            "event": kind.decode(),
            "heart": display_id(identity) if identity else None,
            "beat": self.monitor.ledger.counters.beats,
            "time": time.time(),
            **fields,
        }
        self._send_frames([kind, identity, json.dumps(body).encode()])

    def _send_frames(self, frames: Sequence[bytes]) -> None:
        if self._socket is None:
            return
        try:
            # An XPUB never blocks: a subscriber whose queue is full loses events, not us time.
            self._socket.send_multipart(frames, zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            pass

    def _welcome(self, socket: zmq.green.Socket) -> None:
        """Read subscriptions; answer each new one with the hearts known now."""
        while True:
            try:
                message = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                wait_for_messages(socket, 1.0)
                continue
            if message[:1] != b"\x01":
                continue  # an unsubscription
            hearts = sorted(display_id(heart) for heart in self.monitor.hearts)
            body = {"event": "hearts", "hearts": hearts, "time": time.time()}
            self._send_frames([HEARTS, b"", json.dumps(body).encode()])
