"""Prometheus metrics for a monitor (the ``metrics`` extra: prometheus-client).

Counters and gauges are read from the monitor when Prometheus scrapes, so they cost the
hot path nothing. Round trips go into a histogram once per beat, from the beat's list,
bucketed with a binary search rather than one ``observe()`` call per pong.

The families (all names as Prometheus conventions have them):

- ``greenheart_up`` (gauge): 1 while the monitor runs, 0 once it has stopped;
- ``greenheart_hearts`` (gauge): hearts known, those on probation included;
- ``greenheart_hearts_on_probation`` (gauge): hearts that missed the last beat;
- ``greenheart_new_hearts_total``, ``greenheart_refused_hearts_total`` (counters): hearts
  registered, refused;
- ``greenheart_heart_failures_total{cause}`` (counter): hearts failed, by cause:
  ``disconnected``, ``missed``, ``phi``, ``held`` (a suspect of a mass silence, silent
  through its hold), ``restarted`` or ``left`` (it said it stopped cleanly);
- ``greenheart_heart_diagnoses_total{diagnosis}`` (counter): hearts failed, by what their
  connection said when they failed: ``crashed``, ``hung`` or ``unreachable``; or ``stopped``,
  those that left (a deploy, not a crash: page on the others);
  ``greenheart_found_unreachable_total`` (counter): hearts failed as hung whose connection
  timed out afterwards;
- ``greenheart_false_failures_total``, ``greenheart_false_failure_seconds_total``
  (counters): hearts failed for their silence that answered again on the same connection,
  and how long those mistakes lasted, summed (their mean duration is the ratio);
- ``greenheart_suspects`` (gauge): hearts held as suspects of a mass silence now;
  ``greenheart_mass_silences_total`` (counter): mass silences begun;
- ``greenheart_pongs_total{kind}`` (counter): kind is on_time, late, repeat, spoofed,
  stale or malformed;
- ``greenheart_beats_total``, ``greenheart_unjudged_beats_total`` (stalled or behind),
  ``greenheart_stalls_total`` (late beats of a paused process), ``greenheart_busy_beats_total``
  (late beats of a busy hub, judged), ``greenheart_handler_errors_total`` (counters);
- ``greenheart_refused_peers_total{reason}`` (counter): peers whose handshake failed, reason
  ``protocol`` or ``handshake`` (a plaintext peer against CURVE, not ZeroMQ, a wrong server key)
  or ``auth`` (a key the authenticator refused);
- ``greenheart_refusing_connections`` (gauge): 1 while the monitor, out of file descriptors,
  refuses new connections; ``greenheart_connection_refusals_total`` (counter): times it began;
- ``greenheart_beat_lag_seconds`` (gauge): how late the last beat came;
- ``greenheart_period_seconds`` (gauge);
- ``greenheart_round_trip_seconds`` (histogram): ping sent to pong read, every answer;
- ``greenheart_http_connections{server}`` (gauge), ``greenheart_http_refused_connections_total``
  and ``greenheart_http_timed_out_connections_total`` (counters): the HTTP connections a
  :class:`MetricsServer` and the servers it was given (the page) hold, refused at their cap
  and closed for a request not whole in time (:mod:`greenheart.green.http`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from greenheart.core.checks import PORT
from greenheart.core.failures import Cause, Diagnosis
from greenheart.core.values import Beat
from greenheart.green.connections import REASONS
from greenheart.green.http import HttpServer
from greenheart.green.monitor import HeartMonitor

#: round-trip buckets, in seconds: loopback is sub-millisecond, a busy LAN tens of ms
ROUND_TRIP_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

REFUSAL_REASONS = tuple(REASONS)

PONG_KINDS = ("on_time", "late", "repeat", "spoofed", "stale", "malformed")


@attrs.define(eq=False)
class MonitorCollector:
    """A prometheus-client collector for one monitor; :func:`register` makes and adds one."""

    monitor: HeartMonitor
    buckets: Sequence[float] = ROUND_TRIP_BUCKETS
    _counts: list[int] = attrs.field(init=False)
    _sum: float = attrs.field(default=0.0, init=False)
    _lag: float = attrs.field(default=0.0, init=False)

    def __attrs_post_init__(self) -> None:
        self._counts = [0] * (len(self.buckets) + 1)
        self.monitor.add_beat_handler(self.observe)

    def observe(self, beat: Beat) -> None:
        """Take a beat's round trips and lag (a beat handler)."""
        counts, bounds = self._counts, self.buckets
        for rtt in beat.rtts:
            counts[bisect.bisect_left(bounds, rtt)] += 1
        self._sum += sum(beat.rtts)
        self._lag = beat.lag

    def collect(self) -> Iterator[Metric]:
        status = self.monitor.status()
        counters = status.counters
        yield GaugeMetricFamily(
            "greenheart_up", "1 while the monitor runs, 0 once it stopped", int(status.running)
        )
        yield GaugeMetricFamily("greenheart_hearts", "Hearts known", status.heart_count)
        yield GaugeMetricFamily(
            "greenheart_hearts_on_probation",
            "Hearts that missed the last beat",
            status.probation_count,
        )
        yield GaugeMetricFamily(
            "greenheart_suspects",
            "Hearts held as suspects of a mass silence",
            status.suspect_count,
        )
        failures = CounterMetricFamily(
            "greenheart_heart_failures", "Hearts failed, by cause", labels=["cause"]
        )
        for cause in Cause:
            failures.add_metric([cause.value], counters.failed(cause))
        yield failures
        diagnoses = CounterMetricFamily(
            "greenheart_heart_diagnoses",
            "Hearts failed, by what their connection said: crashed, hung or unreachable;"
            " or stopped, those that said they stopped cleanly",
            labels=["diagnosis"],
        )
        for diagnosis in Diagnosis:
            diagnoses.add_metric([diagnosis.value], counters.diagnosed(diagnosis))
        yield diagnoses
        for name, text, value in (
            ("greenheart_new_hearts", "Hearts registered", counters.new_hearts),
            ("greenheart_refused_hearts", "New hearts refused", counters.refused_hearts),
            (
                "greenheart_false_failures",
                "Hearts failed for their silence that answered again on the same connection",
                counters.false_failures,
            ),
            (
                "greenheart_false_failure_seconds",
                "Seconds the false failures lasted, summed",
                counters.false_failure_seconds,
            ),
            (
                "greenheart_found_unreachable",
                "Hearts failed as hung whose connection timed out afterwards",
                counters.found_unreachable,
            ),
            ("greenheart_mass_silences", "Mass silences begun", counters.mass_silences),
            ("greenheart_beats", "Beats", counters.beats),
            ("greenheart_unjudged_beats", "Beats that judged nobody", counters.unjudged_beats),
            (
                "greenheart_stalls",
                "Late beats of a paused or blocked process, which judged nobody",
                status.stalls,
            ),
            (
                "greenheart_busy_beats",
                "Late beats of a busy hub, judged by the answers already queued",
                status.busy_beats,
            ),
            ("greenheart_handler_errors", "Exceptions raised by handlers", status.handler_errors),
        ):
            yield CounterMetricFamily(name, text, value)
        refused = CounterMetricFamily(
            "greenheart_refused_peers",
            "Peers whose handshake failed, by reason",
            labels=["reason"],
        )
        refused_peers = status.refused_peers
        for reason in REFUSAL_REASONS:
            refused.add_metric([reason], refused_peers.get(reason, 0))
        yield refused
        yield GaugeMetricFamily(
            "greenheart_refusing_connections",
            "1 while the monitor, out of file descriptors, refuses new connections",
            int(status.refusing_connections),
        )
        yield CounterMetricFamily(
            "greenheart_connection_refusals",
            "Times the monitor began refusing new connections",
            status.connection_refusals,
        )
        pongs = CounterMetricFamily("greenheart_pongs", "Pongs received, by kind", labels=["kind"])
        for kind in PONG_KINDS:
            pongs.add_metric([kind], getattr(counters, f"{kind}_pongs"))
        yield pongs
        yield GaugeMetricFamily(
            "greenheart_beat_lag_seconds", "How late the last beat came", self._lag
        )
        yield GaugeMetricFamily(
            "greenheart_period_seconds", "The beat period", self.monitor.period / 1000
        )
        cumulative, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self._counts, strict=True):
            running += count
            cumulative.append((_bucket_label(bound), running))
        yield HistogramMetricFamily(
            "greenheart_round_trip_seconds",
            "Seconds from a ping sent to its pong read",
            buckets=cumulative,
            sum_value=self._sum,
        )


@attrs.define(eq=False)
class HttpCollector:
    """A prometheus-client collector for the connections of HTTP servers (``MetricsServer``
    registers one for itself and the servers it is given)."""

    servers: Sequence[HttpServer]

    def collect(self) -> Iterator[Metric]:
        held = GaugeMetricFamily(
            "greenheart_http_connections", "HTTP connections held, by server", labels=["server"]
        )
        refused = CounterMetricFamily(
            "greenheart_http_refused_connections",
            "HTTP connections refused at the cap, by server",
            labels=["server"],
        )
        timed_out = CounterMetricFamily(
            "greenheart_http_timed_out_connections",
            "HTTP connections closed for a request not whole in time, by server",
            labels=["server"],
        )
        for server in self.servers:
            if server.cap is not None:
                held.add_metric([server.role], server.cap.open)
                refused.add_metric([server.role], server.cap.refused)
                timed_out.add_metric([server.role], server.timed_out)
        yield from (held, refused, timed_out)


def _bucket_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def register(monitor: HeartMonitor, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Export ``monitor``'s metrics in ``registry`` (a new one if not given); return it."""
    registry = registry if registry is not None else CollectorRegistry()
    registry.register(MonitorCollector(monitor))
    return registry


@attrs.define(eq=False)
class MetricsServer(HttpServer):
    """Serves ``monitor``'s metrics at ``http://host:port/metrics`` from greenlets (no thread).

    A port of 0 picks a free one: :attr:`server_port` tells which, once started. It holds at
    most ``connections`` at once, and closes the ones that send nothing whole in time
    (:class:`~greenheart.green.http.HttpServer`).
    """

    role = "metrics"

    monitor: HeartMonitor
    port: int = attrs.field(default=0, validator=PORT)
    host: str = "127.0.0.1"
    registry: CollectorRegistry | None = None
    #: other HTTP servers whose connections it reports besides its own (the page's)
    servers: Sequence[HttpServer] = attrs.field(default=(), kw_only=True)

    def _app(self) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
        registry = register(self.monitor, self.registry)
        registry.register(HttpCollector((self, *self.servers)))
        app: Callable[[dict[str, Any], Any], Iterable[bytes]] = make_wsgi_app(registry)
        return app

    def _open(self) -> None:
        self._serve(self.host, self.port)


def serve_metrics(
    monitor: HeartMonitor,
    port: int,
    host: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Serve ``monitor``'s metrics on ``host:port``; returns the started :class:`MetricsServer`
    (``server.server_port`` is the port, useful with port 0; ``server.stop()`` stops it)."""
    return MetricsServer(monitor, port, host, registry).start()
