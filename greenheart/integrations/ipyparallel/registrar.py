"""The simulated engines' side of the hub's registration socket: Session-signed requests out,
replies in, each put to the :class:`~greenheart.core.registrations.Registry`.

Requests go through one DEALER shared by every engine, or (``shared=False``) one DEALER per
engine, closed once it is answered. On the shared one, a frame of the engine's uuid ahead of
each request comes back on its reply and names the engine it answers; the hub's error replies
come untagged, and answer the oldest request still waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs
import zmq
import zmq.green

from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.registrations import Registry, reply_of
from greenheart.green.sockets import close_sockets, connect

log = logging.getLogger("greenheart.engines")

#: how long (ms) a leaving engine's own registrar may take to deliver its unregistration request
LEAVING_LINGER_MS = 1000


@attrs.define(eq=False)
class Registrar:
    """Asks for registrations and unregistrations at ``url``; ``on_accepted(uuid)`` starts
    an accepted engine's heart. ``socket(kind)`` makes a socket of the engines' context
    (CURVE applied); ``spawn`` runs a greenlet owned by the engines."""

    url: str
    session: Any
    registry: Registry
    socket: Callable[[int], zmq.green.Socket]
    spawn: Callable[..., object]
    on_accepted: Callable[[str], object]
    limited: RateLimitedLog
    clock: Callable[[], float]
    shared: bool = True
    identity: bytes = b"registrar"
    _shared: zmq.green.Socket | None = attrs.field(default=None, init=False)

    def open(self) -> None:
        if self.shared:
            self._shared = self.socket(zmq.DEALER)
            self._shared.setsockopt(zmq.IDENTITY, self.identity)
            connect(self._shared, self.url, "registration")
            self.spawn(self._read_replies, self._shared)

    def close(self) -> None:
        close_sockets(self._shared)

    def ask(self, uuid: str) -> None:
        self.registry.asked(uuid, self.clock())
        if self._shared is not None:
            self._request(self._shared, uuid)
        else:
            self.spawn(self._register_alone, uuid)

    def ask_to_leave(self, engine_id: int | None) -> None:
        """Ask the hub to unregister engine ``engine_id``, as a leaving ipengine does."""
        content = {"id": engine_id}
        if self._shared is not None:
            self.session.send(self._shared, "unregistration_request", content=content)
            return
        socket = self.socket(zmq.DEALER)
        socket.linger = LEAVING_LINGER_MS  # closed at once, delivered on libzmq's time
        connect(socket, self.url, "registration")
        self.session.send(socket, "unregistration_request", content=content)
        socket.close()

    def _request(self, socket: zmq.Socket, uuid: str) -> None:
        self.session.send(
            socket, "registration_request", content={"uuid": uuid}, ident=[uuid.encode()]
        )

    def _register_alone(self, uuid: str) -> None:
        socket = self.socket(zmq.DEALER)
        try:
            socket.setsockopt(zmq.IDENTITY, uuid.encode())
            connect(socket, self.url, "registration")
            self._request(socket, uuid)
            if socket.poll(round(self.registry.reply_timeout * 1000), zmq.POLLIN):
                self._answered(uuid, self._split(socket.recv_multipart())[1])
        finally:
            close_sockets(socket)

    def _read_replies(self, socket: zmq.green.Socket) -> None:
        while True:
            tag, message = self._split(socket.recv_multipart())
            uuid = self._whose_reply(tag)
            if uuid is None:
                self.registry.unreadable()
                self.limited(logging.WARNING, "reply", "a registration reply nobody waits for")
                continue
            self._answered(uuid, message)

    def _split(self, frames: list[bytes]) -> tuple[str | None, list[bytes] | None]:
        """A reply's tag (the uuid its request carried) and its message; None for what
        is missing."""
        try:
            idents, message = self.session.feed_identities(frames)
        except ValueError:  # no delimiter: not a message at all
            return None, None
        tag = idents[-1].decode("utf8", "replace") if idents else None
        return tag, message

    def _whose_reply(self, tag: str | None) -> str | None:
        """The engine a reply answers: the one its tag names, even if it was given up on
        (the registry then ignores it); else the oldest request still waiting."""
        if tag is not None and tag in self.registry:
            return tag
        return self.registry.oldest_asked()

    def _answered(self, uuid: str, message: list[bytes] | None) -> None:
        try:
            if message is None:
                raise ValueError("no <IDS|MSG> delimiter")
            answer = self.session.deserialize(message)
            reply = reply_of(answer["header"]["msg_type"], answer["content"])
        except Exception as error:  # a reply we cannot check is a refusal we cannot read
            self._refused(uuid, f"unreadable reply from the hub ({error!r}): is the key right?")
            return
        if reply.engine_id is None:
            self._refused(uuid, reply.error or "refused")
        elif self.registry.accepted(uuid, self.clock(), reply.engine_id, reply.period_ms):
            self.on_accepted(uuid)

    def _refused(self, uuid: str, error: str) -> None:
        self.registry.refused(uuid, error)
        self.limited(logging.ERROR, "refused", "the hub refused engine %s: %s", uuid, error)
