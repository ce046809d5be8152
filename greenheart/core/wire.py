"""The wire format, ipyparallel's, kept in one place.

A ping is ``str(lifetime)`` as ASCII bytes, published as a single frame. A heart
echoes it from a DEALER socket, so the monitor's ROUTER receives two frames: the
heart's identity, then the payload it echoed. A heart that stops cleanly sends :data:`LEAVE`
the same way, once, before it closes its DEALER.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

#: ``str(float)`` never needs more than 24 characters; anything longer is not a ping.
MAX_PAYLOAD_BYTES = 64

#: ZeroMQ routing identities are 1 to 255 bytes.
MAX_IDENTITY_BYTES = 255

#: what a heart that stops cleanly sends where an echo goes, once: no ``str(float)``, so no ping.
#: ipyparallel's monitor logs it as a "bad heartbeat" and ignores it; a greenheart monitor older
#: than the leave counts it a stale pong.
LEAVE = b"greenheart:leave"

_PRINTABLE = frozenset(string.printable.encode("ascii")) - frozenset(b"\t\n\r\x0b\x0c")


def encode_ping(lifetime: float) -> bytes:
    """The payload of the ping sent when the monitor has been beating for ``lifetime`` seconds."""
    return str(lifetime).encode("ascii")


def split_pong(frames: Sequence[bytes]) -> tuple[bytes, bytes] | None:
    """``(identity, payload)`` of a pong as the ROUTER received it, or None if it is malformed."""
    if len(frames) != 2:
        return None
    identity, payload = frames
    if not identity or len(identity) > MAX_IDENTITY_BYTES or len(payload) > MAX_PAYLOAD_BYTES:
        return None
    return identity, payload


def display_id(identity: bytes) -> str:
    """A heart identity as people read it: printable ASCII as it is, anything else as ``0x`` hex."""
    if identity and all(byte in _PRINTABLE for byte in identity):
        return identity.decode("ascii")
    return "0x" + identity.hex()


def parse_id(text: str) -> bytes:
    """The inverse of :func:`display_id`, for identities typed on a command line."""
    if text.startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            pass
    return text.encode("utf-8")
