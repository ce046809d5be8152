"""The loads that drive a benchmark's monitor, given its ``--ping`` and ``--pong``.

- ``fleet``: a :class:`~greenheart.green.fleet.HeartFleet` of ``--size`` prompt hearts, and
  ``hearts`` as many :class:`~greenheart.Heart` objects: each says its
  :class:`~greenheart.bench.lines.Footprint` first, then :class:`~greenheart.bench.lines.Started`
  once every socket is open; a fleet then says its counters every second;
- ``ipyparallel-hearts``: ipyparallel's thread hearts, ``--size`` more each time it reads
  ``more`` on its stdin, saying what they cost each time;
- ``soak-fleet``: a fleet that kills ``--churn`` of its hearts a minute (saying whom, and
  when) and grows as many, or revives them, and sends ``--garbage`` messages a second to the
  pong socket;
- ``kill-fleet``: a fleet that kills one heart each time it reads ``kill`` on its stdin;
- ``engines``: simulated ipyparallel engines registering with the controller of
  ``--profile-dir``, killing ``N`` of them on ``kill N``;
- ``storm``: ``--size`` plain TCP connections to the pong port at ``--rate`` a second that
  never speak ZeroMQ, held ``--hold`` seconds.

A load stops when it is told to (a signal, or the end of its orders on stdin) or when what
it runs stops by itself, which it says on stderr before it exits with status 1.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent

from greenheart.bench.lines import (
    EngineStatus,
    FleetPings,
    Killed,
    Revived,
    Started,
    StormClosed,
    StormOpened,
    ThreadHearts,
    ThreadHeartsFailed,
    Unregistered,
    say,
)
from greenheart.bench.proc import proc_status, rss_kib
from greenheart.bench.programs.common import FLEET_KEYS, SERVER_PUBLIC_KEY, footprint
from greenheart.bench.programs.serving import serve
from greenheart.green.limits import raise_open_file_limit

if TYPE_CHECKING:
    from greenheart.green.curve import ClientCurve
    from greenheart.green.fleet import HeartFleet


def _orders(on: Callable[[list[str]], bool]) -> Callable[[], None]:
    """A chore that reads orders from stdin, a line at a time, and gives each to ``on`` until
    it returns False or stdin ends."""

    def read() -> None:
        while True:
            # a blocking read, in a thread: the hub goes on answering pings meanwhile
            words = gevent.get_hub().threadpool.apply(sys.stdin.readline).split()
            if not words or not on(words):
                return

    return read


def _load_curve(curve_dir: str | None) -> ClientCurve | None:
    if curve_dir is None:
        return None
    from greenheart.green.curve import ClientCurve, KeyPair, load_public_key

    return ClientCurve(
        load_public_key(os.path.join(curve_dir, SERVER_PUBLIC_KEY)),
        KeyPair.load(os.path.join(curve_dir, FLEET_KEYS)),
    )


def run_fleet(ping: str, pong: str, size: int, prefix: str, curve_dir: str | None = None) -> int:
    """A fleet of ``size`` prompt hearts, and its counters every second."""
    from greenheart.green.fleet import HeartFleet

    raise_open_file_limit()
    say(footprint())
    with HeartFleet(ping, pong, size=size, prefix=prefix, curve=_load_curve(curve_dir)) as fleet:
        say(Started(hearts=size, at=time.monotonic()))
        return serve(fleet, chores=(lambda: _report_status(fleet),))


def _report_status(fleet: HeartFleet, every: float = 1.0) -> None:
    """The fleet's counters every ``every`` seconds, to tell whether it kept up."""
    while True:
        gevent.sleep(every)
        status = fleet.status()
        say(FleetPings(pings=status.fleet_pings, skipped_pings=status.skipped_pings))


def run_hearts(ping: str, pong: str, size: int, prefix: str) -> int:
    """``size`` :class:`~greenheart.Heart` objects, for comparison with a fleet."""
    import zmq.green

    from greenheart.green.heart import Heart

    raise_open_file_limit()
    say(footprint())
    context = zmq.green.Context()
    context.set(zmq.MAX_SOCKETS, context.get(zmq.SOCKET_LIMIT))  # the default is 1,023
    hearts = [Heart(ping, pong, heart_id=f"{prefix}-{n}", context=context) for n in range(size)]
    try:
        for heart in hearts:
            heart.start()
        say(Started(hearts=size, at=time.monotonic()))
        return serve(*hearts)
    finally:
        for heart in hearts:
            heart.stop()
        context.term()


def run_ipyparallel_hearts(ping: str, pong: str, step: int, limit: int) -> int:
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
            now = footprint()
            report = ThreadHearts(
                hearts=len(hearts),
                rss_before_kib=before,
                rss_kib=now.rss_kib,
                fds=now.fds,
                threads=proc_status("Threads"),
            )
        except Exception as error:  # running out of descriptors or threads is the measurement
            say(ThreadHeartsFailed(hearts=len(hearts), error=repr(error)))
            break
        say(report)
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
) -> int:
    """A fleet that kills ``churn`` of its hearts a minute, ``every`` seconds, and grows as
    many (or, with ``revive``, brings the last round's dead back under their identities);
    and ``garbage`` random messages a second from a few peers."""
    from greenheart.green.fleet import HeartFleet

    raise_open_file_limit()
    chooser = random.Random(seed)
    per_round = max(1, round(size * churn * every / 60))

    def churn_rounds(fleet: HeartFleet) -> None:
        back: list[bytes] = []
        while True:
            gevent.sleep(every)
            # only hearts old enough to have registered, so each kill must show as a failure
            settled = [h for h in list(fleet.alive)[: -4 * per_round] if h not in back]
            victims = chooser.sample(settled, min(per_round, len(settled)))
            at = time.monotonic()  # before: a monitor may hear of a death before kill() returns
            fleet.kill(victims)
            say(Killed(hearts=[heart.decode() for heart in victims], at=at))
            if not revive:
                fleet.grow(len(victims))
                continue
            fleet.revive(back)  # the last round's dead, under their identities
            say(Revived(hearts=[heart.decode() for heart in back]))
            back = victims

    with HeartFleet(ping, pong, size=size, prefix="soak") as fleet:
        say(Started(hearts=len(fleet.alive), at=time.monotonic()))
        chores: tuple[Callable[[], None], ...] = (lambda: churn_rounds(fleet),)
        if garbage > 0:
            chores += (lambda: _send_garbage(pong, garbage, seed),)
        return serve(fleet, chores=chores)


def run_kill_fleet(ping: str, pong: str, size: int, seed: int) -> int:
    """A fleet that kills one of its hearts (chosen by the seed) each time it reads ``kill``
    on its stdin, saying which and when."""
    from greenheart.green.fleet import HeartFleet

    raise_open_file_limit()
    chooser = random.Random(seed)
    with HeartFleet(ping, pong, size=size, prefix="doomed") as fleet:

        def kill(words: list[str]) -> bool:
            if words != ["kill"]:
                return False
            (victim,) = chooser.sample(list(fleet.alive), 1)
            at = time.monotonic()  # before: a monitor may hear of a death before kill() returns
            fleet.kill([victim])
            say(Killed(hearts=[victim.decode()], at=at))
            return True

        say(Started(hearts=size, at=time.monotonic()))
        return serve(fleet, chores=(_orders(kill),))


def run_engines(profile_dir: str, size: int, seed: int, ping_per_heart: bool) -> int:
    """Simulated ipyparallel engines registering with the controller of ``profile_dir``: their
    status every half second, a line for each engine unregistered, and ``kill N`` on stdin
    kills N registered engines (chosen by the seed), saying which and when."""
    from greenheart.core.registrations import EngineState
    from greenheart.integrations.ipyparallel.connection import ControllerConnection
    from greenheart.integrations.ipyparallel.engines import SimulatedEngines

    raise_open_file_limit()
    chooser = random.Random(seed)

    def unregistered(uuid: str, seconds: float | None) -> None:
        say(Unregistered(uuid=uuid, after_kill=seconds))

    def report() -> None:
        while True:
            waits = engines.registration_seconds()  # each engine's, from request to registered
            at, status = time.monotonic(), engines.status()
            say(
                EngineStatus(
                    at=at, registrations=status, registration_max_s=max(waits, default=None)
                )
            )
            gevent.sleep(0.5)

    def kill(words: list[str]) -> bool:
        if words[:1] != ["kill"]:
            return False
        registered = engines.engines_in(EngineState.REGISTERED)
        victims = chooser.sample(registered, min(int(words[1]), len(registered)))
        at = time.monotonic()
        engines.kill(victims)
        say(Killed(hearts=victims, at=at))
        return True

    connection = ControllerConnection.from_profile_dir(profile_dir, wait=60)
    engines = SimulatedEngines(
        connection,
        size=size,
        ping_per_heart=ping_per_heart,
        on_unregistered=unregistered,
        prefix="bench",
    )
    with engines:
        return serve(engines, chores=(report, _orders(kill)))


def _send_garbage(pong: str, rate: float, seed: int) -> None:
    """About ``rate`` messages a second of random shape, from a few peers."""
    import zmq.green

    chooser = random.Random(seed + 1)
    context: zmq.green.Context = zmq.green.Context.instance()
    peers = []
    try:
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
    finally:
        for peer in peers:
            peer.close(0)


def run_storm(pong: str, size: int, rate: float, hold: float) -> int:
    """``size`` TCP connections to ``pong``'s port at ``rate`` a second, each left silent (a port
    scanner, a client of another protocol); says how many it opened, holds them ``hold``
    seconds, closes them all at once and says so."""
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
    seconds = round(time.monotonic() - began, 3)
    say(StormOpened(opened=len(opened), failed=failed, seconds=seconds))
    time.sleep(hold)
    for connection in opened:
        connection.close()
    say(StormClosed(closed=len(opened), at=time.monotonic()))
    return serve()
