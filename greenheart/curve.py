"""CURVE: encrypted heartbeats, and only the hearts whose keys are allowed.

The monitor holds a server key pair and runs a ZAP authenticator (RFC 27) as a greenlet:
ZeroMQ asks it about every new connection, and it lets in only the client public keys of
an allow-list. Each message of an admitted connection carries the key it was admitted
with (the ZAP User-Id), which the ledger uses to bind a heart identity to the key that
first answered for it, so one allowed heart cannot answer for another.

Key files are zmq.auth's: ``NAME.key`` holds a public key, ``NAME.key_secret`` the pair.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import attrs
import gevent
import gevent.pool
import zmq
import zmq.auth
import zmq.green
import zmq.utils.z85

from greenheart.ratelimit import RateLimitedLog
from greenheart.sockets import close_sockets, wait_for_messages

log = logging.getLogger("greenheart.curve")

#: where ZeroMQ sends its authentication requests, one handler per context
ZAP_ENDPOINT = "inproc://zeromq.zap.01"

#: the ZAP domain of greenheart's sockets
DOMAIN = b"greenheart"


def _z85_key(value: object) -> bytes:
    if isinstance(value, str):
        value = value.encode("ascii")
    if not isinstance(value, bytes) or len(value) != 40:
        raise ValueError("a CURVE key is 40 bytes of Z85 text")
    zmq.utils.z85.decode(value)  # raises on characters outside Z85
    return value


@attrs.frozen(repr=False)
class KeyPair:
    """A CURVE key pair, Z85-encoded. Its repr never shows the secret."""

    public: bytes = attrs.field(converter=_z85_key)
    secret: bytes = attrs.field(converter=_z85_key)

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(*zmq.curve_keypair())

    @classmethod
    def load(cls, path: str | os.PathLike) -> KeyPair:
        """Read a ``.key_secret`` file written by ``greenheart keys`` or zmq.auth."""
        public, secret = zmq.auth.load_certificate(path)
        if secret is None:
            raise ValueError(f"{path} holds no secret key (use the .key_secret file)")
        return cls(public, secret)

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r})"


def load_public_key(path: str | os.PathLike) -> bytes:
    """The public key in a ``.key`` (or ``.key_secret``) file."""
    return _z85_key(zmq.auth.load_certificate(path)[0])


def load_allowed_keys(directory: str | os.PathLike) -> frozenset[bytes]:
    """The public keys of every ``.key`` file in ``directory``."""
    if not Path(directory).is_dir():
        raise FileNotFoundError(f"no directory of allowed keys at {directory}")
    return frozenset(_z85_key(key) for key in zmq.auth.load_certificates(directory))


def write_key_pair(directory: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` into ``directory``; return their paths."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


@attrs.frozen
class ServerCurve:
    """A monitor's CURVE settings: its key pair, and which heart keys may connect."""

    keys: KeyPair = attrs.field(validator=attrs.validators.instance_of(KeyPair))
    #: the public keys of the hearts allowed in; None lets any key in (encryption only)
    allowed: frozenset[bytes] | None = attrs.field(
        converter=attrs.converters.optional(lambda keys: frozenset(map(_z85_key, keys)))
    )

    def apply(self, socket: zmq.Socket) -> None:
        socket.setsockopt(zmq.CURVE_SERVER, 1)
        socket.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
        socket.setsockopt(zmq.ZAP_DOMAIN, DOMAIN)


@attrs.frozen
class ClientCurve:
    """A heart's CURVE settings: the monitor's public key, and the heart's own key pair."""

    server_key: bytes = attrs.field(converter=_z85_key)
    keys: KeyPair = attrs.field(validator=attrs.validators.instance_of(KeyPair))

    def apply(self, socket: zmq.Socket) -> None:
        socket.setsockopt(zmq.CURVE_SERVERKEY, self.server_key)
        socket.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
        socket.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)


def zap_reply(request: list[bytes], allowed: frozenset[bytes] | None) -> tuple[list[bytes], bool]:
    """The ZAP reply to ``request``, and whether it admits the peer.

    A request is ``[version, request id, domain, address, identity, mechanism,
    *credentials]``; for CURVE the one credential is the client's 32-byte public key. The
    reply's User-Id is that key in Z85, which ZeroMQ then attaches to every message.
    """
    if len(request) < 6 or request[0] != b"1.0":
        request_id = request[1] if len(request) > 1 else b""
        return [b"1.0", request_id, b"500", b"malformed ZAP request", b"", b""], False
    request_id, mechanism, credentials = request[1], request[5], request[6:]
    if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
        return [b"1.0", request_id, b"400", b"CURVE only", b"", b""], False
    key = zmq.utils.z85.encode(credentials[0])
    if allowed is not None and key not in allowed:
        return [b"1.0", request_id, b"400", b"key not allowed", b"", b""], False
    return [b"1.0", request_id, b"200", b"OK", key, b""], True


@attrs.define(eq=False)
class Authenticator:
    """A ZAP handler in a greenlet: admits the connections whose keys are ``allowed``.

    One per context (ZeroMQ asks the handler bound at :data:`ZAP_ENDPOINT` in the
    connecting socket's context), started before the sockets it guards are bound.
    """

    context: zmq.green.Context
    allowed: frozenset[bytes] | None
    #: term the context on :meth:`stop` (after the sockets in it are closed)
    owns_context: bool = False
    admitted: int = attrs.field(default=0, init=False)
    #: connections refused: key not allowed, or not CURVE
    refused: int = attrs.field(default=0, init=False)
    _socket: zmq.green.Socket | None = attrs.field(default=None, init=False)
    _group: gevent.pool.Group = attrs.field(factory=gevent.pool.Group, init=False)
    _limited: RateLimitedLog = attrs.field(factory=lambda: RateLimitedLog(log), init=False)

    def start(self) -> None:
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
        self._group.spawn(self._serve, socket)

    def stop(self) -> None:
        """Stop answering; safe to call twice."""
        self._group.kill()
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
                logging.WARNING, "refused", "refused a connection from %s: %s", address,
                reply[3].decode(),
            )  # fmt: skip
        return reply
