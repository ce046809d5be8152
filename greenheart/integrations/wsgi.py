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

The status is 200 while the monitor runs and 503 once it has stopped, for health checks.
The body is produced in chunks that yield to the hub between them, so listing
thousands of hearts never holds up the monitor's beat (or anyone else) for long.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from greenheart.core.values import HeartState
from greenheart.core.wire import display_id
from greenheart.green.hub import yield_to_others
from greenheart.green.monitor import HeartMonitor

#: hearts written per chunk of the body
HEARTS_PER_CHUNK = 500

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


def hearts_app(monitor: HeartMonitor) -> Callable[[dict, StartResponse], Iterable[bytes]]:
    """A WSGI application serving ``GET /hearts`` for ``monitor``."""

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/hearts", "/hearts/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found; try /hearts\n"]
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        # a stopped monitor judges nobody: health checks must see it as down
        status = "200 OK" if monitor.running else "503 Service Unavailable"
        start_response(
            status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        )
        return _body(monitor)

    return app


def _body(monitor: HeartMonitor) -> Iterator[bytes]:
    states = sorted(monitor.ledger.states(), key=lambda state: state.heart)
    status = monitor.status()
    counters = status.counters
    head = {
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
    yield json.dumps(head)[:-1].encode() + b', "hearts": ['
    for start in range(0, len(states), HEARTS_PER_CHUNK):
        chunk = ", ".join(
            json.dumps(heart_json(s)) for s in states[start : start + HEARTS_PER_CHUNK]
        )
        yield (", " if start else "").encode() + chunk.encode()
        yield_to_others()
    yield b"]}\n"
