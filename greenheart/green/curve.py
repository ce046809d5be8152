"""CURVE: key pairs, key files, and the settings of CURVE sockets (plain pyzmq, no gevent).

The monitor holds a server key pair and runs a ZAP authenticator
(:mod:`greenheart.green.zap`) that lets in only the client public keys of an allow-list.
Each message of an admitted connection carries the key it was admitted with (the ZAP
User-Id), which the ledger uses to bind a heart identity to the key that first answered
for it, so one allowed heart cannot answer for another.

Key files are zmq.auth's: ``NAME.key`` holds a public key, ``NAME.key_secret`` the pair.
Nothing here imports gevent, so tools that only write or read keys need not load it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import attrs
import zmq
import zmq.auth
import zmq.utils.z85

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


def _optional_keys(keys: Iterable[object] | None) -> frozenset[bytes] | None:
    return None if keys is None else frozenset(map(_z85_key, keys))


@attrs.frozen
class ServerCurve:
    """A monitor's CURVE settings: its key pair, and which heart keys may connect."""

    keys: KeyPair = attrs.field(validator=attrs.validators.instance_of(KeyPair))
    #: the public keys of the hearts allowed in; None lets any key in (encryption only)
    allowed: frozenset[bytes] | None = attrs.field(converter=_optional_keys)

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
