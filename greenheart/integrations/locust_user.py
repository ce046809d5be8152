"""A Locust user that is a heart (the ``locust`` extra).

Locust is gevent-based and already knows how to spawn users at a rate, show them in a
web UI, write CSV, and spread them over processes and machines (``--processes``,
``--master``/``--worker``). :class:`HeartUser` lets it drive a heart fleet: every user
joins the monitor with its own DEALER socket and identity and answers its pings. A
locustfile need only import it: with ``locustfile.py`` holding the line
``from greenheart.integrations.locust_user import HeartUser`` (the repository's
``examples/locustfile.py`` is that line and its usage; the package does not install it),
``locust --headless -u 5000 -r 500 --host "PING PONG"`` puts 5,000 hearts on a monitor
and ramps them at 500 a second.

``--host`` names the monitor: its ping address, then its pong address (space or comma
between). Each ping a user answers is two entries in Locust's statistics:

* ``PING interval``: milliseconds since the user's previous ping (the period, and its
  jitter as Locust's percentiles);
* ``PONG send``: milliseconds from receiving the ping to sending the pong, failed when
  the pong could not be sent (the connection lost, or its queue full). A user joins only
  once its connection is up, so no pong fails for want of one at the start.

Users of one process share one SUB socket for pings, so a user costs 2 file
descriptors (its DEALER's mailbox and its connection); the soft open-file limit is
raised to the hard one at import.
"""

from __future__ import annotations

import itertools
import os
import socket
import time

import gevent
import gevent.queue
import zmq
import zmq.green
from locust import User, constant, task

from greenheart.core.checks import endpoint_problem
from greenheart.green.limits import raise_open_file_limit
from greenheart.green.sockets import close_sockets

raise_open_file_limit()


def parse_host(host: str | None) -> tuple[str, str]:
    """``(ping_addr, pong_addr)`` from Locust's ``--host``."""
    parts = (host or "").replace(",", " ").split()
    if len(parts) != 2:
        raise ValueError(
            f"--host must be the monitor's ping and pong addresses, as in"
            f' "tcp://127.0.0.1:5555 tcp://127.0.0.1:5556"; got {host!r}'
        )
    for addr in parts:
        problem = endpoint_problem(addr, bind=False)
        if problem is not None:
            raise ValueError(f"--host: {addr}: {problem}")
    return parts[0], parts[1]


class PingHub:
    """One SUB socket per ping address in this process, fanning each ping out to its users."""

    _hubs: dict[str, PingHub] = {}
    _context: zmq.green.Context | None = None

    def __init__(self, ping_addr: str) -> None:
        self.users: dict[HeartUser, gevent.queue.Queue] = {}
        self.sub = self.context().socket(zmq.SUB)
        self.sub.linger = 0
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(ping_addr)
        self.greenlet = gevent.spawn(self._fan_out)

    @classmethod
    def context(cls) -> zmq.green.Context:
        if cls._context is None:
            cls._context = zmq.green.Context()
            cls._context.set(zmq.MAX_SOCKETS, cls._context.get(zmq.SOCKET_LIMIT))
        return cls._context

    @classmethod
    def for_address(cls, ping_addr: str) -> PingHub:
        if ping_addr not in cls._hubs:
            cls._hubs[ping_addr] = cls(ping_addr)
        return cls._hubs[ping_addr]

    def _fan_out(self) -> None:
        while True:
            payload = self.sub.recv()
            received = time.monotonic()
            for pings in list(self.users.values()):
                if pings.full():
                    pings.get_nowait()  # a user that far behind answers only the newest ping
                pings.put_nowait((payload, received))


_serials = itertools.count()

#: seconds a user waits for its connection to the monitor before it gives up
CONNECT_TIMEOUT = 60.0


def _wait_until_connected(dealer: zmq.Socket, pong_addr: str) -> None:
    """Return once ``dealer`` can send, so that no pong is reported failed for want of a
    connection: with ``ZMQ_IMMEDIATE`` a DEALER can send only once a connection is up."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while not int(dealer.get(zmq.EVENTS)) & zmq.POLLOUT:
        if time.monotonic() > deadline:
            raise ConnectionError(
                f"no connection to the monitor's pong address {pong_addr}"
                f" within {CONNECT_TIMEOUT:g} s"
            )
        gevent.sleep(0.01)


class HeartUser(User):
    """A heart: joins the monitor named by ``--host`` and answers every ping."""

    wait_time = constant(0)

    def on_start(self) -> None:
        ping_addr, pong_addr = parse_host(self.host)
        self.heart_id = f"locust-{socket.gethostname()}-{os.getpid()}-{next(_serials)}".encode()
        self.pings: gevent.queue.Queue = gevent.queue.Queue(maxsize=2)
        self.last_ping: float | None = None
        dealer = zmq.Socket(PingHub.context(), zmq.DEALER)
        dealer.linger = 0
        dealer.setsockopt(zmq.IDENTITY, self.heart_id)
        dealer.setsockopt(zmq.IMMEDIATE, 1)  # as Heart: no pongs queued for a connection not up
        dealer.connect(pong_addr)
        self.dealer = dealer
        _wait_until_connected(dealer, pong_addr)
        self.hub = PingHub.for_address(ping_addr)
        self.hub.users[self] = self.pings

    def on_stop(self) -> None:
        self.hub.users.pop(self, None)
        close_sockets(self.dealer)

    @task
    def answer(self) -> None:
        payload, received = self.pings.get()
        fire = self.environment.events.request.fire
        if self.last_ping is not None:
            interval_ms = (received - self.last_ping) * 1000
            fire(request_type="PING", name="interval", response_time=interval_ms,
                 response_length=len(payload), exception=None, context={})  # fmt: skip
        self.last_ping = received
        error = None
        try:
            # a plain socket, sent without blocking: a pong never waits, it is dropped
            self.dealer.send(payload, zmq.NOBLOCK)
        except zmq.Again as unsent:
            error = unsent
        fire(request_type="PONG", name="send", response_time=(time.monotonic() - received) * 1000,
             response_length=len(payload), exception=error, context={})  # fmt: skip
