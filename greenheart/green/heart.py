"""Heart: answers a HeartMonitor from a greenlet.

IPython.parallel's Heart is a zmq FORWARDER device in a thread; this one is a
greenlet forwarding SUB to DEALER, so it beats only while the gevent hub runs. In
a gevent server that is the point: a hub stuck in CPU work or a blocking call
serves nobody, and its heart should stop answering too.

A heart that hears no ping for a few of its monitor's periods (or none in its first seconds)
says its monitor is lost, and says so again when pings come back
(:mod:`greenheart.core.pingwatch`): a log line, and :meth:`Heart.add_hearing_handler`.

A heart stopped (:meth:`Heart.stop`) tells its monitor that it leaves (:func:`leave`), which
fails it at once as left, diagnosed stopped: a deploy is not taken for a crash. A heart that
dies of an error, is killed (:meth:`Heart.kill`), or whose process is, says nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import attrs
import gevent
import zmq
import zmq.green

from greenheart.core.errors import UsageError
from greenheart.core.pingwatch import FIRST_WAIT, MISSES, Change, Hearing
from greenheart.core.wire import LEAVE, MAX_IDENTITY_BYTES, display_id
from greenheart.green.curve import ClientCurve
from greenheart.green.lifecycle import Service
from greenheart.green.sockets import close_sockets, connect, default_context, socket_type_in

log = logging.getLogger("greenheart.heart")


def listen(hearing: Hearing, heard: Callable[[Change, float], object]) -> None:
    """Tell ``heard`` when the monitor is lost (a greenlet): woken at the deadline the pings
    heard set. A poll on the socket would cost a call a ping, and zmq.green's uses select(),
    which fails past descriptor 1023."""
    while True:
        now = time.monotonic()
        if hearing.check(now) is Change.LOST:
            heard(Change.LOST, hearing.silence(now))
        wait = hearing.deadline() - now
        gevent.sleep(wait if wait > 0 else hearing.period or hearing.first_wait)


def heard_ping(hearing: Hearing, heard: Callable[[Change, float], object]) -> None:
    """A ping came: tell ``heard`` if the monitor was lost until now."""
    now = time.monotonic()
    silence = hearing.silence(now)
    if hearing.ping(now) is Change.FOUND:
        heard(Change.FOUND, silence)


#: ms a stopping heart's leave has to go out: at once on a live connection, and never waited
#: for but by a context's termination (at most this); nothing is queued without a connection
LEAVE_LINGER_MS = 250


def leave(socket: zmq.Socket) -> None:
    """Say that the heart whose DEALER is ``socket`` stops cleanly, and close it."""
    # no connection up (IMMEDIATE), or its queue full: no monitor to tell, nothing to wait for
    with contextlib.suppress(zmq.ZMQError):
        socket.send(LEAVE, zmq.NOBLOCK)
    socket.close(linger=LEAVE_LINGER_MS)


def _identity(heart_id: bytes | str | None) -> bytes:
    if heart_id is None:
        return uuid.uuid4().bytes
    if isinstance(heart_id, str):
        heart_id = heart_id.encode("utf-8")
    if not isinstance(heart_id, bytes):
        raise TypeError(f"heart_id must be bytes or str, got {heart_id!r}")
    if not 0 < len(heart_id) <= MAX_IDENTITY_BYTES:
        raise UsageError(f"heart_id must be 1 to {MAX_IDENTITY_BYTES} bytes, got {len(heart_id)}")
    if heart_id.startswith(b"\0"):
        raise UsageError("heart_id must not start with a zero byte (ZeroMQ reserves those)")
    return heart_id


@attrs.define(eq=False)
class Heart(Service):
    """Echoes every ping from ``in_addr`` back to the monitor at ``out_addr``.

    ``heart_id`` (bytes or str) is the DEALER identity the monitor knows this heart by;
    a random UUID when not given. A heart stopped and started again, or a new Heart
    with the same id, is heard again under the same identity.
    """

    restartable = True

    in_addr: str
    out_addr: str
    #: the socket pings come in on: a SUB, for a monitor's PUB
    in_type: int = attrs.field(default=zmq.SUB, validator=socket_type_in({zmq.SUB}, "in_type"))
    #: the socket pongs go out on: a DEALER, whose identity a monitor's ROUTER sees
    out_type: int = attrs.field(
        default=zmq.DEALER, validator=socket_type_in({zmq.DEALER}, "out_type")
    )
    heart_id: bytes | str | None = None
    context: zmq.green.Context | None = None
    #: the monitor's public key and this heart's key pair, for a monitor that uses CURVE
    curve: ClientCurve | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(ClientCurve))
    )

    #: the monitor's periods without a ping before it is lost, and the seconds to wait for the
    #: first ping (:mod:`greenheart.core.pingwatch`)
    lost_after: int = MISSES
    first_wait: float = FIRST_WAIT

    id: bytes = attrs.field(init=False)
    #: pongs that could not be sent, the monitor's connection not up (a fleet heart's ``unsent``)
    unsent: int = attrs.field(default=0, init=False)
    #: what it heard of its monitor: pings, or the monitor lost
    hearing: Hearing | None = attrs.field(default=None, init=False)
    _hearing_handlers: list[Callable[[Change, float], object]] = attrs.field(
        factory=list, init=False
    )
    _device: gevent.Greenlet | None = attrs.field(default=None, init=False)
    _sockets: tuple[zmq.green.Socket | None, zmq.green.Socket | None] = attrs.field(
        default=(None, None), init=False
    )
    #: stopping without a word (:meth:`kill`)
    _killed: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self.id = _identity(self.heart_id)

    @property
    def device(self) -> gevent.Greenlet | None:
        """The forwarding greenlet while the heart runs (IPython.parallel's name for it), else
        None."""
        return self._device if self.running else None

    # :meth:`start` connects and starts answering pings, returning at once; :meth:`stop`
    # stops answering and closes the sockets (see Service).

    def kill(self) -> None:
        """Stop without telling the monitor, as a killed process does: it is failed as a crash
        (for tests and drills). :meth:`stop` says the heart leaves."""
        self._killed = True
        self.stop()

    def _open(self) -> None:
        self._killed = False
        context = self.context or default_context()
        inbound = context.socket(self.in_type)
        self._sockets = (inbound, None)
        inbound.linger = 0
        if self.in_type == zmq.SUB:
            inbound.setsockopt(zmq.SUBSCRIBE, b"")
        outbound = context.socket(self.out_type)
        self._sockets = (inbound, outbound)
        outbound.linger = 0
        outbound.setsockopt(zmq.IDENTITY, self.id)
        # Queue pongs only on a live connection: one held while connecting would
        # reach the monitor after its ping has expired, as noise.
        outbound.setsockopt(zmq.IMMEDIATE, 1)
        if self.curve is not None:
            self.curve.apply(inbound)
            self.curve.apply(outbound)
        connect(inbound, self.in_addr, "pings")
        connect(outbound, self.out_addr, "pongs")
        self.hearing = Hearing(time.monotonic(), self.lost_after, self.first_wait)
        self._device = self._spawn(self._forward, inbound, outbound)
        self._spawn(listen, self.hearing, self._heard)

    def _close(self) -> None:
        outbound = self._sockets[1]
        if outbound is not None and self.exception is None and not self._killed:  # a clean stop
            leave(outbound)
        close_sockets(*self._sockets)
        self._sockets = (None, None)

    def add_hearing_handler(self, handler: Callable[[Change, float], object]) -> None:
        """Call ``handler(change, silence)`` when the monitor is lost (``Change.LOST``, after
        ``silence`` seconds without a ping) and when it is found again (``Change.FOUND``)."""
        if not callable(handler):
            raise TypeError(f"a handler must be callable, got {handler!r}")
        self._hearing_handlers.append(handler)

    def _heard(self, change: Change, silence: float) -> None:
        if change is Change.LOST:
            log.warning(
                "heart %s: its monitor is lost, no ping for %.1f s from %s",
                display_id(self.id),
                silence,
                self.in_addr,
            )
        else:
            log.warning("heart %s: its monitor is back after %.1f s", display_id(self.id), silence)
        for handler in list(self._hearing_handlers):
            try:
                handler(change, silence)
            except Exception:
                log.exception("heart %s: a hearing handler raised", display_id(self.id))

    def _forward(self, inbound: zmq.green.Socket, outbound: zmq.green.Socket) -> None:
        # Any other error (a socket closed under it, its context terminated) kills the heart,
        # which then says so: see Service.
        hearing = self.hearing
        assert hearing is not None
        while True:
            frames = inbound.recv_multipart()
            heard_ping(hearing, self._heard)
            try:
                outbound.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                self.unsent += 1
