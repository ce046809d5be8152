"""CURVE: key pairs, and the settings that encrypt a monitor's sockets and its hearts'.

Plain pyzmq (``zmq.auth``): importing this loads no gevent. A monitor made with a
:class:`ServerCurve` lets in only the keys it allows, through its ZAP authenticator.
"""

from __future__ import annotations

from greenheart.green.curve import (
    ClientCurve,
    KeyPair,
    ServerCurve,
    load_allowed_keys,
    load_public_key,
    write_key_pair,
)

__all__ = [
    "ClientCurve",
    "KeyPair",
    "ServerCurve",
    "load_allowed_keys",
    "load_public_key",
    "write_key_pair",
]
