"""The monitors a benchmark measures, each bound to free loopback ports.

Each says :class:`~greenheart.bench.lines.Ready` (where), then a
:class:`~greenheart.bench.lines.BeatReport` per beat until it is terminated, and pays the same
for being measured: the round trip of every answer is kept, and a beat reports a sample.

- ``greenheart``: :class:`greenheart.HeartMonitor` from ``bind()``; ``greenheart-sockets`` the
  same on sockets made as a caller would (IPython.parallel's constructor, ZeroMQ's defaults);
  ``greenheart-curve`` with CURVE on, letting in only the fleets' key; ``greenheart-unwatched``
  without transport liveness, ``greenheart-zmtp`` with ZeroMQ's heartbeats (every
  :data:`ZMTP_IVL_MS`, closing after :data:`ZMTP_TIMEOUT_MS`) in place of TCP keepalive, for the
  cost of each (:mod:`greenheart.core.transport`). ``--events`` adds a line
  for every heart registered, failed (with its cause) or falsely failed, and for every change in
  refusing connections.
- ``ipyparallel``: ipyparallel's own ``HeartMonitor`` on its tornado loop, which counts late
  and bad pongs only in its log warnings.
- ``raw``: the transport's limit, a bare pyzmq ROUTER drained in a tight loop with the least
  bookkeeping a monitor can do (who answered this round), letting answers gather between drains as
  greenheart's monitor does.

ipyparallel's monitor and the bare loop are the baselines: they wait for their signals on
their own loops (asyncio's, and a flag the loop checks), not on gevent's.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable

import attrs

from greenheart.bench.lines import (
    BeatReport,
    Failed,
    FalselyFailed,
    Ready,
    Refusing,
    Registered,
    say,
)
from greenheart.bench.programs.common import LOOPBACK, SERVER_KEYS
from greenheart.core.rules import Rules
from greenheart.green.limits import raise_open_file_limit

#: ZeroMQ's heartbeats for ``greenheart-zmtp``: a ping each way every 10 s, a connection closed
#: after 30 s without a word (as the default transport timeout)
ZMTP_IVL_MS = 10_000
ZMTP_TIMEOUT_MS = 30_000


def _ready(ping: str, pong: str) -> None:
    say(Ready(ping=ping, pong=pong, pid=os.getpid()))


def _say_registered(hearts: Iterable[bytes]) -> None:
    at = time.monotonic()
    for heart in hearts:
        say(Registered(heart=heart.decode(), at=at))


def _say_failed(hearts: Iterable[bytes], cause: str | None = None) -> None:
    at = time.monotonic()
    for heart in hearts:
        say(Failed(heart=heart.decode(), at=at, cause=cause))


# -- greenheart ------------------------------------------------------------------------------


def run_greenheart(
    period: float,
    rules: Rules,
    curve_dir: str | None = None,
    events: bool = False,
    *,
    own_sockets: bool = False,
    record: str | None = None,
    host: str = "127.0.0.1",
    liveness: str = "keepalive",
) -> int:
    from greenheart.bench.programs.serving import serve
    from greenheart.core.failures import Failure
    from greenheart.core.values import Beat
    from greenheart.green.monitor import HeartMonitor

    raise_open_file_limit()

    def report(beat: Beat) -> None:
        say(
            BeatReport.now(
                beat=beat.number,
                hearts=beat.heart_count,
                responded=beat.responded_count,
                on_probation=beat.probation_count,
                new=len(beat.new_hearts),
                failed=len(beat.failed_hearts) + len(beat.disconnected),
                on_time=beat.on_time_pongs,
                late=beat.late_pongs,
                bad=beat.bad_pongs,
                round_trips=beat.rtts,
                round_s=beat.max_rtt,
                judged=beat.judged,
                lag=beat.lag,
            )
        )

    settings = attrs.asdict(rules, recurse=False)
    curve = None
    if curve_dir is not None:
        from greenheart.green.curve import KeyPair, ServerCurve, load_allowed_keys

        keys = KeyPair.load(os.path.join(curve_dir, SERVER_KEYS))
        curve = ServerCurve(keys, load_allowed_keys(os.path.join(curve_dir, "allowed")))
    if own_sockets:
        # the constructor IPython.parallel's API has: sockets the caller made on a zmq.green
        # context, with ZeroMQ's defaults
        import zmq.green

        context: zmq.green.Context = zmq.green.Context.instance()
        ping, pong = context.socket(zmq.PUB), context.socket(zmq.ROUTER)
        for socket in (ping, pong):
            socket.linger = 0
            socket.bind(LOOPBACK)
        monitor = HeartMonitor(ping, pong, period=period, record=record, **settings)
    else:
        import zmq.green

        address = f"tcp://{host}:0"
        zmtp: zmq.green.Context | None = None
        if liveness != "keepalive":
            settings["transport_timeout"] = None
        if liveness == "zmtp":
            # pyzmq gives every socket a context makes the context's options
            zmtp = zmq.green.Context()
            zmtp.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_IVL_MS)
            zmtp.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_TIMEOUT_MS)
        monitor = HeartMonitor.bind(
            address,
            address,
            period=period,
            curve=curve,
            record=record,
            context=zmtp,
            **settings,
        )
    monitor.add_beat_handler(report)
    if events:
        refusing = False

        def say_refusing(beat: Beat) -> None:
            nonlocal refusing
            if monitor.status().refusing_connections != refusing:
                refusing = not refusing
                say(Refusing(refusing=refusing, at=beat.at))

        def say_failure(failure: Failure) -> None:
            _say_failed([failure.heart], failure.cause.value)

        def say_false_failures(beat: Beat) -> None:
            at = time.monotonic()
            for mistake in beat.false_failures:
                heart, gone = mistake.failure.heart.decode(), round(mistake.gone, 3)
                say(FalselyFailed(heart=heart, at=at, gone_s=gone))

        monitor.add_beat_handler(say_refusing)
        monitor.add_new_heart_handler(lambda heart: _say_registered([heart]))
        monitor.add_failure_handler(say_failure)
        monitor.add_beat_handler(say_false_failures)
    try:
        with monitor:
            _ready(monitor.ping_addr, monitor.pong_addr)
            return serve(monitor)
    finally:
        if own_sockets:  # the caller's sockets are the caller's to close
            monitor.pingstream.close()
            monitor.pongstream.close()


# -- ipyparallel -----------------------------------------------------------------------------


class _Tally(logging.Handler):
    """Counts ipyparallel's per-pong warnings: its only record of late and bad pongs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.late = self.bad = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        if "missed a beat" in message:
            self.late += 1
        elif "bad heartbeat" in message:
            self.bad += 1


def run_ipyparallel(period: float, max_misses: int, events: bool = False) -> int:
    import asyncio

    import zmq
    from ipyparallel.controller.heartmonitor import HeartMonitor
    from zmq.eventloop.zmqstream import ZMQStream

    raise_open_file_limit()
    tally = _Tally()
    log = logging.getLogger("ipyparallel-target")
    log.addHandler(tally)
    log.setLevel(logging.WARNING)
    log.propagate = False

    class MeasuredHeartMonitor(HeartMonitor):
        arrivals: list[float]
        counts = {"new": 0, "failed": 0, "beats": 0}

        def handle_pong(self, msg: list[bytes]) -> None:
            self.arrivals.append(time.monotonic())
            super().handle_pong(msg)

        def handle_new_hearts(self, hearts: set[bytes]) -> None:
            self.counts["new"] += len(hearts)
            if events:
                _say_registered(hearts)
            super().handle_new_hearts(hearts)

        def handle_heart_failure(self, hearts: list[bytes]) -> None:
            self.counts["failed"] += len(hearts)
            if events:
                _say_failed(hearts)
            super().handle_heart_failure(hearts)

        def beat(self) -> None:
            # tornado's PeriodicCallback keeps its own grid, and skips the beats it is late
            # for: how late this one is, from the nearest point of a grid from the first
            now = time.monotonic()
            self.grid_start = getattr(self, "grid_start", now)
            interval = period / 1000
            lag = (now - self.grid_start) % interval
            lag = lag if lag < interval / 2 else 0.0
            self.pong_stream.flush()
            tic, arrivals = self.tic, self.arrivals
            responded = len(self.responses)
            late, bad = tally.late, tally.bad
            self.counts.update(new=0, failed=0)
            super().beat()
            self.counts["beats"] += 1
            round_trips = [arrival - tic for arrival in arrivals]
            self.arrivals = []
            tally.late = tally.bad = 0
            answers = len(arrivals) - bad
            say(
                BeatReport.now(
                    beat=self.counts["beats"],
                    hearts=len(self.hearts),
                    responded=responded,
                    on_probation=len(self.on_probation),
                    new=self.counts["new"],
                    failed=self.counts["failed"],
                    on_time=answers - late,
                    late=late,
                    bad=bad,
                    round_trips=round_trips,
                    round_s=max(round_trips) if round_trips else None,
                    lag=lag,
                )
            )

    async def main() -> None:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        ping = context.socket(zmq.PUB)
        pong = context.socket(zmq.ROUTER)
        pong.setsockopt(zmq.BACKLOG, 4096)
        for socket in (ping, pong):
            socket.bind(LOOPBACK)
        # ipyparallel's monitor waits for a subscriber on its event stream before it beats
        events = context.socket(zmq.XPUB)
        events.bind("inproc://heartmonitor-events")
        listener = context.socket(zmq.SUB)
        listener.subscribe(b"")
        listener.connect("inproc://heartmonitor-events")
        monitor = MeasuredHeartMonitor(
            ping_stream=ZMQStream(ping),
            pong_stream=ZMQStream(pong),
            monitor_stream=ZMQStream(events),
            period=int(period),
            max_heartmonitor_misses=max_misses,
            log=log,
        )
        monitor.arrivals = []
        listener_stream = ZMQStream(listener)
        listener_stream.on_recv(lambda msg: None)
        monitor.start()
        _ready(ping.getsockopt_string(zmq.LAST_ENDPOINT), pong.getsockopt_string(zmq.LAST_ENDPOINT))
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        await stopped.wait()

    asyncio.run(main())
    return 0


# -- raw pyzmq -------------------------------------------------------------------------------


def run_raw(period: float) -> int:
    import zmq

    from greenheart.core.judging import gather_seconds

    raise_open_file_limit()
    stopped = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.append(True))
    context = zmq.Context()
    ping = context.socket(zmq.PUB)
    pong = context.socket(zmq.ROUTER)
    pong.setsockopt(zmq.BACKLOG, 4096)
    ping.bind(LOOPBACK)
    pong.bind(LOOPBACK)
    _ready(ping.getsockopt_string(zmq.LAST_ENDPOINT), pong.getsockopt_string(zmq.LAST_ENDPOINT))
    poller = zmq.Poller()
    poller.register(pong, zmq.POLLIN)
    recv, again, noblock = pong.recv_multipart, zmq.Again, zmq.NOBLOCK
    interval = period / 1000
    gather = gather_seconds(interval)
    number, tic = 0, time.monotonic()
    current, previous = b"0", b""
    hearts: set[bytes] = set()
    responses: set[bytes] = set()
    arrivals: list[float] = []
    late = bad = 0
    ping.send(current)
    due = tic + interval
    while not stopped:
        now = time.monotonic()
        if now >= due:
            # the ping first, exactly on its grid time; then the round is summed up
            number += 1
            ping.send(b"%d" % number)
            lag = now - due
            new = responses - hearts
            hearts |= responses
            round_trips = [arrival - tic for arrival in arrivals]
            say(
                BeatReport.now(
                    beat=number,
                    hearts=len(hearts),
                    responded=len(responses),
                    on_probation=len(hearts - responses),
                    new=len(new),
                    failed=0,
                    on_time=len(arrivals) - late - bad,
                    late=late,
                    bad=bad,
                    round_trips=round_trips,
                    round_s=max(round_trips) if round_trips else None,
                    lag=lag,
                )
            )
            previous, current, tic = current, b"%d" % number, now
            responses, arrivals, late, bad = set(), [], 0, 0
            due += interval * (1 + int((now - due) // interval))
            continue
        if not poller.poll(int(max(0.0, due - now) * 1000)):
            continue
        while True:
            try:
                frames = recv(noblock)
            except again:
                # answers are coming: let them gather as greenheart's monitor does (without
                # passing the next ping's time), the cheapest way to read them
                time.sleep(max(0.0, min(gather, due - time.monotonic())))
                break
            arrivals.append(time.monotonic())
            if frames[1] == current:
                responses.add(frames[0])
            elif frames[1] == previous:
                responses.add(frames[0])
                late += 1
            else:
                bad += 1
    ping.close(0)
    pong.close(0)
    context.term()
    return 0
