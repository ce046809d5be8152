"""The ZAP authenticator: a greenlet that answers ZeroMQ's questions about CURVE peers.

ZeroMQ asks the handler bound at :data:`ZAP_ENDPOINT` in a socket's context about every new
connection to a CURVE server socket; the answer is :func:`greenheart.core.zap.zap_reply`'s.
"""

from __future__ import annotations

import logging

import attrs
import zmq
import zmq.green

from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.zap import zap_reply
from greenheart.green.lifecycle import Service
from greenheart.green.sockets import close_sockets, wait_for_messages

log = logging.getLogger("greenheart.curve")

#: where ZeroMQ sends its authentication requests, one handler per context
ZAP_ENDPOINT = "inproc://zeromq.zap.01"


@attrs.define(eq=False)
class Authenticator(Service):
    """A ZAP handler in a greenlet: admits the connections whose keys are ``allowed``.

    One per context, started before the sockets it guards are bound.
    """

    context: zmq.green.Context
    #: the Z85 public keys let in; None lets any key in (encryption only)
    allowed: frozenset[bytes] | None
    #: term the context on :meth:`stop` (after the sockets in it are closed)
    owns_context: bool = False
    admitted: int = attrs.field(default=0, init=False)
    #: connections refused: key not allowed, or not CURVE
    refused: int = attrs.field(default=0, init=False)
    _socket: zmq.green.Socket | None = attrs.field(default=None, init=False)
    _limited: RateLimitedLog = attrs.field(factory=lambda: RateLimitedLog(log), init=False)

    def _open(self) -> None:
        socket = self.context.socket(zmq.REP)
        socket.linger = 0
        try:
            socket.bind(ZAP_ENDPOINT)
        except zmq.ZMQError:
            socket.close()
            raise RuntimeError(
                "this context already has a ZAP handler; give each CURVE monitor its own context"
            ) from None
        self._socket = socket
        self._spawn(self._serve, socket)

    def _close(self) -> None:
        close_sockets(self._socket)
        if self.owns_context and not self.context.closed:
            self.context.term()

    def _serve(self, socket: zmq.green.Socket) -> None:
        while True:
            # ZeroMQ's descriptor signals edges, and a send can swallow the edge of the next
            # request: answer everything queued, and look again at least once a second.
            while True:
                try:
                    request = socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                socket.send_multipart(self._answer(request))
            wait_for_messages(socket, 1.0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        reply, admitted = zap_reply(request, self.allowed)
        if admitted:
            self.admitted += 1
        else:
            self.refused += 1
            address = request[3].decode("ascii", "replace") if len(request) > 3 else "?"
            self._limited(
                logging.WARNING,
                "refused",
                "refused a connection from %s: %s",
                address,
                reply[3].decode(),
            )
        return reply
