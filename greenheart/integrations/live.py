"""A page a person can open to see a monitor: its hearts, its failures and its own health.

:func:`live_app` is a WSGI application serving, for one monitor:

- ``/``: the page (plain HTML and JavaScript shipped in this package, no CDN, no build step),
  which polls ``/live.json`` and redraws without reloading;
- ``/live.json``: what the page shows (see :meth:`LiveView.snapshot`);
- ``/hearts``: :func:`greenheart.integrations.wsgi.hearts_app`'s JSON;
- ``/metrics``: the Prometheus metrics, where prometheus-client is installed (elsewhere a
  501 naming the extra that brings it).

:class:`LiveServer` serves it from greenlets (``greenheart monitor --http-port``); to mount it
in one's own pywsgi server, hand ``live_app(monitor)`` to it, or route ``/`` and
``/live.json`` to it beside other applications. Identities are arbitrary bytes from the
network: the page only ever sets them as text, never as HTML.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import attrs
import gevent.event

from greenheart.core.checks import PORT
from greenheart.core.live import History, Standing, standing
from greenheart.core.updates import Delta, Row, Updates
from greenheart.core.values import Beat
from greenheart.core.wire import display_id
from greenheart.green.http import HttpServer
from greenheart.green.hub import yield_to_others
from greenheart.green.monitor import HeartMonitor
from greenheart.integrations.wsgi import StartResponse, hearts_app

#: seconds a failed heart stays listed as failed, and a returned one as returned
RECENT_SECONDS = 600.0

#: failure certificates sent to the page, the latest
FAILURES_SHOWN = 50

#: seconds at most between two updates streamed, when the monitor does not beat
QUIET_SECONDS = 2.0

#: hearts written between yields to the hub
HEARTS_PER_CHUNK = 2000

PAGE_FILES = {"/": ("page.html", "text/html; charset=utf-8"),
              "/page.js": ("page.js", "text/javascript; charset=utf-8"),
              "/page.css": ("page.css", "text/css; charset=utf-8")}  # fmt: skip


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


@attrs.define(eq=False)
class LiveView:
    """Watches ``monitor`` for the page: its beats' history, lag and CPU share, and the page's
    rows, made at most once a beat whatever the number of viewers (:meth:`update`).

    ``names`` may give a heart a name to show beside its identity (the hub's engine id, for
    an ipyparallel controller)."""

    monitor: HeartMonitor
    history: History = attrs.field(factory=History)
    names: Callable[[bytes], str | None] | None = None
    clock: Callable[[], float] = time.monotonic
    #: the server it is shown by, whose connections the page counts too
    server: HttpServer | None = None
    updates: Updates = attrs.field(factory=Updates, init=False)
    _lag: float = attrs.field(default=0.0, init=False)
    _cpu_share: float | None = attrs.field(default=None, init=False)
    #: the beat the latest rows were made after, and each kept version's failures and time
    _made_after: int | None = attrs.field(default=None, init=False)
    _versions: dict[int, tuple[int, float]] = attrs.field(factory=dict, init=False)
    _counts: dict[str, int] = attrs.field(factory=dict, init=False)
    #: the latest version's answers, by the version asked from
    _answers: dict[int | None, list[bytes]] = attrs.field(factory=dict, init=False)
    _keys: dict[bytes, str] = attrs.field(factory=dict, init=False)
    #: pages streamed to, and what wakes them
    _streams: int = attrs.field(default=0, init=False)
    _beaten: gevent.event.Event = attrs.field(factory=gevent.event.Event, init=False)

    def __attrs_post_init__(self) -> None:
        self.monitor.add_beat_handler(self._beat)

    def _beat(self, beat: Beat) -> None:
        self._lag, self._cpu_share = beat.lag, beat.cpu_share
        self.history.add(beat.at, beat.heart_count, beat.responded_count, beat.rtts)
        if self._streams:  # wake the pages streamed to; the first makes the rows
            beaten, self._beaten = self._beaten, gevent.event.Event()
            beaten.set()

    def key(self, heart: bytes) -> str:
        """``heart`` as the page names it (its identity as people read it), remembered."""
        key = self._keys.get(heart)
        if key is None:
            if len(self._keys) > 2 * len(self.updates.rows) + 1000:
                self._keys.clear()  # hearts gone since: forget them
            key = self._keys[heart] = display_id(heart)
        return key

    def rows(self, now: float) -> dict[str, Row]:
        """Every known heart, and every heart failed within :data:`RECENT_SECONDS` and not
        heard since, as the page lists them."""
        ledger, names, key = self.monitor.ledger, self.names, self.key
        on_probation, suspects = ledger.on_probation, ledger.suspects
        returned = {
            mistake.heart
            for mistake in ledger.false_failures
            if now - mistake.returned_at <= RECENT_SECONDS
        }
        unusual = on_probation.keys() | suspects.keys() | returned
        answering = Standing.ANSWERING.code
        rows: dict[str, Row] = {}
        for heart in ledger.hearts:
            name = names(heart) if names else None
            if heart not in unusual:  # most hearts, most of the time
                rows[key(heart)] = (name, answering, 0)
                continue
            misses = on_probation.get(heart, 0)
            code = standing(
                known=True, suspect=heart in suspects, misses=misses, returned=heart in returned
            ).code
            rows[key(heart)] = (name, code, misses)
        for failure in ledger.failures:
            if now - failure.at <= RECENT_SECONDS:
                failed = key(failure.heart)
                if failed not in rows or rows[failed][1] == Standing.FAILED.code:
                    name = names(failure.heart) if names else None
                    rows[failed] = (name, Standing.FAILED.code, failure.misses)
        return rows

    def _latest(self) -> None:
        """Make the rows anew if the monitor beat since they were made (once for everyone)."""
        beats = self.monitor.ledger.counters.beats
        if beats == self._made_after and self.updates.version:
            return
        now = self.clock()
        self.updates.advance(self.rows(now))
        self._made_after = beats
        self._answers = {}
        counts = dict.fromkeys((s.name.lower() for s in Standing), 0)
        names = {s.code: s.name.lower() for s in Standing}
        for _, code, _ in self.updates.rows.values():
            counts[names[code]] += 1
        self._counts = counts
        version = self.updates.version
        self._versions[version] = (self.monitor.ledger.counters.failed_hearts, now)
        self._versions.pop(version - self.updates.kept, None)

    def stream(self, since: int | None = None) -> Iterator[bytes]:
        """``/live.events``: the updates of :meth:`update`, pushed as server-sent events, one
        after each beat (at least every :data:`QUIET_SECONDS`, so that a stopped monitor is
        seen stopped), each since the one before; ``since``: a reconnecting page's last."""
        self._streams += 1
        try:
            while True:
                sent: list[int] = []
                yield b"data: "
                yield from self.update(since, sent)
                since = sent[0]  # the version this one brought the page to
                yield b"\nid: %d\n\n" % since  # where a page that reconnects resumes
                self._beaten.wait(QUIET_SECONDS)
        finally:
            self._streams -= 1

    def update(self, since: int | None = None, sent: list[int] | None = None) -> Iterator[bytes]:
        """``/live.json``: the monitor's health, the hearts counted by standing, and what
        changed since version ``since`` (the rows set and the keys dropped, the failures and
        the history), or everything when ``since`` is None or too old (``"full": true``);
        the version it brings a page to goes in ``sent``, and the answer ends without a new
        line."""
        self._latest()
        updates, now = self.updates, self.clock()
        if sent is not None:
            sent.append(updates.version)
        wall = time.time()
        delta = None if since is None else updates.since(since)
        seen = None if delta is None else self._versions.get(since)  # type: ignore[arg-type]
        if seen is None:
            delta, since = None, None
        failed_before, seen_at = seen if seen is not None else (0, -1.0)
        failures = list(self.monitor.ledger.failures)[-FAILURES_SHOWN:]
        new = self.monitor.ledger.counters.failed_hearts - failed_before
        head = {
            "version": updates.version,
            "since": since,
            "full": delta is None,
            "time": round(wall, 3),
            "monitor": self._health(),
            "counts": self._counts,
            "failures": [
                {**f.as_json(), "why": f.describe(), "time": round(wall - (now - f.at), 3)}
                for f in reversed(failures[len(failures) - min(new, len(failures)) :])
            ],
            "history": [
                [
                    round(wall - (now - p.at), 1),
                    p.hearts,
                    p.answering,
                    _ms(p.rtt_p50),
                    _ms(p.rtt_p99),
                ]
                for p in self.history.points()
                if p.at > seen_at
            ],
        }
        yield json.dumps(head)[:-1].encode() + b', "hearts": '
        answer = self._answers.get(since)
        if answer is None:
            answer = self._answers[since] = list(_rows_json(delta, updates.rows))
        for chunk in answer:
            yield chunk
            yield_to_others()
        yield b"}"

    def full(self) -> bytes:
        """Every row, made and encoded from nothing (what a full update costs)."""
        return b"".join(_rows_json(None, self.rows(self.clock())))

    def _health(self) -> dict[str, Any]:
        monitor = self.monitor
        status = monitor.status()
        counters = status.counters
        period = monitor.period / 1000
        return {
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
            **self._connections(),
        }

    def _connections(self) -> dict[str, int]:
        server = self.server
        if server is None or server.cap is None:
            return {}
        return {
            "page_connections": server.cap.open,
            "page_refused": server.cap.refused,
            "page_timed_out": server.timed_out,
        }


def _rows_json(delta: Delta | None, rows: Mapping[str, Row]) -> Iterator[bytes]:
    """``{"set": {key: [name, code, misses], ...}, "drop": [key, ...]}``, in chunks: every row
    when ``delta`` is None."""
    changed = rows if delta is None else delta.set
    items = list(changed.items())
    yield b'{"set": {'
    for start in range(0, len(items), HEARTS_PER_CHUNK):
        chunk = json.dumps(dict(items[start : start + HEARTS_PER_CHUNK]))[1:-1]
        yield (b", " if start and chunk else b"") + chunk.encode()
    drop = sorted(delta.drop) if delta is not None else []
    yield b'}, "drop": ' + json.dumps(drop).encode() + b"}"


def _page(name: str) -> bytes:
    return resources.files("greenheart.integrations").joinpath(f"page/{name}").read_bytes()


def live_app(
    monitor: HeartMonitor, view: LiveView | None = None, *, metrics: bool = True
) -> Callable[[dict, StartResponse], Iterable[bytes]]:
    """The page, ``/live.json``, ``/hearts`` and (with ``metrics`` and prometheus-client)
    ``/metrics``, for ``monitor``: one WSGI application."""
    view = view if view is not None else LiveView(monitor)
    hearts = hearts_app(monitor, view.names)
    metrics_app = _metrics_app(monitor) if metrics else None
    pages = {path: (_page(name), kind) for path, (name, kind) in PAGE_FILES.items()}
    found = b"not found; try /, /live.json, /hearts" + (b" or /metrics" if metrics_app else b"")
    found += b"\n"

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/") or "/"
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        if path in pages:
            body, kind = pages[path]
            start_response("200 OK", [("Content-Type", kind), *_no_store()])
            return [body]
        if path == "/live.events":
            start_response(
                "200 OK", [("Content-Type", "text/event-stream"), ("Connection", "keep-alive"),
                           *_no_store()],
            )  # fmt: skip
            last = environ.get("HTTP_LAST_EVENT_ID", "")
            return view.stream(int(last) if last.isdigit() else None)
        if path == "/live.json":
            start_response("200 OK", [("Content-Type", "application/json"), *_no_store()])
            since = parse_qs(environ.get("QUERY_STRING", "")).get("since", [""])[0]
            return itertools.chain(view.update(int(since) if since.isdigit() else None), [b"\n"])
        if path.rstrip("/") == "/hearts":
            return hearts(environ, start_response)
        if path == "/metrics" and metrics_app is not None:
            return metrics_app(environ, start_response)
        if path == "/metrics" and metrics:
            start_response("501 Not Implemented", [("Content-Type", "text/plain")])
            return [NO_METRICS]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [found]

    return app


#: what ``/metrics`` answers where prometheus-client is not installed
NO_METRICS = b"the metrics need prometheus-client: pip install 'greenheart-zmq[metrics]'\n"


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
class LiveServer(HttpServer):
    """Serves :func:`live_app` for ``monitor`` at ``http://host:port/`` from greenlets.

    It binds 127.0.0.1 unless told otherwise; a port of 0 picks a free one
    (:attr:`server_port`). It keeps serving after the monitor stops, so that the page says
    the monitor stopped, and why. It holds at most ``connections`` at once, and closes the
    ones that send nothing whole in time (:class:`~greenheart.green.http.HttpServer`)."""

    role = "page"

    monitor: HeartMonitor
    port: int = attrs.field(default=0, validator=PORT)
    host: str = "127.0.0.1"
    names: Callable[[bytes], str | None] | None = None
    view: LiveView = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.view = LiveView(self.monitor, names=self.names, server=self)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server_port}/"

    def _app(self) -> Callable[[dict, StartResponse], Iterable[bytes]]:
        return live_app(self.monitor, self.view)

    def _open(self) -> None:
        self._serve(self.host, self.port)
