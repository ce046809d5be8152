"""The hub's notifications, as simulated engines follow them: registered, unregistered.

The hub announces on the channel its clients follow every engine it registered and every one
it unregistered; the announcements of these engines go to the
:class:`~greenheart.core.registrations.Registry`, the others' are skipped, and what cannot be
read is counted and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zmq.green

from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.registrations import Registry


def follow_notifications(
    socket: zmq.green.Socket,
    session: Any,
    registry: Registry,
    clock: Callable[[], float],
    limited: RateLimitedLog,
    on_unregistered: Callable[[str, float | None], object] | None = None,
) -> None:
    """Read the hub's notifications from ``socket`` for ever (a greenlet);
    ``on_unregistered(uuid, seconds since it was killed, or None)`` for each of these engines
    unregistered."""
    while True:
        frames = socket.recv_multipart()
        try:
            _, message = session.feed_identities(frames)
            notice = session.deserialize(message)
            kind = notice["header"]["msg_type"]
            uuid = notice["content"].get("uuid")
            if not isinstance(uuid, str):
                raise TypeError(f"a uuid of {type(uuid).__name__}")
        except Exception:
            registry.unreadable()
            limited(logging.WARNING, "notice", "an unreadable hub notification")
            continue
        if uuid not in registry:
            continue  # another client's engine
        now = clock()
        if kind == "registration_notification":
            registry.registered(uuid, now)
        elif kind == "unregistration_notification":
            seconds = registry.unregistered(uuid, now)
            if seconds is None and registry[uuid].killed_at is None:
                limited(logging.WARNING, "lost", "the hub unregistered engine %s, alive", uuid)
            if on_unregistered is not None:
                on_unregistered(uuid, seconds)
