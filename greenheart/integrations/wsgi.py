"""A WSGI view of a monitor, for embedding it in a gevent web server.

``GET /hearts`` answers JSON: whether the monitor runs (and what stopped it), its period and
counters, the hearts it holds as suspects of a mass silence, the certificates of its latest
failures and its latest false failures, and every known heart with its state (``beating``,
``on_probation`` or ``suspect``), beats missed in a row, and round trips::

    {"running": true, "stopped_by": null, "period_ms": 1000.0, "beats": 42, "counters": {...},
     "suspects": 0, "refused_peers": {}, "refusing_connections": false,
     "failures": [{"heart": "web-7", "cause": "missed", "misses": 2, "silent_ms": 2012.0, ...}],
     "false_failures": [],
     "hearts": [{"heart": "web-1", "state": "beating", "misses": 0,
                 "last_rtt_ms": 0.41, "mean_rtt_ms": 0.39, "max_rtt_ms": 1.2}, ...]}

The list is by identity, a page at a time: ``?limit=N`` hearts (1,000 unless said, at most
10,000), from the one after ``?after=ID``; ``"next"`` is the ``after`` of the next page, or null
at the end. ``?find=TEXT`` lists only the hearts whose identity or name holds ``TEXT`` (any
case), hearts failed lately and not back included, with ``"state": "failed"``, their
certificate and ``why``. Each heart's ``name`` is the page's (an engine id, under ipcontroller).

The status is 200 while the monitor runs and 503 once it has stopped, for health checks.
The body is produced in chunks that yield to the hub between them, so listing
thousands of hearts never holds up the monitor's beat (or anyone else) for long.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

import attrs

from greenheart.core.values import HeartState
from greenheart.core.wire import display_id
from greenheart.green.hub import yield_to_others
from greenheart.green.monitor import HeartMonitor

#: hearts written per chunk of the body
HEARTS_PER_CHUNK = 500

#: hearts a page of the list holds, unless ``limit`` says otherwise, and at most
LIMIT = 1000
MAX_LIMIT = 10_000

#: the latest failures and false failures shown
RECENT_SHOWN = 100

StartResponse = Callable[..., Any]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _state(state: HeartState) -> str:
    if state.suspect:
        return "suspect"
    return "on_probation" if state.misses else "beating"


def heart_json(state: HeartState) -> dict[str, Any]:
    trips = state.round_trips
    return {
        "heart": display_id(state.heart),
        "state": _state(state),
        "misses": state.misses,
        "last_rtt_ms": _ms(trips.last) if trips else None,
        "mean_rtt_ms": _ms(trips.mean) if trips else None,
        "max_rtt_ms": _ms(trips.max) if trips else None,
    }


def hearts_app(
    monitor: HeartMonitor, names: Callable[[bytes], str | None] | None = None
) -> Callable[[dict, StartResponse], Iterable[bytes]]:
    """A WSGI application serving ``GET /hearts`` for ``monitor`` (``names``: as the live
    page's)."""
    listing = _Listing(monitor, names)

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/hearts", "/hearts/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found; try /hearts\n"]
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        query = parse_qs(environ.get("QUERY_STRING", ""))
        limit = query.get("limit", [""])[0]
        if limit and not (limit.isdigit() and 0 < int(limit) <= MAX_LIMIT):
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [f"limit is a number of hearts, 1 to {MAX_LIMIT}\n".encode()]
        # a stopped monitor judges nobody: health checks must see it as down
        status = "200 OK" if monitor.running else "503 Service Unavailable"
        start_response(
            status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        )
        return listing.body(
            query.get("find", [""])[0],
            int(limit) if limit else LIMIT,
            query.get("after", [None])[0],
        )

    return app


@attrs.define(eq=False)
class _Listing:
    """The hearts by identity, sorted once a beat for every request, and pages of them."""

    monitor: HeartMonitor
    names: Callable[[bytes], str | None] | None
    _sorted: list[tuple[str, bytes]] = attrs.field(factory=list, init=False)
    _after_beat: int | None = attrs.field(default=None, init=False)

    def hearts(self) -> list[tuple[str, bytes]]:
        beats = self.monitor.ledger.counters.beats
        if beats != self._after_beat:
            self._sorted = sorted((display_id(h), h) for h in self.monitor.ledger.hearts)
            self._after_beat = beats
        return self._sorted

    def body(self, find: str, limit: int, after: str | None) -> Iterator[bytes]:
        monitor, names = self.monitor, self.names
        listed = self.hearts()
        if find:
            wanted = find.casefold()
            failed = {
                display_id(f.heart): f.heart
                for f in monitor.ledger.failures
                if f.heart not in monitor.ledger.hearts
            }
            listed = sorted(
                (key, heart)
                for key, heart in [*listed, *failed.items()]
                if wanted in key.casefold() or (names and wanted in (names(heart) or "").casefold())
            )
        start = 0 if after is None else bisect.bisect_right(listed, after, key=lambda kh: kh[0])
        page = listed[start : start + limit]
        more = start + limit < len(listed)
        yield json.dumps(_head(monitor))[:-1].encode() + b', "hearts": ['
        for first in range(0, len(page), HEARTS_PER_CHUNK):
            chunk = ", ".join(
                json.dumps(self._heart(heart))
                for _, heart in page[first : first + HEARTS_PER_CHUNK]
            )
            yield (", " if first else "").encode() + chunk.encode()
            yield_to_others()
        yield b'], "next": ' + json.dumps(page[-1][0] if more else None).encode() + b"}\n"

    def _heart(self, heart: bytes) -> dict[str, Any]:
        ledger = self.monitor.ledger
        name = self.names(heart) if self.names else None
        if heart in ledger.hearts:
            state = HeartState(
                heart,
                ledger.on_probation.get(heart, 0),
                ledger.round_trips(heart),
                heart in ledger.suspects,
            )
            return {**heart_json(state), "name": name}
        failure = next(f for f in reversed(ledger.failures) if f.heart == heart)
        return {
            **failure.as_json(),
            "name": name,
            "state": "failed",
            "why": failure.describe(),
        }


def _head(monitor: HeartMonitor) -> dict[str, Any]:
    status = monitor.status()
    counters = status.counters
    return {
        "running": status.running,
        "stopped_by": None if monitor.exception is None else repr(monitor.exception),
        "period_ms": monitor.period,
        "beats": counters.beats,
        "counters": {**attrs.asdict(counters), "bad_pongs": counters.bad_pongs},
        "suspects": status.suspect_count,
        "refused_peers": status.refused_peers,
        "refusing_connections": status.refusing_connections,
        "failures": [f.as_json() for f in list(monitor.ledger.failures)[-RECENT_SHOWN:]],
        "false_failures": [
            m.as_json() for m in list(monitor.ledger.false_failures)[-RECENT_SHOWN:]
        ],
    }
