"""HeartMonitor: a ledger driven by two greenlets, on a PUB socket and a ROUTER.

The beat greenlet wakes on a fixed grid of ``period`` milliseconds
(:class:`~greenheart.core.schedule.BeatSchedule`), publishes the next ping at once, reads the
pongs already queued (as :class:`~greenheart.core.judging.CatchUp` asks), closes the round in
the ledger, and only then tells the handlers. The pong greenlet
(:class:`~greenheart.green.monitor.pongs.PongReader`) feeds the ledger whatever arrives between
beats. The ledger decides everything; the monitor moves bytes, time and events.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import gevent
import zmq
import zmq.green

from greenheart.core.errors import SocketClosed, UsageError
from greenheart.core.failures import Failure
from greenheart.core.judging import BY_HAND, CatchUp, Lap, Lateness, Pace, Verdict, verdict
from greenheart.core.ledger import Ledger
from greenheart.core.phi import PhiAccrual
from greenheart.core.restart import grace_for
from greenheart.core.rules import Rules
from greenheart.core.schedule import BeatSchedule
from greenheart.core.silence import MassSilence
from greenheart.core.transport import DEFAULT_TRANSPORT_TIMEOUT, keepalive_for
from greenheart.core.values import ANSWERS, Beat, Counters, Pong
from greenheart.core.wire import MAX_IDENTITY_BYTES, split_pong
from greenheart.green.connections import ConnectionWatch
from greenheart.green.curve import ServerCurve
from greenheart.green.lifecycle import Service
from greenheart.green.monitor.handlers import (
    BeatHandler,
    FailureHandler,
    Handlers,
    HeartHandler,
    require_callable,
)
from greenheart.green.monitor.logs import MonitorLog
from greenheart.green.monitor.pongs import PongReader
from greenheart.green.monitor.sockets import SMALLEST_MESSAGE, make_sockets, prepare
from greenheart.green.recording import RecordingFile
from greenheart.green.refusal import ConnectionGuard
from greenheart.green.sockets import close_sockets, default_context, endpoint, require_green_socket
from greenheart.green.state import StateFile
from greenheart.green.zap import Authenticator


def _recording_file(value: str | os.PathLike[str] | RecordingFile | None) -> RecordingFile | None:
    if value is None or isinstance(value, RecordingFile):
        return value
    return RecordingFile(value)


def _state_file(value: str | os.PathLike[str] | StateFile | None) -> StateFile | None:
    if value is None or isinstance(value, StateFile):
        return value
    return StateFile(os.fspath(value))


@attrs.frozen
class MonitorStatus:
    """The monitor at one moment, for what reports on it (metrics, ``/hearts``): the ledger's
    counters and the driver's own, read together."""

    running: bool
    #: hearts known, on probation, and held as suspects of a mass silence
    heart_count: int
    probation_count: int
    suspect_count: int
    counters: Counters
    #: late beats of a paused or blocked process, and of a busy hub; beats that judged nobody
    #: because answers were still queued
    stalls: int
    busy_beats: int
    behind_beats: int
    handler_errors: int
    #: peers whose handshake failed, by reason
    refused_peers: dict[str, int]
    refusing_connections: bool
    connection_refusals: int


#: a setting fixed for the monitor's life: setting it later would be silently ignored
_FIXED = attrs.setters.frozen


@attrs.define(eq=False)
class HeartMonitor(Service):
    """Pings hearts on a PUB socket every ``period`` ms and tracks who answers on a ROUTER,
    in a :class:`~greenheart.core.ledger.Ledger`; tells its handlers who is new and who failed.

    ``pingstream`` and ``pongstream`` are ``zmq.green`` sockets, bound or connected by the
    caller; :meth:`bind` makes and binds both. The judging settings are keyword arguments, as
    IPython.parallel's are (``HeartMonitor.bind(..., **attrs.asdict(rules, recurse=False))``
    from a :class:`~greenheart.core.rules.Rules`); they are checked, and held, as the one
    :attr:`rules`, and like ``period`` they are read-only.
    """

    pingstream: zmq.green.Socket = attrs.field()
    pongstream: zmq.green.Socket = attrs.field()
    #: milliseconds between pings
    period: float = attrs.field(
        default=3000.0, converter=float, validator=attrs.validators.gt(0), on_setattr=_FIXED
    )
    # the judging settings: what the fields of greenheart.core.rules.Rules say
    max_misses: int = attrs.field(default=1, on_setattr=_FIXED)
    max_hearts: int | None = attrs.field(default=None, on_setattr=_FIXED)
    phi: PhiAccrual | None = attrs.field(default=None, on_setattr=_FIXED)
    mass_silence: MassSilence | None = attrs.field(factory=MassSilence, on_setattr=_FIXED)
    fail_on_disconnect: bool = attrs.field(default=False, on_setattr=_FIXED)
    #: seconds within which a connection whose host stopped answering is closed (TCP
    #: keepalive: :mod:`greenheart.core.transport`), which tells an unreachable heart from
    #: a crashed one; None for never. Applied to sockets :meth:`bind` makes.
    transport_timeout: float | None = attrs.field(
        default=DEFAULT_TRANSPORT_TIMEOUT, on_setattr=_FIXED
    )
    #: close both sockets on :meth:`stop` (set by :meth:`bind`, which made them)
    owns_sockets: bool = False
    #: the CURVE authenticator guarding the sockets, stopped with the monitor
    authenticator: Authenticator | None = None
    log: logging.Logger = attrs.field(factory=lambda: logging.getLogger("greenheart.monitor"))
    clock: Callable[[], float] = time.monotonic
    #: record every input of the ledger here, for ``greenheart tune`` (a path, or a
    #: :class:`~greenheart.green.recording.RecordingFile` to set its rotation)
    record: RecordingFile | None = attrs.field(default=None, converter=_recording_file)
    #: keep the hearts known in this file, and await them there after a restart (a path, or
    #: a :class:`~greenheart.green.state.StateFile`)
    state: StateFile | None = attrs.field(default=None, converter=_state_file)
    #: seconds a restarted monitor awaits the hearts it knew; None for
    #: :func:`~greenheart.core.restart.grace_for` its period
    restart_grace: float | None = attrs.field(default=None, on_setattr=_FIXED)

    #: late beats of a paused or blocked process, which judged nobody
    stalls: int = attrs.field(default=0, init=False)
    #: late beats of a busy hub, judged once what was queued had been read
    busy_beats: int = attrs.field(default=0, init=False)
    #: beats that judged nobody because answers were still queued
    behind_beats: int = attrs.field(default=0, init=False)
    #: the judging settings, as one value (checked there)
    rules: Rules = attrs.field(init=False, on_setattr=_FIXED)
    _ledger: Ledger = attrs.field(init=False)
    _lines: MonitorLog = attrs.field(init=False)
    _handlers: Handlers = attrs.field(init=False)
    _reader: PongReader = attrs.field(init=False)
    _watches: tuple[ConnectionWatch, ConnectionWatch] = attrs.field(init=False)
    _guard: ConnectionGuard = attrs.field(init=False)

    @pingstream.validator
    def _check_pingstream(self, attribute: attrs.Attribute, value: object) -> None:
        require_green_socket(value, zmq.PUB, "pingstream")

    @pongstream.validator
    def _check_pongstream(self, attribute: attrs.Attribute, value: object) -> None:
        # bind() makes a plain socket on the green context: see make_sockets
        require_green_socket(value, zmq.ROUTER, "pongstream", plain_ok=self.owns_sockets)

    def __attrs_post_init__(self) -> None:
        rules = Rules(
            max_misses=self.max_misses,
            max_hearts=self.max_hearts,
            phi=self.phi,
            mass_silence=self.mass_silence,
            fail_on_disconnect=self.fail_on_disconnect,
            transport_timeout=self.transport_timeout,
        )
        object.__setattr__(self, "rules", rules)  # once: it is read-only
        self._ledger = Ledger(tic=self.clock(), rules=self.rules)
        self._lines = MonitorLog(self.log)
        self._handlers = Handlers(self._lines)
        authenticated = prepare(self.pingstream, self.pongstream, rules.keepalive, self.log)
        pongs = ConnectionWatch(
            self.pongstream, "pongs", on_accepted=self._accepted, on_closed=self._closed
        )
        self._watches = (ConnectionWatch(self.pingstream, "pings"), pongs)
        self._reader = PongReader(self, self._lines, pongs, authenticated)
        self._guard = ConnectionGuard((self.pingstream, self.pongstream))
        if self.authenticator is not None:
            self.authenticator.add_stop_handler(self._authenticator_stopped)

    @classmethod
    def bind(
        cls,
        ping_addr: str,
        pong_addr: str,
        *,
        context: zmq.green.Context | None = None,
        max_message_size: int = 1024,
        curve: ServerCurve | None = None,
        **kwargs: Any,
    ) -> HeartMonitor:
        """Make the two sockets, bind them to ``ping_addr`` and ``pong_addr``, and own them.

        A port of 0 (``tcp://127.0.0.1:0``) binds a free port; :attr:`ping_addr` and
        :attr:`pong_addr` tell which. Messages larger than ``max_message_size`` bytes
        make the ROUTER drop the connection that sent them.

        With ``curve``, both sockets are CURVE servers and only hearts whose public keys
        ``curve.allowed`` lists get in. The monitor then runs its own context, since
        ZeroMQ allows one authenticator per context.
        """
        if max_message_size < SMALLEST_MESSAGE:  # before anything is started
            raise UsageError(f"max_message_size must be at least {SMALLEST_MESSAGE}")
        keepalive = keepalive_for(kwargs.get("transport_timeout", DEFAULT_TRANSPORT_TIMEOUT))
        authenticator = None
        try:
            if curve is not None:
                authenticator = Authenticator(
                    context or zmq.green.Context(), curve.allowed, owns_context=context is None
                )
                context = authenticator.context
                authenticator.start()
            ping, pong = make_sockets(
                context or default_context(),
                ping_addr,
                pong_addr,
                max_message_size=max_message_size,
                curve=curve,
                keepalive=keepalive,
            )
            try:
                return cls(ping, pong, owns_sockets=True, authenticator=authenticator, **kwargs)
            except BaseException:
                close_sockets(ping, pong)
                raise
        except BaseException:
            if authenticator is not None:
                authenticator.stop()
            raise

    # -- what it knows -------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """The ledger of this monitor's run (a new one at :meth:`start`): everything it knows of
        its hearts (failures, counters, round trips, suspects), to read. The monitor feeds it."""
        return self._ledger

    @property
    def hearts(self) -> frozenset[bytes]:
        """The hearts known to be beating."""
        return frozenset(self._ledger.hearts)

    @property
    def responses(self) -> frozenset[bytes]:
        """The hearts that answered since the last beat."""
        return frozenset(self._ledger.rounds.responses)

    @property
    def on_probation(self) -> dict[bytes, int]:
        """Heart -> consecutive beats missed, for the hearts that missed the last beat."""
        return dict(self._ledger.on_probation)

    @property
    def lifetime(self) -> float:
        return self._ledger.rounds.lifetime

    @property
    def last_ping(self) -> float:
        return self._ledger.rounds.last_ping

    @property
    def tic(self) -> float:
        return self._ledger.tic

    @property
    def handler_errors(self) -> int:
        """Exceptions raised by handlers, logged and swallowed."""
        return self._handlers.errors

    def status(self) -> MonitorStatus:
        """Every count at once (see :class:`MonitorStatus`)."""
        ledger, (ping, pong) = self._ledger, self._watches
        return MonitorStatus(
            running=self.running,
            heart_count=len(ledger.hearts),
            probation_count=len(ledger.on_probation),
            suspect_count=len(ledger.suspects),
            counters=ledger.counters,
            stalls=self.stalls,
            busy_beats=self.busy_beats,
            behind_beats=self.behind_beats,
            handler_errors=self._handlers.errors,
            # peers whose handshake failed, on either socket: ``protocol`` (plaintext against
            # CURVE, or not ZeroMQ), ``handshake`` (a wrong server key, or none within 5 s),
            # ``auth`` (a key the authenticator refused)
            refused_peers=dict(ping.refused + pong.refused),
            # out of file descriptors, the monitor refuses new connections
            # (greenheart.green.refusal): whether it does now, and how many times it began to
            refusing_connections=self._guard.refusing,
            connection_refusals=self._guard.refusal.refusals,
        )

    @property
    def ping_addr(self) -> str:
        return endpoint(self.pingstream)

    @property
    def pong_addr(self) -> str:
        return endpoint(self.pongstream)

    # -- handlers -------------------------------------------------------------------------------

    def add_new_heart_handler(self, handler: HeartHandler) -> None:
        """Call ``handler(heart)`` for each heart that starts beating."""
        require_callable(handler)
        self._handlers.new_heart.append(handler)

    def remove_new_heart_handler(self, handler: HeartHandler) -> None:
        self._handlers.new_heart.remove(handler)

    def add_heart_failure_handler(self, handler: HeartHandler) -> None:
        """Call ``handler(heart)`` for each heart that has failed."""
        require_callable(handler)
        self._handlers.failure.append((handler, False))

    def remove_heart_failure_handler(self, handler: HeartHandler) -> None:
        self._handlers.remove_failure(handler, False)

    def add_failure_handler(self, handler: FailureHandler) -> None:
        """Call ``handler(failure)`` for each heart that has failed, with its certificate (a
        :class:`~greenheart.core.failures.Failure`: cause and evidence)."""
        require_callable(handler)
        self._handlers.failure.append((handler, True))

    def remove_failure_handler(self, handler: FailureHandler) -> None:
        self._handlers.remove_failure(handler, True)

    def add_beat_handler(self, handler: BeatHandler) -> None:
        """Call ``handler(beat)`` after every beat, with the :class:`~greenheart.Beat`."""
        require_callable(handler)
        self._handlers.beat.append(handler)

    def remove_beat_handler(self, handler: BeatHandler) -> None:
        self._handlers.beat.remove(handler)

    def handle_new_heart(self, heart: bytes) -> None:
        """Tell the new-heart handlers (the ledger has already counted it in)."""
        self._handlers.call(self._handlers.new_heart, "new heart", heart)

    def handle_heart_failure(self, heart: bytes, failure: Failure | None = None) -> None:
        """Tell the failure handlers of ``heart``, with its certificate ``failure`` (the latest
        of the heart's if not given); the ledger has already counted it out."""
        if failure is None:
            failure = next((f for f in reversed(self._ledger.failures) if f.heart == heart), None)
        self._handlers.failed(heart, failure)

    # -- life cycle -----------------------------------------------------------------------------

    # :meth:`start` publishes the first ping and starts beating, returning at once; :meth:`stop`
    # stops beating and closes the sockets if this monitor owns them (see Service).

    def _open(self) -> None:
        self._ledger = Ledger(tic=self.clock(), rules=self.rules)
        if self.state is not None:
            self._resume(self.state)
        if self.record is not None:
            self.record.attach(self._ledger, self.period)
        for watch in self._watches:
            watch.open()
            self._spawn(watch.run)
        self._guard.open()
        self._spawn(self._guard.run)
        self._publish(self._ledger.ping)
        self._spawn(self._reader.run)
        self._spawn(self._beat_on_schedule)
        self._lines.started(self.period, self.ping_addr, self.pong_addr)

    def _resume(self, state: StateFile) -> None:
        now = self.clock()
        remembered = state.open(now)
        if remembered:
            grace = self.restart_grace or grace_for(self.period / 1000)
            self._ledger.resume(remembered, now, grace)
            self._lines.resuming(len(remembered), grace, state.path)

    def _close(self) -> None:
        if self.state is not None:
            self.state.close()
        if self.record is not None:
            self.record.close()
        for watch in self._watches:
            watch.close()
        self._guard.close()
        if self.owns_sockets:
            close_sockets(self.pingstream, self.pongstream)
        if self.authenticator is not None:
            self.authenticator.stop()

    def _authenticator_stopped(
        self, authenticator: Authenticator, error: BaseException | None
    ) -> None:
        if error is not None:
            self._fail("its ZAP authenticator died", error)

    # -- beating --------------------------------------------------------------------------------

    def beat(self, lag: float = 0.0, lap: Lap = BY_HAND) -> Beat:
        """Publish the next ping, read the answers still queued, judge the hearts, call the
        handlers: what the beat greenlet does on its grid, and IPython.parallel's ``beat()``
        by hand.

        The ping leaves first, so that hearts get a whole period to answer however long the
        reading takes; answers to the closing round read after it still count for that round
        (:meth:`Ledger.publish <greenheart.core.ledger.Ledger.publish>`). ``lag`` (how late
        the beat is) and ``lap`` (why, and the thread's CPU share: a stalled beat judges
        nobody) go into the beat."""
        if self.pongstream.closed:  # it cannot judge what it cannot hear
            raise SocketClosed("the pong socket was closed while the monitor was running")
        self._publish(self._ledger.publish(self.clock()))
        caught_up = self._catch_up()
        if not caught_up:
            self.behind_beats += 1
            if self._ledger.hearts:
                self._lines.behind()
        judge = verdict(lap.lateness, caught_up=caught_up) is Verdict.JUDGE
        beat = self._ledger.beat(self.clock(), judge=judge, lag=lag, cpu_share=lap.cpu_share)
        if self.record is not None:
            self.record.flush()
        if self.state is not None:
            self.state.beat(beat)
        self._lines.beat(beat, self.rules)
        for heart in beat.new_hearts:
            self.handle_new_heart(heart)
        for failure in beat.failures[: len(beat.failed_hearts)]:
            self.handle_heart_failure(failure.heart, failure)
        self._handlers.call(self._handlers.beat, "beat", beat)
        return beat

    def _catch_up(self) -> bool:
        """Read the pongs already queued, as :class:`~greenheart.core.judging.CatchUp` decides;
        False if answers are still queued after that."""
        catch_up = CatchUp(len(self._ledger.hearts))
        while wanted := catch_up.wanted():
            catch_up.read(self._reader.drain(wanted), self._ledger.rounds.answer_count)
        return bool(catch_up.caught_up)

    def _publish(self, ping: bytes) -> None:
        if self.pingstream.closed:
            raise SocketClosed("the ping socket was closed while the monitor was running")
        # A PUB socket never blocks: with no subscribers, or a full queue, it drops.
        self.pingstream.send(ping, zmq.NOBLOCK)

    def _beat_on_schedule(self) -> None:
        schedule = BeatSchedule.starting(self._ledger.tic, self.period / 1000.0)
        # what the stall rule looks at: real time, and the CPU time of the hub's own thread
        pace = Pace(time.monotonic(), time.thread_time())
        while self.running:
            while (delay := schedule.wait(self.clock())) > 0:
                gevent.sleep(delay)
            slot = schedule.beat(self.clock())
            lap = pace.lap(late=slot.late, now=time.monotonic(), cpu=time.thread_time())
            if slot.late:
                self.stalls += lap.lateness is Lateness.STALLED
                self.busy_beats += lap.lateness is Lateness.BUSY
                self._lines.late_beat(slot, lap.lateness)
            self.beat(slot.lag, lap)

    # -- pongs and connections ------------------------------------------------------------------

    def handle_pong(self, msg: Sequence[bytes], key: str | None = None, fd: int = -1) -> Pong:
        """Account for one message received on the ROUTER: ``[identity, payload]``, sent
        with the CURVE public ``key`` (Z85) if the socket authenticates, on descriptor ``fd``
        (-1: not known)."""
        parts = split_pong(msg)
        if parts is None:
            pong = self._ledger.malformed(msg[0][:MAX_IDENTITY_BYTES] if msg else b"", self.clock())
        else:
            pong = self._ledger.pong(parts[0], parts[1], self.clock(), key, fd)
        if pong.kind not in ANSWERS:  # a leave fails its heart; anything else is logged
            self._reader.not_an_answer(pong, msg)
        return pong

    def _accepted(self, fd: int) -> None:
        self._ledger.accepted(fd, self.clock())

    def _closed(self, fd: int) -> None:
        """The connection on ``fd`` closed: take what it sent before it closed first (a leave,
        last answers), then fail the hearts the ledger says it fails."""
        if self._reader.settle():
            self._spawn(self._reader.drain, 0)  # what it held, once the events are read
        failures = self._ledger.closed(fd, self.clock())
        if failures:
            self._lines.failed(failures)
        for failure in failures:
            self.handle_heart_failure(failure.heart, failure)
