"""Whether a CURVE peer is let in: the ZAP reply (ZeroMQ RFC 27), as a pure function.

ZeroMQ asks a ZAP handler about every new connection to a CURVE server socket. A request is
``[version, request id, domain, address, identity, mechanism, *credentials]``; for CURVE
the one credential is the client's 32-byte public key. The reply's User-Id is that key in
Z85 (ZeroMQ RFC 32), which ZeroMQ then attaches to every message of the connection.
"""

from __future__ import annotations

from collections.abc import Sequence

_Z85_ALPHABET = (
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)

#: the bytes of a CURVE public key, before Z85
CURVE_KEY_BYTES = 32


def z85_encode(data: bytes) -> bytes:
    """``data`` (a multiple of 4 bytes long) in Z85: 5 characters for every 4 bytes."""
    if len(data) % 4:
        raise ValueError(f"Z85 encodes multiples of 4 bytes, not {len(data)}")
    encoded = bytearray()
    for start in range(0, len(data), 4):
        value = int.from_bytes(data[start : start + 4], "big")
        chunk = bytearray(5)
        for position in range(4, -1, -1):
            value, digit = divmod(value, 85)
            chunk[position] = _Z85_ALPHABET[digit]
        encoded += chunk
    return bytes(encoded)


def zap_reply(
    request: Sequence[bytes], allowed: frozenset[bytes] | None
) -> tuple[list[bytes], bool]:
    """The ZAP reply to ``request``, and whether it admits the peer.

    ``allowed`` holds the Z85 public keys let in; None lets any CURVE key in (encryption
    only).
    """
    if len(request) < 6 or request[0] != b"1.0":
        request_id = request[1] if len(request) > 1 else b""
        return [b"1.0", request_id, b"500", b"malformed ZAP request", b"", b""], False
    request_id, mechanism, credentials = request[1], request[5], request[6:]
    if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != CURVE_KEY_BYTES:
        return [b"1.0", request_id, b"400", b"CURVE only", b"", b""], False
    key = z85_encode(credentials[0])
    if allowed is not None and key not in allowed:
        return [b"1.0", request_id, b"400", b"key not allowed", b"", b""], False
    return [b"1.0", request_id, b"200", b"OK", key, b""], True
