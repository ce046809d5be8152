"""What a controller's connection files tell an engine, and a client, about where it listens.

``ipcontroller`` writes ``security/ipcontroller-engine.json`` (registration, heartbeat ports,
the Session key) and ``ipcontroller-client.json`` (with the hub's notification port, where it
announces each engine registered and unregistered) in its profile directory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import attrs
import gevent

from greenheart.core.errors import UsageError

ENGINE_FILE = "ipcontroller-engine.json"
CLIENT_FILE = "ipcontroller-client.json"


def _optional_key(value: object) -> bytes | None:
    if not value:
        return None
    if isinstance(value, str):
        return value.encode("ascii")
    if isinstance(value, bytes):
        return value
    raise TypeError(f"a CURVE key is text or bytes, not {value!r}")


@attrs.frozen(repr=False)
class ControllerConnection:
    """The addresses and credentials an engine needs to join a controller."""

    interface: str
    registration: int
    hb_ping: int
    hb_pong: int
    key: bytes
    signature_scheme: str
    pack: str = "json"
    unpack: str = "json"
    #: the controller's public key when the cluster uses CURVE
    curve_serverkey: bytes | None = attrs.field(default=None, converter=_optional_key)
    #: the hub's notification port (from the client file), if known
    notification: int | None = None
    source: str = ""

    def __repr__(self) -> str:  # never the key
        return f"ControllerConnection({self.interface}, registration {self.registration})"

    def url(self, port: int) -> str:
        return f"{self.interface}:{port}"

    @property
    def registration_url(self) -> str:
        return self.url(self.registration)

    @property
    def ping_url(self) -> str:
        return self.url(self.hb_ping)

    @property
    def pong_url(self) -> str:
        return self.url(self.hb_pong)

    @property
    def notification_url(self) -> str | None:
        return None if self.notification is None else self.url(self.notification)

    def session(self) -> Any:
        """A ``jupyter_client`` Session that signs and checks messages as the controller does."""
        from jupyter_client.session import Session

        return Session(
            key=self.key,
            signature_scheme=self.signature_scheme,
            packer=self.pack,
            unpacker=self.unpack,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, wait: float = 0.0) -> ControllerConnection:
        """Read an engine connection file (and the client file beside it, for the hub's
        notifications), waiting up to ``wait`` seconds for it to appear."""
        path = Path(path)
        engine = _read(path, wait)
        client_path = path.with_name(CLIENT_FILE)
        client = _read(client_path, 0.0) if client_path.exists() else {}
        try:
            return cls(
                interface=engine["interface"],
                registration=int(engine["registration"]),
                hb_ping=int(engine["hb_ping"]),
                hb_pong=int(engine["hb_pong"]),
                key=engine.get("key", "").encode("utf8"),
                signature_scheme=engine.get("signature_scheme", "hmac-sha256"),
                pack=engine.get("pack", "json"),
                unpack=engine.get("unpack", "json"),
                curve_serverkey=engine.get("curve_serverkey"),
                notification=int(client["notification"]) if "notification" in client else None,
                source=str(path),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise UsageError(f"{path} is not an engine connection file: {error!r}") from error

    @classmethod
    def from_profile_dir(
        cls, profile_dir: str | os.PathLike[str], *, wait: float = 0.0
    ) -> ControllerConnection:
        return cls.load(Path(profile_dir) / "security" / ENGINE_FILE, wait=wait)


def _read(path: Path, wait: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                raise UsageError(
                    f"no connection file at {path}: is the controller running?"
                ) from None
        except (OSError, ValueError) as error:  # half written: try again until the deadline
            if time.monotonic() >= deadline:
                raise UsageError(f"cannot read the connection file {path}: {error}") from error
        else:
            if isinstance(data, dict):
                return data
            raise UsageError(f"{path} is not a connection file (not a JSON object)")
        gevent.sleep(0.1)  # works outside a greenlet too, and blocks no other
