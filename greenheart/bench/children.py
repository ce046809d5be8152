"""The processes of a benchmark: the monitors it measures, and the loads that drive them.

``python -m greenheart.bench.children KIND ...`` runs one of them. A monitor binds a ping
and a pong socket on free loopback ports, prints one JSON line saying where, then one
JSON line per beat (:func:`greenheart.bench.beats.beat_report`, the one schema) until it is
terminated. The monitors:

- ``greenheart``: :class:`greenheart.HeartMonitor` (``--events`` adds a line for every
  heart registered or failed, ``{"event": "new" | "failed", "heart": ..., "at": ...}``, a
  failure with its ``cause``, and one for every false failure, with ``gone_s``);
- ``greenheart-curve``: the same with CURVE on: encrypted, and only the fleets' key let in
  (``--curve DIR`` names the keys, for the monitor and its fleets alike);
- ``ipyparallel``: ipyparallel's own ``HeartMonitor`` on its tornado loop;
- ``raw``: the transport's limit, a bare pyzmq ROUTER drained in a tight loop with
  the least bookkeeping a monitor can do (who answered this round).

Each monitor pays the same for being measured: the round trip of every answer is kept,
and a beat reports a sample of them. CPU time is the whole process's (user + system,
ZeroMQ's I/O thread included), read from /proc at every beat.

The loads, given the monitor's ``--ping`` and ``--pong``:

- ``fleet``: a :class:`~greenheart.HeartFleet` of ``--size`` prompt hearts; ``hearts``: as
  many :class:`~greenheart.Heart` objects. Each first prints its memory and descriptors,
  then ``{"started": N}`` once every socket is open;
- ``ipyparallel-hearts``: ipyparallel's thread hearts, ``--size`` more each time it reads
  ``more`` on its stdin, printing its memory, descriptors and threads each time;
- ``soak-fleet``: a fleet that kills ``--churn`` of its hearts a minute (printing who, and
  when) and grows as many, and sends ``--garbage`` messages a second to the pong socket;
- ``engines``: simulated ipyparallel engines registering with the controller of
  ``--profile-dir`` (see :func:`run_engines`);
- ``storm``: ``--size`` plain TCP connections to the pong port at ``--rate`` a second that
  never speak ZeroMQ, held ``--hold`` seconds (see :func:`run_storm`).

``--open-files N`` lowers a child's open-file limit to N, soft and hard, so that a
benchmark can take a monitor past it.

``cli ARGS...`` execs the ``greenheart`` command and ``ipcontroller ARGS...`` ipyparallel's
controller, each keeping the parent-death signal.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import random
import resource
import signal
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from greenheart.bench.beats import beat_report
from greenheart.bench.proc import proc_status, rss_kib
from greenheart.green.limits import open_descriptors, raise_open_file_limit
from greenheart.green.orphans import die_with_parent

if TYPE_CHECKING:
    from greenheart.core.failures import Failure
    from greenheart.core.ledger import Beat
    from greenheart.green.curve import ClientCurve
    from greenheart.green.fleet import HeartFleet

LOOPBACK = "tcp://127.0.0.1:0"

MONITORS = ("greenheart", "greenheart-curve", "ipyparallel", "raw")

#: in a ``--curve`` directory: the monitor's key pair, and the fleets' (the one allowed in)
SERVER_KEYS = "server.key_secret"
SERVER_PUBLIC_KEY = "server.key"
FLEET_KEYS = "allowed/fleet.key_secret"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _ready(ping: str, pong: str) -> None:
    _say(json.dumps({"ready": True, "ping": ping, "pong": pong, "pid": os.getpid()}))


# -- greenheart ------------------------------------------------------------------------------


def _until_terminated() -> None:
    """Wait, letting the gevent hub run, until SIGTERM or SIGINT."""
    import gevent
    import gevent.event

    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    stop.wait()


def run_greenheart(
    period: float,
    max_misses: int,
    curve_dir: str | None = None,
    events: bool = False,
    fail_on_disconnect: bool = False,
) -> None:
    from greenheart.green.monitor import HeartMonitor

    raise_open_file_limit()

    def report(beat: Beat) -> None:
        _say(
            beat_report(
                beat=beat.number,
                hearts=beat.hearts,
                responded=beat.responded,
                on_probation=beat.on_probation,
                new=len(beat.new_hearts),
                failed=len(beat.failed_hearts) + len(beat.disconnected),
                on_time=beat.on_time_pongs,
                late=beat.late_pongs,
                bad=beat.bad_pongs,
                round_trips=beat.round_trips,
                round_s=beat.max_rtt,
                judged=beat.judged,
                lag=beat.lag,
            )
        )

    curve = None
    if curve_dir is not None:
        from greenheart.green.curve import KeyPair, ServerCurve, load_allowed_keys

        keys = KeyPair.load(os.path.join(curve_dir, SERVER_KEYS))
        curve = ServerCurve(keys, load_allowed_keys(os.path.join(curve_dir, "allowed")))
    monitor = HeartMonitor.bind(
        LOOPBACK,
        LOOPBACK,
        period=period,
        max_misses=max_misses,
        curve=curve,
        fail_on_disconnect=fail_on_disconnect,
    )
    monitor.add_beat_handler(report)
    if events:
        refusing = [False]

        def say_refusing(beat: Beat) -> None:
            if monitor.refusing_connections != refusing[0]:
                refusing[0] = monitor.refusing_connections
                _say(json.dumps({"event": "refusing", "refusing": refusing[0], "at": beat.at}))

        monitor.add_beat_handler(say_refusing)
        monitor.add_new_heart_handler(lambda heart: _say_events("new", [heart]))
        monitor.add_heart_failure_handler(_say_failure, certificate=True)
        monitor.add_beat_handler(_say_false_failures)
    with monitor:
        _ready(monitor.ping_addr, monitor.pong_addr)
        _until_terminated()


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


def _say_events(kind: str, hearts: Iterable[bytes]) -> None:
    """A line for each heart registered or failed, on the shared monotonic clock."""
    at = time.monotonic()
    for heart in hearts:
        _say(json.dumps({"event": kind, "heart": heart.decode(), "at": at}))


def _say_failure(failure: Failure) -> None:
    heart, cause = failure.heart.decode(), failure.cause.value
    _say(json.dumps({"event": "failed", "heart": heart, "at": time.monotonic(), "cause": cause}))


def _say_false_failures(beat: Beat) -> None:
    at = time.monotonic()
    for mistake in beat.false_failures:
        heart, gone = mistake.failure.heart.decode(), round(mistake.gone, 3)
        _say(json.dumps({"event": "false_failure", "heart": heart, "at": at, "gone_s": gone}))


def run_ipyparallel(period: float, max_misses: int, events: bool = False) -> None:
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
                _say_events("new", hearts)
            super().handle_new_hearts(hearts)

        def handle_heart_failure(self, hearts: list[bytes]) -> None:
            self.counts["failed"] += len(hearts)
            if events:
                _say_events("failed", hearts)
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
            _say(
                beat_report(
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


# -- raw pyzmq -------------------------------------------------------------------------------


def run_raw(period: float) -> None:
    import zmq

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
            _say(
                beat_report(
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


# -- the loads ---------------------------------------------------------------------------------


def _footprint() -> dict[str, int]:
    return {"rss_kib": rss_kib(), "fds": open_descriptors(), "pid": os.getpid()}


def _load_curve(curve_dir: str | None) -> ClientCurve | None:
    if curve_dir is None:
        return None
    from greenheart.green.curve import ClientCurve, KeyPair, load_public_key

    return ClientCurve(
        load_public_key(os.path.join(curve_dir, SERVER_PUBLIC_KEY)),
        KeyPair.load(os.path.join(curve_dir, FLEET_KEYS)),
    )


def run_fleet(ping: str, pong: str, size: int, prefix: str, curve_dir: str | None = None) -> None:
    """A fleet of ``size`` prompt hearts; says its footprint before, then once all are open."""
    from greenheart.green.fleet import HeartFleet

    raise_open_file_limit()
    _say(json.dumps({"before": _footprint()}))
    import gevent

    with HeartFleet(ping, pong, size=size, prefix=prefix, curve=_load_curve(curve_dir)) as fleet:
        _say(json.dumps({"started": size}))
        reporter = gevent.spawn(_report_status, fleet)
        try:
            _until_terminated()
        finally:
            reporter.kill()


def _report_status(fleet: HeartFleet, every: float = 1.0) -> None:
    """The fleet's counters every ``every`` seconds, to tell whether it kept up."""
    import gevent

    while True:
        gevent.sleep(every)
        status = fleet.status()
        _say(json.dumps({"skipped_pings": status.skipped_pings, "pings": status.fleet_pings}))


def run_hearts(ping: str, pong: str, size: int, prefix: str) -> None:
    """``size`` :class:`~greenheart.Heart` objects, for comparison with a fleet."""
    import zmq.green

    from greenheart.green.heart import Heart

    raise_open_file_limit()
    _say(json.dumps({"before": _footprint()}))
    context = zmq.green.Context()
    context.set(zmq.MAX_SOCKETS, context.get(zmq.SOCKET_LIMIT))  # the default is 1,023
    hearts = [Heart(ping, pong, heart_id=f"{prefix}-{n}", context=context) for n in range(size)]
    for heart in hearts:
        heart.start()
    _say(json.dumps({"started": size}))
    try:
        _until_terminated()
    finally:
        for heart in hearts:
            heart.stop()
        context.term()


def run_ipyparallel_hearts(ping: str, pong: str, step: int, limit: int) -> None:
    """ipyparallel's thread hearts, ``step`` more each time the parent says ``more``."""
    from ipyparallel.controller.heartmonitor import Heart

    raise_open_file_limit()
    before, hearts = rss_kib(), list[Heart]()
    while len(hearts) < limit:
        try:
            for _ in range(step):
                heart = Heart(ping, pong, heart_id=f"ipp-{len(hearts)}".encode())
                heart.start()
                hearts.append(heart)
            report = {"count": len(hearts), "rss_before_kib": before, **_footprint()}
            report["threads"] = proc_status("Threads")
        except Exception as error:  # running out of descriptors or threads is the measurement
            _say(json.dumps({"error": repr(error), "count": len(hearts)}))
            break
        _say(json.dumps(report))
        if sys.stdin.readline().strip() != "more":
            break
    os._exit(0)  # daemon device threads cannot be stopped; leave at once


def run_soak_fleet(
    ping: str,
    pong: str,
    size: int,
    churn: float,
    garbage: float,
    every: float,
    seed: int,
    revive: bool = False,
) -> None:
    """A fleet that kills ``churn`` of its hearts a minute, ``every`` seconds, and grows as
    many (or, with ``revive``, brings the last round's dead back under their identities);
    and ``garbage`` random messages a second from a few peers."""
    import gevent

    from greenheart.green.fleet import HeartFleet

    raise_open_file_limit()
    chooser = random.Random(seed)
    per_round = max(1, round(size * churn * every / 60))
    with HeartFleet(ping, pong, size=size, prefix="soak") as fleet:
        _say(json.dumps({"event": "started", "hearts": len(fleet.alive), "at": time.monotonic()}))
        sender = gevent.spawn(_send_garbage, pong, garbage, seed) if garbage > 0 else None
        try:
            back: list[bytes] = []
            while True:
                gevent.sleep(every)
                # only hearts old enough to have registered, so each kill must show as a failure
                settled = [h for h in list(fleet.alive)[: -4 * per_round] if h not in back]
                victims = chooser.sample(settled, min(per_round, len(settled)))
                at = time.monotonic()  # before: a monitor may hear of a death before kill() returns
                fleet.kill(victims)
                killed = [heart.decode() for heart in victims]
                _say(json.dumps({"event": "killed", "hearts": killed, "at": at}))
                if not revive:
                    fleet.grow(len(victims))
                    continue
                fleet.revive(back)  # the last round's dead, under their identities
                _say(json.dumps({"event": "revived", "hearts": [h.decode() for h in back]}))
                back = victims
        finally:
            if sender is not None:
                sender.kill()


def run_kill_fleet(ping: str, pong: str, size: int, seed: int) -> None:
    """A fleet that kills one of its hearts (chosen by the seed) each time it reads ``kill``
    on its stdin, printing which and when."""
    import gevent

    from greenheart.green.fleet import HeartFleet

    raise_open_file_limit()
    chooser = random.Random(seed)
    with HeartFleet(ping, pong, size=size, prefix="doomed") as fleet:
        _say(json.dumps({"started": size}))
        while True:
            # a blocking read, in a thread: the hub goes on answering pings meanwhile
            line = gevent.get_hub().threadpool.apply(sys.stdin.readline)
            if line.strip() != "kill":
                return
            (victim,) = chooser.sample(list(fleet.alive), 1)
            at = time.monotonic()  # before: a monitor may hear of a death before kill() returns
            fleet.kill([victim])
            _say(json.dumps({"event": "killed", "hearts": [victim.decode()], "at": at}))


def run_engines(profile_dir: str, size: int, seed: int, sub_per_engine: bool) -> None:
    """Simulated ipyparallel engines registering with the controller of ``profile_dir``: a
    status line every half second, a line for each engine unregistered, and ``kill N`` on
    stdin kills N registered engines (chosen by the seed), saying which and when."""
    import attrs
    import gevent

    from greenheart.core.registrations import EngineState
    from greenheart.integrations.ipyparallel.connection import ControllerConnection
    from greenheart.integrations.ipyparallel.engines import SimulatedEngines

    raise_open_file_limit()
    chooser = random.Random(seed)

    def unregistered(uuid: str, seconds: float | None) -> None:
        _say(json.dumps({"event": "unregistered", "uuid": uuid, "after_kill": seconds}))

    def report() -> None:
        while True:
            status = attrs.asdict(engines.status())
            waits = engines.registration_seconds()  # each engine's, from request to registered
            status["registration_max_s"] = max(waits, default=None)
            _say(json.dumps({"event": "status", "at": time.monotonic(), **status}))
            gevent.sleep(0.5)

    connection = ControllerConnection.from_profile_dir(profile_dir, wait=60)
    engines = SimulatedEngines(
        connection,
        count=size,
        ping_per_engine=sub_per_engine,
        on_unregistered=unregistered,
        prefix="bench",
    )
    with engines:
        reporter = gevent.spawn(report)
        try:
            while True:
                line = gevent.get_hub().threadpool.apply(sys.stdin.readline).split()
                if line[:1] != ["kill"]:
                    return
                registered = engines.engines_in(EngineState.REGISTERED)
                victims = chooser.sample(registered, min(int(line[1]), len(registered)))
                at = time.monotonic()
                engines.kill(victims)
                _say(json.dumps({"event": "killed", "uuids": victims, "at": at}))
        finally:
            reporter.kill()


def _send_garbage(pong: str, rate: float, seed: int) -> None:
    """About ``rate`` messages a second of random shape, from a few peers."""

    import gevent
    import zmq.green

    chooser = random.Random(seed + 1)
    context: zmq.green.Context = zmq.green.Context.instance()
    peers = []
    for n in range(4):
        peer = context.socket(zmq.DEALER)
        peer.linger = 0
        peer.setsockopt(zmq.IDENTITY, f"garbage-{n}".encode())
        peer.connect(pong)
        peers.append(peer)
    batch = max(1, int(rate / 10))
    while True:
        for _ in range(batch):
            frames = [
                os.urandom(chooser.choice([0, 1, 8, 30, 64, 65, 500]))
                for _ in range(chooser.randint(1, 3))
            ]
            with contextlib.suppress(zmq.Again):  # the monitor's queue for this peer is full
                chooser.choice(peers).send_multipart(frames, zmq.NOBLOCK)
        gevent.sleep(0.1)


def run_storm(pong: str, size: int, rate: float, hold: float) -> None:
    """``size`` TCP connections to ``pong``'s port at ``rate`` a second, each left silent (a port
    scanner, a client of another protocol); says how many it opened, holds them ``hold``
    seconds, closes them all at once and says so."""
    import socket

    raise_open_file_limit()
    host, port = pong.removeprefix("tcp://").rsplit(":", 1)
    opened: list[socket.socket] = []
    failed = 0
    began = time.monotonic()
    for n in range(size):
        time.sleep(max(0.0, began + n / rate - time.monotonic()))
        try:
            connection = socket.socket()
        except OSError:  # out of descriptors: the storm goes on
            failed += 1
            continue
        # closed with a reset, as a scanner's are: no TIME_WAIT to run out of ports in
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.setblocking(False)
        if connection.connect_ex((host, int(port))) not in (0, errno.EINPROGRESS):
            failed += 1
            connection.close()
            continue
        opened.append(connection)
    seconds = time.monotonic() - began
    _say(json.dumps({"opened": len(opened), "failed": failed, "seconds": round(seconds, 3)}))
    time.sleep(hold)
    for connection in opened:
        connection.close()
    _say(json.dumps({"closed": len(opened), "at": time.monotonic()}))
    _until_terminated()


LOADS = ("fleet", "hearts", "ipyparallel-hearts", "soak-fleet", "kill-fleet", "engines", "storm")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    die_with_parent()
    if argv[:1] == ["cli"]:
        # the greenheart command itself, as a child of a benchmark: the parent-death signal
        # is kept across exec
        os.execv(sys.executable, [sys.executable, "-m", "greenheart", *argv[1:]])
    if argv[:1] == ["ipcontroller"]:
        # ipyparallel's own controller, likewise
        os.execv(sys.executable, [sys.executable, "-m", "ipyparallel.controller", *argv[1:]])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=(*MONITORS, *LOADS))
    parser.add_argument("--period", type=float, default=1000.0, help="milliseconds")
    parser.add_argument("--max-misses", type=int, default=1)
    parser.add_argument("--events", action="store_true", help="a line per heart event")
    parser.add_argument("--fail-on-disconnect", action="store_true", help="greenheart: so")
    parser.add_argument("--curve", metavar="DIR", help="CURVE keys, for greenheart-curve")
    parser.add_argument("--ping", help="for a load: the monitor's ping address")
    parser.add_argument("--pong", help="for a load: the monitor's pong address")
    parser.add_argument("--size", type=int, default=1, help="for a load: how many hearts")
    parser.add_argument("--limit", type=int, default=0, help="ipyparallel-hearts: at most")
    parser.add_argument("--prefix", default="bench", help="for a load: identity prefix")
    parser.add_argument("--churn", type=float, default=0.01, help="soak-fleet: killed a minute")
    parser.add_argument("--every", type=float, default=6.0, help="soak-fleet: seconds a round")
    parser.add_argument("--garbage", type=float, default=0.0, help="soak-fleet: messages/s")
    parser.add_argument("--revive", action="store_true", help="soak-fleet: revive the dead")
    parser.add_argument("--profile-dir", help="engines: the controller's profile directory")
    parser.add_argument("--sub-per-engine", action="store_true", help="engines: so")
    parser.add_argument("--rate", type=float, default=1000.0, help="storm: connections a second")
    parser.add_argument("--hold", type=float, default=10.0, help="storm: seconds held")
    parser.add_argument("--open-files", type=int, help="lower the open-file limit to this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", help="run on these CPUs only (a comma list), threads included")
    args = parser.parse_args(argv)
    if args.cpus:  # first, so that ZeroMQ's I/O threads, started later, inherit it
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    if args.open_files:  # soft and hard, so that raising the limit later leaves it
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.open_files, args.open_files))
    if args.kind == "fleet":
        run_fleet(args.ping, args.pong, args.size, args.prefix, args.curve)
    elif args.kind == "hearts":
        run_hearts(args.ping, args.pong, args.size, args.prefix)
    elif args.kind == "ipyparallel-hearts":
        run_ipyparallel_hearts(args.ping, args.pong, args.size, args.limit)
    elif args.kind == "engines":
        run_engines(args.profile_dir, args.size, args.seed, args.sub_per_engine)
    elif args.kind == "storm":
        run_storm(args.pong, args.size, args.rate, args.hold)
    elif args.kind == "kill-fleet":
        run_kill_fleet(args.ping, args.pong, args.size, args.seed)
    elif args.kind == "soak-fleet":
        run_soak_fleet(
            args.ping,
            args.pong,
            args.size,
            args.churn,
            args.garbage,
            args.every,
            args.seed,
            args.revive,
        )
    elif args.kind in ("greenheart", "greenheart-curve"):
        run_greenheart(
            args.period, args.max_misses, args.curve, args.events, args.fail_on_disconnect
        )
    elif args.kind == "ipyparallel":
        run_ipyparallel(args.period, args.max_misses, args.events)
    else:
        run_raw(args.period)
    return 0


if __name__ == "__main__":
    sys.exit(main())
