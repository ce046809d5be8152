"""A page a person can open to see a monitor: its hearts, its failures and its own health.

:func:`live_app` is a WSGI application serving, for one monitor:

- ``/``: the page (plain HTML and JavaScript shipped in this package, no CDN, no build step),
  which polls ``/live.json`` and redraws without reloading;
- ``/live.json``: what the page shows (see :meth:`LiveView.snapshot`);
- ``/hearts``: :func:`greenheart.integrations.wsgi.hearts_app`'s JSON;
- ``/metrics``: the Prometheus metrics, where prometheus-client is installed.

:class:`LiveServer` serves it from greenlets (``greenheart monitor --http-port``); to mount it
in one's own pywsgi server, hand ``live_app(monitor)`` to it, or route ``/`` and
``/live.json`` to it beside other applications. Identities are arbitrary bytes from the
network: the page only ever sets them as text, never as HTML.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from typing import Any

import attrs
from gevent.pywsgi import WSGIServer

from greenheart.core.errors import UsageError
from greenheart.core.live import HeartRow, History, Standing, attention_order, standing
from greenheart.core.values import Beat
from greenheart.core.wire import display_id
from greenheart.green.hub import yield_to_others
from greenheart.green.lifecycle import Service
from greenheart.green.monitor import HeartMonitor
from greenheart.integrations.wsgi import StartResponse, hearts_app

#: seconds a failed heart stays listed as failed, and a returned one as returned
RECENT_SECONDS = 600.0

#: failure certificates sent to the page, the latest
FAILURES_SHOWN = 50

#: hearts written between yields to the hub
HEARTS_PER_CHUNK = 2000

PAGE_FILES = {"/": ("page.html", "text/html; charset=utf-8"),
              "/page.js": ("page.js", "text/javascript; charset=utf-8"),
              "/page.css": ("page.css", "text/css; charset=utf-8")}  # fmt: skip


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


@attrs.define(eq=False)
class LiveView:
    """Watches ``monitor`` for the page: its beats' history, lag and CPU share.

    ``names`` may give a heart a name to show beside its identity (the hub's engine id, for
    an ipyparallel controller)."""

    monitor: HeartMonitor
    history: History = attrs.field(factory=History)
    names: Callable[[bytes], str | None] | None = None
    clock: Callable[[], float] = time.monotonic
    _lag: float = attrs.field(default=0.0, init=False)
    _cpu_share: float | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.monitor.add_beat_handler(self._beat)

    def _beat(self, beat: Beat) -> None:
        self._lag, self._cpu_share = beat.lag, beat.cpu_share
        self.history.add(beat.at, beat.heart_count, beat.responded_count, beat.rtts)

    def rows(self, now: float) -> list[HeartRow]:
        """Every known heart and every heart failed within :data:`RECENT_SECONDS` and not
        heard since, what needs attention first."""
        monitor = self.monitor
        returned = {
            mistake.heart
            for mistake in monitor.ledger.false_failures
            if now - mistake.returned_at <= RECENT_SECONDS
        }
        rows = {}
        for state in monitor.ledger.states():
            trips = state.round_trips
            rows[state.heart] = HeartRow(
                state.heart,
                standing(
                    known=True,
                    suspect=state.suspect,
                    misses=state.misses,
                    returned=state.heart in returned,
                ),
                state.misses,
                trips.last if trips else None,
                trips.mean if trips else None,
            )
        for failure in monitor.ledger.failures:
            if failure.heart not in rows and now - failure.at <= RECENT_SECONDS:
                rows[failure.heart] = HeartRow(
                    failure.heart,
                    Standing.FAILED,
                    failure.misses,
                    failure.last_rtt,
                    failure.mean_rtt,
                )
        return attention_order(rows.values())

    def head(self, now: float) -> dict[str, Any]:
        """Everything but the hearts: the monitor's health, the latest certificates and the
        history."""
        monitor = self.monitor
        status = monitor.status()
        counters = status.counters
        period = monitor.period / 1000
        return {
            "monitor": {
                "running": status.running,
                "stopped_by": None if monitor.exception is None else repr(monitor.exception),
                "period_ms": monitor.period,
                "beats": counters.beats,
                "beats_asked": int(monitor.lifetime / period) if status.running else None,
                "lag_ms": _ms(self._lag),
                "cpu_share": self._cpu_share,
                "stalls": status.stalls,
                "busy_beats": status.busy_beats,
                "behind_beats": status.behind_beats,
                "unjudged_beats": counters.unjudged_beats,
                "suspects": status.suspect_count,
                "mass_silences": counters.mass_silences,
                "refused_peers": status.refused_peers,
                "refusing_connections": status.refusing_connections,
                "false_failures": counters.false_failures,
                "failed_hearts": counters.failed_hearts,
                "bad_pongs": counters.bad_pongs,
                "handler_errors": status.handler_errors,
            },
            "failures": [
                {
                    **failure.as_json(),
                    "why": failure.describe(),
                    "ago_s": round(now - failure.at, 1),
                }
                for failure in reversed(list(monitor.ledger.failures)[-FAILURES_SHOWN:])
            ],
            "false_failures": [
                m.as_json() for m in list(monitor.ledger.false_failures)[-FAILURES_SHOWN:]
            ],
            "history": [
                [round(p.at - now, 1), p.hearts, p.answering, _ms(p.rtt_p50), _ms(p.rtt_p99)]
                for p in self.history.points()
            ],
        }

    def snapshot(self) -> Iterator[bytes]:
        """``/live.json``, in chunks that yield to the hub between them: :meth:`head`, and
        ``hearts`` as columns (``id``, ``name``, ``standing`` as one letter a heart, in the order
        of :class:`~greenheart.core.live.Standing`'s codes, ``misses``, ``last_ms``,
        ``mean_ms``), what needs attention first, and ``counts`` by standing."""
        now = self.clock()
        rows = self.rows(now)
        counts = dict.fromkeys((s.name.lower() for s in Standing), 0)
        for row in rows:
            counts[row.standing.name.lower()] += 1
        head = self.head(now)
        head["counts"] = counts
        yield json.dumps(head)[:-1].encode() + b', "hearts": {'
        yield_to_others()
        names = self.names
        columns: list[tuple[str, Callable[[HeartRow], Any]]] = [
            ("id", lambda row: display_id(row.heart)),
            ("name", (lambda row: names(row.heart)) if names else (lambda row: None)),
            ("misses", lambda row: row.misses),
            ("last_ms", lambda row: _ms(row.last_rtt)),
            ("mean_ms", lambda row: _ms(row.mean_rtt)),
        ]
        yield b'"standing": ' + json.dumps("".join(row.standing.code for row in rows)).encode()
        for name, value in columns:
            yield f', "{name}": ['.encode()
            for start in range(0, len(rows), HEARTS_PER_CHUNK):
                chunk = json.dumps([value(row) for row in rows[start : start + HEARTS_PER_CHUNK]])
                yield (b", " if start else b"") + chunk[1:-1].encode()
                yield_to_others()
            yield b"]"
        yield b"}}\n"


def _page(name: str) -> bytes:
    return resources.files("greenheart.integrations").joinpath(f"page/{name}").read_bytes()


def live_app(
    monitor: HeartMonitor, view: LiveView | None = None, *, metrics: bool = True
) -> Callable[[dict, StartResponse], Iterable[bytes]]:
    """The page, ``/live.json``, ``/hearts`` and (with ``metrics`` and prometheus-client)
    ``/metrics``, for ``monitor``: one WSGI application."""
    view = view if view is not None else LiveView(monitor)
    hearts = hearts_app(monitor)
    metrics_app = _metrics_app(monitor) if metrics else None
    pages = {path: (_page(name), kind) for path, (name, kind) in PAGE_FILES.items()}

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if path in pages:
            body, kind = pages[path]
            start_response("200 OK", [("Content-Type", kind), *_no_store()])
            return [body]
        if path == "/live.json":
            start_response("200 OK", [("Content-Type", "application/json"), *_no_store()])
            return view.snapshot()
        if path.rstrip("/") == "/hearts":
            return hearts(environ, start_response)
        if path == "/metrics" and metrics_app is not None:
            return metrics_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found; try /, /live.json, /hearts or /metrics\n"]

    return app


def _no_store() -> list[tuple[str, str]]:
    # the page is the monitor's own; nothing of it may be framed or cached elsewhere
    return [
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ]


def _metrics_app(monitor: HeartMonitor) -> Callable[..., Iterable[bytes]] | None:
    try:
        from prometheus_client import make_wsgi_app

        from greenheart.integrations.metrics import register
    except ImportError:
        return None
    app: Callable[..., Iterable[bytes]] = make_wsgi_app(register(monitor))
    return app


@attrs.define(eq=False)
class LiveServer(Service):
    """Serves :func:`live_app` for ``monitor`` at ``http://host:port/`` from greenlets.

    It binds 127.0.0.1 unless told otherwise; a port of 0 picks a free one
    (:attr:`server_port`). It keeps serving after the monitor stops, so that the page says
    the monitor stopped, and why."""

    monitor: HeartMonitor
    port: int = 0
    host: str = "127.0.0.1"
    names: Callable[[bytes], str | None] | None = None
    view: LiveView = attrs.field(init=False)
    _server: WSGIServer | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.view = LiveView(self.monitor, names=self.names)

    @property
    def server_port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server_port}/"

    def _open(self) -> None:
        app = live_app(self.monitor, self.view)
        # requests run in this object's group, killed on stop() but not supervised: pywsgi
        # answers a failing request itself, and one bad client must not stop the page
        self._server = WSGIServer((self.host, self.port), app, log=None, spawn=self._group.spawn)
        try:
            self._server.start()
        except OSError as error:
            raise UsageError(
                f"cannot serve the page on {self.host}:{self.port}: {error}"
            ) from error

    def _close(self) -> None:
        if self._server is not None:
            self._server.stop()
