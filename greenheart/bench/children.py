"""The processes of a benchmark: the monitors it measures, and the fleets that load them.

``python -m greenheart.bench.children KIND --period MS`` binds a ping and a pong socket
on free loopback ports, prints one JSON line saying where, then one JSON line per
beat (:func:`beat_report`) until it is terminated. KIND is one of:

- ``greenheart``: :class:`greenheart.HeartMonitor`;
- ``greenheart-curve``: the same with CURVE on: encrypted, and only the fleets' key let in
  (``--curve DIR`` names the keys, for the monitor and its fleets alike);
- ``ipyparallel``: ipyparallel's own ``HeartMonitor`` on its tornado loop;
- ``raw``: the transport's limit, a bare pyzmq ROUTER drained in a tight loop with
  the least bookkeeping a monitor can do (who answered this round).

Each target pays the same for being measured: the round trip of every answer is
kept, and a beat reports a sample of them. CPU time is the whole process's (user +
system, ZeroMQ's I/O thread included), read from /proc at every beat.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Sequence

from greenheart.bench.proc import cpu_seconds, rss_kib

#: round trips reported per beat; a random sample when more hearts answered
RTT_SAMPLE = 200

LOOPBACK = "tcp://127.0.0.1:0"

MONITORS = ("greenheart", "greenheart-curve", "ipyparallel", "raw")

#: in a ``--curve`` directory: the monitor's key pair, and the fleets' (the one allowed in)
SERVER_KEYS = "server.key_secret"
SERVER_PUBLIC_KEY = "server.key"
FLEET_KEYS = "allowed/fleet.key_secret"


def beat_report(
    *,
    beat: int,
    hearts: int,
    responded: int,
    on_probation: int,
    new: int,
    failed: int,
    on_time: int,
    late: int,
    bad: int,
    round_trips: Sequence[float],
    round_s: float | None,
) -> str:
    """One beat as a JSON line; times in milliseconds."""
    sample = (
        round_trips if len(round_trips) <= RTT_SAMPLE else random.sample(round_trips, RTT_SAMPLE)
    )
    return json.dumps(
        {
            "beat": beat,
            "at": time.monotonic(),
            "cpu": cpu_seconds(),
            "hearts": hearts,
            "responded": responded,
            "on_probation": on_probation,
            "new": new,
            "failed": failed,
            "on_time": on_time,
            "late": late,
            "bad": bad,
            "rtt_ms": [round(rtt * 1000, 3) for rtt in sample],
            "rtt_max_ms": round(max(round_trips) * 1000, 3) if round_trips else None,
            "round_ms": None if round_s is None else round(round_s * 1000, 3),
        }
    )


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _ready(ping: str, pong: str) -> None:
    _say(json.dumps({"ready": True, "ping": ping, "pong": pong, "pid": os.getpid()}))


# -- greenheart ------------------------------------------------------------------------------


def run_greenheart(period: float, max_misses: int, curve_dir: str | None = None) -> None:
    import gevent
    import gevent.event

    from greenheart.core.ledger import Beat
    from greenheart.green.limits import raise_open_file_limit
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
                failed=len(beat.failed_hearts),
                on_time=beat.on_time_pongs,
                late=beat.late_pongs,
                bad=beat.bad_pongs,
                round_trips=beat.round_trips,
                round_s=beat.max_rtt,
            )
        )

    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    curve = None
    if curve_dir is not None:
        from greenheart.green.curve import KeyPair, ServerCurve, load_allowed_keys

        keys = KeyPair.load(os.path.join(curve_dir, SERVER_KEYS))
        curve = ServerCurve(keys, load_allowed_keys(os.path.join(curve_dir, "allowed")))
    monitor = HeartMonitor.bind(
        LOOPBACK, LOOPBACK, period=period, max_misses=max_misses, curve=curve
    )
    monitor.add_beat_handler(report)
    with monitor:
        _ready(monitor.ping_addr, monitor.pong_addr)
        stop.wait()


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


def run_ipyparallel(period: float, max_misses: int) -> None:
    import asyncio

    import zmq
    from ipyparallel.controller.heartmonitor import HeartMonitor
    from zmq.eventloop.zmqstream import ZMQStream

    from greenheart.green.limits import raise_open_file_limit

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
            super().handle_new_hearts(hearts)

        def handle_heart_failure(self, hearts: list[bytes]) -> None:
            self.counts["failed"] += len(hearts)
            super().handle_heart_failure(hearts)

        def beat(self) -> None:
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
                )
            )

    async def main() -> None:
        context = zmq.Context.instance()
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
        _ready(ping.last_endpoint.decode(), pong.last_endpoint.decode())
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        await stopped.wait()

    asyncio.run(main())


# -- raw pyzmq -------------------------------------------------------------------------------


def run_raw(period: float) -> None:
    import zmq

    from greenheart.green.limits import raise_open_file_limit

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
    _ready(ping.last_endpoint.decode(), pong.last_endpoint.decode())
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
            number += 1
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
                )
            )
            previous, current, tic = current, b"%d" % number, now
            responses, arrivals, late, bad = set(), [], 0, 0
            ping.send(current)
            due += interval * (1 + int((now - due) // interval))
            continue
        if not poller.poll(max(0.0, due - now) * 1000):
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


# -- a fleet ------------------------------------------------------------------------------------


def run_fleet(ping: str, pong: str, size: int, prefix: str, curve_dir: str | None = None) -> None:
    """A fleet of ``size`` prompt hearts; says its memory before and once all are connected."""
    import gevent
    import gevent.event

    from greenheart.green.fleet import HeartFleet
    from greenheart.green.limits import raise_open_file_limit

    raise_open_file_limit()
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    _say(json.dumps({"rss_before_kib": rss_kib(), "pid": os.getpid()}))
    curve = None
    if curve_dir is not None:
        from greenheart.green.curve import ClientCurve, KeyPair, load_public_key

        curve = ClientCurve(
            load_public_key(os.path.join(curve_dir, SERVER_PUBLIC_KEY)),
            KeyPair.load(os.path.join(curve_dir, FLEET_KEYS)),
        )
    with HeartFleet(ping, pong, size=size, prefix=prefix, curve=curve):
        _say(json.dumps({"started": size}))
        stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=(*MONITORS, "fleet"))
    parser.add_argument("--period", type=float, default=1000.0, help="milliseconds")
    parser.add_argument("--max-misses", type=int, default=1)
    parser.add_argument("--ping", help="for a fleet: the monitor's ping address")
    parser.add_argument("--pong", help="for a fleet: the monitor's pong address")
    parser.add_argument("--size", type=int, default=1, help="for a fleet: how many hearts")
    parser.add_argument("--prefix", default="bench", help="for a fleet: identity prefix")
    parser.add_argument("--curve", metavar="DIR", help="CURVE keys, for greenheart-curve")
    args = parser.parse_args(argv)
    if args.kind == "fleet":
        run_fleet(args.ping, args.pong, args.size, args.prefix, args.curve)
    elif args.kind in ("greenheart", "greenheart-curve"):
        run_greenheart(args.period, args.max_misses, args.curve)
    elif args.kind == "ipyparallel":
        run_ipyparallel(args.period, args.max_misses)
    else:
        run_raw(args.period)
    return 0


if __name__ == "__main__":
    sys.exit(main())
