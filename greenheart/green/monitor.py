"""HeartMonitor: the ledger, driven by gevent and ZeroMQ.

Two greenlets share the work. The beat greenlet wakes on a fixed grid of
``period`` milliseconds, publishes the next ping at once, drains the pongs already
queued, closes the round in the ledger, and only then calls handlers. The pong greenlet
waits on the ROUTER socket and feeds every message to the ledger, draining
whatever is queued in bounded batches before it yields, so a burst of pongs costs
few greenlet switches and cannot starve the beat.
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

from greenheart.core.connections import backlog_is_short
from greenheart.core.errors import SocketClosed, UsageError
from greenheart.core.failures import Failure, FalseFailure
from greenheart.core.judging import (
    PONG_BATCH,
    CatchUp,
    Verdict,
    gather_seconds,
    verdict,
    was_paused,
)
from greenheart.core.ledger import (
    ANSWERS,
    Beat,
    Counters,
    HeartState,
    Ledger,
    Pong,
    RoundTrips,
    Rules,
)
from greenheart.core.phi import PhiAccrual
from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.recording import RecordingLedger
from greenheart.core.refusal import HANDSHAKE_SECONDS
from greenheart.core.schedule import BeatSchedule, Slot
from greenheart.core.silence import MassSilence, Suspect
from greenheart.core.wire import MAX_IDENTITY_BYTES, MAX_PAYLOAD_BYTES, display_id, split_pong
from greenheart.green.connections import ConnectionWatch
from greenheart.green.curve import ServerCurve
from greenheart.green.hub import yield_to_others
from greenheart.green.lifecycle import Service
from greenheart.green.recording import RecordingFile
from greenheart.green.refusal import ConnectionGuard
from greenheart.green.sockets import (
    bind,
    close_sockets,
    default_context,
    endpoint,
    green_watcher_paused,
    raise_listen_backlog,
    require_green_socket,
    wait_for_messages,
)
from greenheart.green.zap import Authenticator

HeartHandler = Callable[[bytes], Any]
FailureHandler = Callable[[Failure], Any]
BeatHandler = Callable[[Beat], Any]

#: how many new connections each socket's listener queues (the kernel caps it at
#: net.core.somaxconn): every heart connects to both, and thousands connect at once when a
#: fleet starts or the monitor restarts; with ZeroMQ's default of 100 most would wait for
#: SYN retries
LISTEN_BACKLOG = 4096

#: pongs queued per heart before ZeroMQ stops reading from its connection. An honest heart
#: has one or two in flight; this bounds what a flooding peer can make the monitor hold
#: (with the message size limit, at most 64 KiB per connection).
PONG_RCVHWM = 64

#: pings queued per heart before the PUB drops them for that heart: a heart that far behind
#: would only answer pings that have expired
PING_SNDHWM = 16

#: ms a connection may take to finish its ZMTP handshake before libzmq hangs up on it (its own
#: default is 30 s). A heart on loopback or a LAN takes well under one; a connection that never
#: speaks ZeroMQ (a port scanner, a storm) holds a descriptor for this long, so at 20,000
#: descriptors a storm must come at more than 4,000 connections a second to take them all.
HANDSHAKE_IVL_MS = int(HANDSHAKE_SECONDS * 1000)

#: with CURVE (and so no ROUTER_HANDOVER), ZMTP heartbeats close half-open connections so a
#: heart restarted under its identity gets it back. A dead process's connection is closed by
#: the kernel at once; these are for crashed machines and cut cables, so they can be rare:
#: every period, they doubled the encrypted traffic and cut CURVE's capacity by half.
CURVE_HEARTBEAT_IVL_MS = 10_000

#: how many hearts a log line names before it only counts them
NAMED_IN_LOG = 10

#: seconds the pong greenlet sleeps at most before it looks at the queue again, in case
#: an edge on ZeroMQ's descriptor was missed
WAKE_INTERVAL = 1.0

# The plain pyzmq socket methods, for the drain loop (see HeartMonitor._drain_queued).
_base_recv = zmq.Socket.recv


def _sender_key(frame: zmq.Frame) -> str | None:
    """The public key the authenticator admitted the frame's connection with."""
    try:
        return str(frame.get("User-Id"))
    except zmq.ZMQError:  # a CURVE socket with no authenticator: nobody vouched for a key
        return None


def _recording_file(value: str | os.PathLike[str] | RecordingFile | None) -> RecordingFile | None:
    if value is None or isinstance(value, RecordingFile):
        return value
    return RecordingFile(value)


def _require_callable(handler: object) -> None:
    if not callable(handler):
        raise TypeError(f"a handler must be callable, got {handler!r}")


def _named(hearts: Sequence[bytes]) -> str:
    names = ", ".join(display_id(heart) for heart in hearts[:NAMED_IN_LOG])
    if len(hearts) > NAMED_IN_LOG:
        names += f" and {len(hearts) - NAMED_IN_LOG} more"
    return names


def _certified(failures: Sequence[Failure]) -> str:
    """The failures for a log line: the first few with their certificates, then a count by
    cause."""
    named = "; ".join(
        f"{display_id(failure.heart)} ({failure.describe()})" for failure in failures[:NAMED_IN_LOG]
    )
    if len(failures) > NAMED_IN_LOG:
        causes: dict[str, int] = {}
        for failure in failures:
            causes[failure.cause.value] = causes.get(failure.cause.value, 0) + 1
        by_cause = ", ".join(f"{count} {cause}" for cause, count in sorted(causes.items()))
        named += f"; and {len(failures) - NAMED_IN_LOG} more (in all: {by_cause})"
    return named


@attrs.frozen
class MonitorStatus:
    """The monitor at one moment, for what reports on it (metrics, ``/hearts``): the ledger's
    counters and the driver's own, read together."""

    running: bool
    hearts: int
    on_probation: int
    #: hearts held as suspects of a mass silence
    suspects: int
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


@attrs.define(eq=False)
class HeartMonitor(Service):
    """Pings hearts on a PUB socket every ``period`` ms and tracks who answers on a ROUTER.

    ``pingstream`` and ``pongstream`` are ``zmq.green`` sockets, bound or connected by
    the caller; :meth:`bind` makes and binds both. A heart that misses a beat goes on
    probation; one whose consecutive misses exceed ``max_misses`` has failed.
    """

    pingstream: zmq.green.Socket = attrs.field()
    pongstream: zmq.green.Socket = attrs.field()
    #: milliseconds between pings
    period: float = attrs.field(default=3000.0, converter=float, validator=attrs.validators.gt(0))
    # The judging settings (max_misses, max_hearts, phi, fail_on_disconnect, mass_silence)
    # are keyword arguments, as IPython.parallel's are; they mean what the fields of
    # greenheart.core.ledger.Rules say, are checked there, and reach the ledger as one Rules.
    max_misses: int = 1
    #: new hearts beyond this many known at once are refused (and counted)
    max_hearts: int | None = None
    phi: PhiAccrual | None = None
    #: close both sockets on :meth:`stop` (set by :meth:`bind`, which made them)
    owns_sockets: bool = False
    #: the CURVE authenticator guarding the sockets, stopped with the monitor
    authenticator: Authenticator | None = None
    #: fail a known heart at once when its connection closes (its process died), instead of
    #: after its missed beats; hung hearts, whose connections stay up, are still failed by those
    fail_on_disconnect: bool = False
    #: when a beat would fail most hearts whose connections are up, hold them as suspects
    #: first (see :mod:`greenheart.core.silence`); None fails them as it would fail a few
    mass_silence: MassSilence | None = attrs.field(factory=MassSilence)
    log: logging.Logger = attrs.field(factory=lambda: logging.getLogger("greenheart.monitor"))
    clock: Callable[[], float] = time.monotonic
    #: record every input of the ledger here, for ``greenheart tune`` (a path, or a
    #: :class:`~greenheart.green.recording.RecordingFile` to set its rotation)
    record: RecordingFile | None = attrs.field(default=None, converter=_recording_file)

    #: the judging settings, as one value
    rules: Rules = attrs.field(init=False)
    _ledger: Ledger = attrs.field(init=False)
    _new_heart_handlers: list[HeartHandler] = attrs.field(factory=list, init=False)
    #: each with whether it takes the certificate instead of the heart
    _failure_handlers: list[tuple[Callable[[Any], Any], bool]] = attrs.field(
        factory=list, init=False
    )
    _beat_handlers: list[BeatHandler] = attrs.field(factory=list, init=False)
    _limited: RateLimitedLog = attrs.field(init=False)
    #: exceptions raised by handlers, logged and swallowed
    handler_errors: int = attrs.field(default=0, init=False)
    #: late beats of a paused or blocked process, which judged nobody
    stalls: int = attrs.field(default=0, init=False)
    #: late beats of a busy hub, judged once what was queued had been read
    busy_beats: int = attrs.field(default=0, init=False)
    #: beats that judged nobody because answers were still queued
    behind_beats: int = attrs.field(default=0, init=False)
    #: the pong socket is a CURVE server: every message says which key sent it
    _authenticated: bool = attrs.field(default=False, init=False)
    _watches: tuple[ConnectionWatch, ConnectionWatch] = attrs.field(init=False)
    _guard: ConnectionGuard = attrs.field(init=False)
    #: the share of the time since the beat before that the monitor's thread computed, as the
    #: beat greenlet measured it for the beat it is taking
    _cpu_share: float | None = attrs.field(default=None, init=False)

    @pingstream.validator
    def _check_pingstream(self, attribute: attrs.Attribute, value: object) -> None:
        require_green_socket(value, zmq.PUB, "pingstream")

    @pongstream.validator
    def _check_pongstream(self, attribute: attrs.Attribute, value: object) -> None:
        # bind() makes a plain socket on the green context: see there
        require_green_socket(value, zmq.ROUTER, "pongstream", plain_ok=self.owns_sockets)

    def __attrs_post_init__(self) -> None:
        self.rules = Rules(
            max_misses=self.max_misses,
            max_hearts=self.max_hearts,
            phi=self.phi,
            mass_silence=self.mass_silence,
            fail_on_disconnect=self.fail_on_disconnect,
        )
        self._ledger = self._new_ledger()
        self._limited = RateLimitedLog(self.log)
        self._authenticated = bool(self.pongstream.getsockopt(zmq.CURVE_SERVER))
        # Without handover a heart that reconnects under its old identity, before the
        # ROUTER noticed the old connection died, would be silently ignored. With CURVE,
        # handover would let any allowed peer take a live heart's identity away from it;
        # ZMTP heartbeats (set by bind) notice dead connections instead.
        self.pongstream.setsockopt(zmq.ROUTER_HANDOVER, 0 if self._authenticated else 1)
        for role, socket in (("ping", self.pingstream), ("pong", self.pongstream)):
            self._lengthen_listen_queue(role, socket)
        self._watches = (
            ConnectionWatch(self.pingstream, "pings"),
            ConnectionWatch(
                self.pongstream,
                "pongs",
                on_accepted=self._connection_accepted,
                on_closed=self._connection_closed,
            ),
        )
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
        if max_message_size < MAX_PAYLOAD_BYTES + MAX_IDENTITY_BYTES:
            raise UsageError(
                f"max_message_size must be at least {MAX_PAYLOAD_BYTES + MAX_IDENTITY_BYTES}"
            )
        authenticator = None
        if curve is not None:
            authenticator = Authenticator(
                context or zmq.green.Context(), curve.allowed, owns_context=context is None
            )
            context = authenticator.context
            authenticator.start()
        context = context or default_context()
        ping = pong = None
        try:
            ping = context.socket(zmq.PUB)
            ping.linger = 0
            # The monitor only ever reads its ROUTER without blocking, and waits on its
            # descriptor through gevent itself; the green wrapper's own watcher on that
            # descriptor would run a callback at every edge for nothing, thousands a second.
            pong = zmq.Socket(context, zmq.ROUTER)
            pong.linger = 0
            pong.setsockopt(zmq.MAXMSGSIZE, max_message_size)
            pong.setsockopt(zmq.RCVHWM, PONG_RCVHWM)
            ping.setsockopt(zmq.SNDHWM, PING_SNDHWM)
            # a PUB only receives subscriptions (and handshakes: CURVE's are a few hundred bytes)
            ping.setsockopt(zmq.MAXMSGSIZE, max_message_size)
            for socket in (ping, pong):
                socket.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
                socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
            if curve is not None:
                for socket in (ping, pong):
                    curve.apply(socket)
                pong.setsockopt(zmq.HEARTBEAT_IVL, CURVE_HEARTBEAT_IVL_MS)
                pong.setsockopt(zmq.HEARTBEAT_TIMEOUT, 2 * CURVE_HEARTBEAT_IVL_MS)
            bind(ping, ping_addr, "pings")
            bind(pong, pong_addr, "pongs")
            return cls(ping, pong, owns_sockets=True, authenticator=authenticator, **kwargs)
        except BaseException:
            close_sockets(ping, pong)
            if authenticator is not None:
                authenticator.stop()
            raise

    def _new_ledger(self) -> Ledger:
        if self.record is not None and self.running:
            return self.record.ledger(self.clock(), self.rules, self.period, self.clock)
        return Ledger(tic=self.clock(), rules=self.rules)

    # -- the state, as snapshots ---------------------------------------------------------

    @property
    def hearts(self) -> frozenset[bytes]:
        """The hearts known to be beating."""
        return frozenset(self._ledger.hearts)

    @property
    def responses(self) -> frozenset[bytes]:
        """The hearts that answered since the last beat."""
        return frozenset(self._ledger.responses)

    @property
    def on_probation(self) -> dict[bytes, int]:
        """Heart -> consecutive beats missed, for the hearts that missed the last beat."""
        return dict(self._ledger.on_probation)

    @property
    def lifetime(self) -> float:
        return self._ledger.lifetime

    @property
    def last_ping(self) -> float:
        return self._ledger.last_ping

    @property
    def tic(self) -> float:
        return self._ledger.tic

    @property
    def counters(self) -> Counters:
        return self._ledger.counters

    @property
    def suspects(self) -> dict[bytes, Suspect]:
        """The hearts held as suspects of a mass silence: when each was held, and for how
        many judged beats so far."""
        return self._ledger.suspects

    @property
    def failures(self) -> tuple[Failure, ...]:
        """The certificates of the latest failures (up to 1,000), oldest first."""
        return tuple(self._ledger.failures)

    @property
    def false_failures(self) -> tuple[FalseFailure, ...]:
        """The latest false failures (up to 1,000): hearts failed for their silence that
        answered again on the same connection, oldest first."""
        return tuple(self._ledger.false_failures)

    def round_trips(self, heart: bytes) -> RoundTrips | None:
        """Last, mean and longest round trip of a known heart, in seconds; None if unknown."""
        return self._ledger.round_trips(heart)

    def heart_states(self) -> list[HeartState]:
        """Every known heart with its misses in a row and round trips, as of the last beat."""
        return self._ledger.states()

    def status(self) -> MonitorStatus:
        """Every count at once (see :class:`MonitorStatus`)."""
        return MonitorStatus(
            running=self.running,
            hearts=len(self._ledger.hearts),
            on_probation=len(self._ledger.on_probation),
            suspects=len(self._ledger.suspects),
            counters=self._ledger.counters,
            stalls=self.stalls,
            busy_beats=self.busy_beats,
            behind_beats=self.behind_beats,
            handler_errors=self.handler_errors,
            refused_peers=self.refused_peers,
            refusing_connections=self.refusing_connections,
            connection_refusals=self.connection_refusals,
        )

    @property
    def refused_peers(self) -> dict[str, int]:
        """Peers whose handshake failed, on either socket, by reason: ``protocol`` (plaintext
        against CURVE, or not ZeroMQ), ``handshake`` (a wrong server key, or no handshake
        within 5 s), ``auth`` (a key the authenticator refused)."""
        ping, pong = self._watches
        return dict(ping.refused + pong.refused)

    @property
    def refusing_connections(self) -> bool:
        """Whether the monitor refuses new connections, its process being out of file
        descriptors (see :mod:`greenheart.green.refusal`)."""
        return self._guard.refusing

    @property
    def connection_refusals(self) -> int:
        """Times the monitor began refusing new connections."""
        return self._guard.refusal.refusals

    def suspicion(self, heart: bytes) -> float | None:
        """The phi-accrual suspicion level of a known heart now; None without ``phi``."""
        return self._ledger.suspicion(heart, self.clock())

    @property
    def ping_addr(self) -> str:
        return endpoint(self.pingstream)

    @property
    def pong_addr(self) -> str:
        return endpoint(self.pongstream)

    # -- handlers -------------------------------------------------------------------------

    def add_new_heart_handler(self, handler: HeartHandler) -> None:
        """Call ``handler(heart)`` for each heart that starts beating."""
        _require_callable(handler)
        self._new_heart_handlers.append(handler)

    def remove_new_heart_handler(self, handler: HeartHandler) -> None:
        self._new_heart_handlers.remove(handler)

    def add_heart_failure_handler(
        self, handler: HeartHandler | FailureHandler, *, certificate: bool = False
    ) -> None:
        """Call ``handler(heart)`` for each heart that has failed; with ``certificate=True``,
        ``handler(failure)`` with its :class:`~greenheart.core.failures.Failure` instead."""
        _require_callable(handler)
        self._failure_handlers.append((handler, certificate))

    def remove_heart_failure_handler(self, handler: HeartHandler | FailureHandler) -> None:
        for entry in self._failure_handlers:
            if entry[0] == handler:
                self._failure_handlers.remove(entry)
                return
        raise ValueError(f"{handler!r} is not a heart failure handler of this monitor")

    def add_beat_handler(self, handler: BeatHandler) -> None:
        """Call ``handler(beat)`` after every beat, with the :class:`Beat`."""
        _require_callable(handler)
        self._beat_handlers.append(handler)

    def remove_beat_handler(self, handler: BeatHandler) -> None:
        self._beat_handlers.remove(handler)

    def handle_new_heart(self, heart: bytes) -> None:
        self._call_handlers(self._new_heart_handlers, "new heart", heart)

    def handle_heart_failure(self, heart: bytes, failure: Failure | None = None) -> None:
        """Call the failure handlers for ``heart``, with its certificate ``failure`` (the
        latest of the heart's if not given)."""
        if failure is None:
            failure = next((f for f in reversed(self._ledger.failures) if f.heart == heart), None)
        for handler, certificate in tuple(self._failure_handlers):  # a handler may remove itself
            if not certificate:
                self._call_handlers([handler], "heart failure", heart)
            elif failure is not None:
                self._call_handlers([handler], "heart failure", failure)

    def _call_handlers(self, handlers: list[Callable[[Any], Any]], event: str, arg: Any) -> None:
        for handler in tuple(handlers):  # a handler may remove itself
            try:
                handler(arg)
            except Exception:
                self.handler_errors += 1
                self._limited(
                    logging.ERROR, "handler", "%s handler %r raised", event, handler, exc_info=True
                )

    # -- life cycle -------------------------------------------------------------------------

    # :meth:`start` publishes the first ping and starts beating, returning at once; :meth:`stop`
    # stops beating and closes the sockets if this monitor owns them (see Service).

    def _open(self) -> None:
        self._ledger = self._new_ledger()
        for watch in self._watches:
            watch.open()
            self._spawn(watch.run)
        self._guard.open()
        self._spawn(self._guard.run)
        self._publish(self._ledger.ping)
        self._spawn(self._drain_pongs)
        self._spawn(self._beat_on_schedule)
        self.log.info(
            "beating every %g ms on %s, listening on %s",
            self.period,
            self.ping_addr,
            self.pong_addr,
        )

    def _close(self) -> None:
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

    # -- beating ------------------------------------------------------------------------------

    def beat(self, lag: float = 0.0, stalled: bool = False) -> Beat:
        """Publish the next ping, then close the round: read the answers still queued, judge
        the hearts, call the handlers.

        The ping leaves first, so that hearts get a whole period to answer however long the
        reading takes; answers to the closing round read after it still count for that round
        (:meth:`Ledger.publish <greenheart.core.ledger.Ledger.publish>`). ``lag`` is how late
        the beat is; a ``stalled`` beat (the process was paused) judges nobody. The share of
        the time since the beat before that the monitor's thread computed, as the beat
        greenlet measured it, goes into the beat and its certificates.
        """
        if self.pongstream.closed:  # it cannot judge what it cannot hear
            raise SocketClosed("the pong socket was closed while the monitor was running")
        self._publish(self._ledger.publish(self.clock()))
        caught_up = self._catch_up()
        if not caught_up:
            self.behind_beats += 1
            if self._ledger.hearts:
                self._limited(
                    logging.WARNING,
                    "unread",
                    "monitor is behind: answers were still queued at a beat; hearts that"
                    " did not answer are not charged a miss for it",
                )
        judge = verdict(late=stalled, paused=stalled, caught_up=caught_up) is Verdict.JUDGE
        beat = self._ledger.beat(self.clock(), judge=judge, lag=lag, cpu_share=self._cpu_share)
        if isinstance(self._ledger, RecordingLedger):
            self.record.flush(self._ledger)  # type: ignore[union-attr]
        self._log_beat(beat)
        for heart in beat.new_hearts:
            self.handle_new_heart(heart)
        for failure in beat.failures[: len(beat.failed_hearts)]:
            self.handle_heart_failure(failure.heart, failure)
        self._call_handlers(self._beat_handlers, "beat", beat)
        return beat

    def _catch_up(self) -> bool:
        """Read the pongs already queued, as :class:`~greenheart.core.judging.CatchUp` decides;
        False if answers are still queued after that."""
        catch_up = CatchUp(len(self._ledger.hearts))
        while wanted := catch_up.wanted():
            catch_up.read(self._drain_queued(wanted), self._ledger.answers)
        return bool(catch_up.caught_up)

    def _publish(self, ping: bytes) -> None:
        if self.pingstream.closed:
            raise SocketClosed("the ping socket was closed while the monitor was running")
        # A PUB socket never blocks: with no subscribers, or a full queue, it drops.
        self.pingstream.send(ping, zmq.NOBLOCK)

    def _beat_on_schedule(self) -> None:
        schedule = BeatSchedule.starting(self._ledger.tic, self.period / 1000.0)
        # what the pause rule looks at: real time, and the CPU time of the hub's own thread
        since, cpu = time.monotonic(), time.thread_time()
        while self.running:
            while (delay := schedule.wait(self.clock())) > 0:
                gevent.sleep(delay)
            slot = schedule.beat(self.clock())
            # since the beat before, handlers included, as a late beat's cause may be in them
            now, now_cpu = time.monotonic(), time.thread_time()
            elapsed, used = now - since, now_cpu - cpu
            paused = slot.late and was_paused(elapsed=elapsed, cpu=used)
            since, cpu = now, now_cpu
            if slot.late:
                self._note_late(slot, paused)
            self._cpu_share = used / elapsed if elapsed > 0 else None
            self.beat(slot.lag, stalled=paused)

    def _note_late(self, slot: Slot, paused: bool) -> None:
        if paused:
            self.stalls += 1
            self._limited(
                logging.WARNING,
                "stall",
                "monitor stalled: its beat came %.0f ms late (%d beat(s) lost) from a paused"
                " or blocked process; hearts are not charged a miss for it",
                slot.lag * 1000,
                slot.skipped,
            )
        else:
            self.busy_beats += 1
            self._limited(
                logging.WARNING,
                "busy",
                "monitor busy: its beat came %.0f ms late (%d beat(s) lost) from a busy hub;"
                " the hearts are judged by the answers already queued",
                slot.lag * 1000,
                slot.skipped,
            )

    def _log_beat(self, beat: Beat) -> None:
        if beat.new_hearts:
            self.log.info("%d new heart(s): %s", len(beat.new_hearts), _named(beat.new_hearts))
        if beat.failed_hearts:
            failures = beat.failures[: len(beat.failed_hearts)]
            self.log.warning("%d heart(s) failed: %s", len(failures), _certified(failures))
        if beat.mass_silence_began:
            self.log.warning(
                "mass silence: beat %d would have failed %d of %d hearts at once, their"
                " connections up; holding them as suspects for up to %d beats, since the monitor"
                " or its network may be at fault",
                beat.number,
                len(beat.held),
                beat.hearts,
                self.rules.mass_silence.hold if self.rules.mass_silence else 0,
            )
        if beat.mass_silence_ended:
            self.log.warning("mass silence over at beat %d: no heart is held", beat.number)
        for mistake in beat.false_failures[:NAMED_IN_LOG]:
            self._limited(
                logging.WARNING,
                "false failure",
                "false failure: %s answered again on the connection it was failed on, %.0f ms"
                " after it was failed (%s)",
                display_id(mistake.heart),
                mistake.gone * 1000,
                mistake.failure.describe(),
            )
        if beat.refused_hearts:
            self._limited(
                logging.WARNING,
                "refused",
                "refused %d new heart(s): max_hearts=%d are known",
                beat.refused_hearts,
                self.max_hearts,
            )
        if beat.late_hearts:
            slowest = max(beat.late_hearts, key=beat.late_hearts.__getitem__)
            self._limited(
                logging.WARNING,
                "late",
                "%d late pong(s) in beat %d; slowest %s, %.1f ms after its beat",
                beat.late_pongs,
                beat.number,
                display_id(slowest),
                beat.late_hearts[slowest] * 1000,
            )

    def _lengthen_listen_queue(self, role: str, socket: zmq.Socket) -> None:
        """Give a caller's socket the listen backlog ``bind()`` gives its own."""
        backlog = int(socket.getsockopt(zmq.BACKLOG))
        if not backlog_is_short(backlog, endpoint(socket), LISTEN_BACKLOG):
            return
        socket.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)  # for the endpoints it binds later
        if raise_listen_backlog(socket, LISTEN_BACKLOG):
            self.log.info(
                "the %s socket's listener now queues %d connections, not %d",
                role,
                LISTEN_BACKLOG,
                backlog,
            )
            return
        self.log.warning(
            "the %s socket listens with a backlog of %d: when thousands of hearts connect at"
            " once, most wait for SYN retries; set zmq.BACKLOG to %d before binding it, or"
            " make the sockets with HeartMonitor.bind()",
            role,
            backlog,
            LISTEN_BACKLOG,
        )

    # -- pongs ----------------------------------------------------------------------------------

    def handle_pong(self, msg: Sequence[bytes], key: str | None = None) -> Pong:
        """Account for one message received on the ROUTER: ``[identity, payload]``, sent
        with the CURVE public ``key`` (Z85) if the socket authenticates."""
        parts = split_pong(msg)
        if parts is None:
            pong = self._ledger.malformed(msg[0][:MAX_IDENTITY_BYTES] if msg else b"")
        else:
            pong = self._ledger.pong(parts[0], parts[1], self.clock(), key)
        if pong.kind not in ANSWERS:
            self._log_bad_pong(pong, msg)
        return pong

    def _log_bad_pong(self, pong: Pong, msg: Sequence[bytes] | None) -> None:
        """Log a pong that was not an answer, with its frames if they are at hand."""
        who = display_id(pong.heart) if pong.heart else "(no identity)"
        if msg is None:
            self._limited(logging.WARNING, pong.kind.value, "%s pong from %s", pong.kind.value, who)
            return
        self._limited(
            logging.WARNING,
            pong.kind.value,
            "%s pong from %s: %d frame(s), first bytes %r",
            pong.kind.value,
            who,
            len(msg),
            msg[-1][:32] if msg else b"",
        )

    def _drain_pongs(self) -> None:
        socket, gather = self.pongstream, gather_seconds(self.period / 1000.0)
        # the monitor reads it without blocking and waits on it here: a green socket's own
        # watcher would only cost a callback at every edge
        with green_watcher_paused(socket):
            while self.running:
                if socket.closed:
                    raise SocketClosed("the pong socket was closed while the monitor was running")
                read = self._drain_queued(PONG_BATCH)
                if read == PONG_BATCH:
                    yield_to_others()  # more is queued; let the beat and the program run
                    continue
                if read:  # answers are coming: let them gather, and read them in one drain
                    gevent.sleep(gather)
                    if socket.closed:  # while they gathered; the loop's head says so
                        continue
                wait_for_messages(socket, WAKE_INTERVAL)

    def _drain_queued(self, limit: int) -> int:
        """Handle up to ``limit`` pongs that are already queued, without waiting.

        This is the monitor's hottest loop, so it reads the socket through the plain pyzmq
        methods: the green wrapper would poll the socket's state after every frame, and
        nothing here can block. Without CURVE keys or phi's arrival times, a drain's answers
        go to the ledger in bulk (:meth:`Ledger.pongs
        <greenheart.core.ledger.Ledger.pongs>`), read at one time.
        """
        if self._authenticated or self.rules.phi is not None:
            return self._drain_one_by_one(limit)
        socket, noblock = self.pongstream, zmq.NOBLOCK
        identities: list[bytes] = []
        payloads: list[bytes] = []
        fds: list[int] = []
        read = 0
        while read < limit:
            if socket.closed:  # a handler may close it
                break
            try:
                identity = _base_recv(socket, noblock)
            except zmq.Again:
                break
            read += 1
            frame = _base_recv(socket, noblock, copy=False)
            try:
                fd = frame.get(zmq.SRCFD)
            except zmq.ZMQError:  # libzmq knows no descriptor for some of a flood's messages
                fd = -1
            if frame.more:  # not a pong: the per-message path says what it is
                frames = [identity, frame.bytes]
                while frame.more:
                    frame = _base_recv(socket, noblock, copy=False)
                    frames.append(frame.bytes)
                self._account(frames, fd, None)
                continue
            identities.append(identity)
            payloads.append(frame.bytes)
            fds.append(fd)
        if not identities:
            return read
        # the common case: every heart answers on the connection it is tied to, all in C
        if list(map(self._ledger.connections.fd_of.get, identities)) == fds:
            try:
                odd = self._ledger.pongs(identities, payloads, self.clock())
            except Exception:
                self._limited(logging.ERROR, "pong", "handling a pong failed", exc_info=True)
                return read
            for pong in odd:
                self._log_bad_pong(pong, None)
        else:
            for identity, payload, fd in zip(identities, payloads, fds, strict=True):
                self._account([identity, payload], fd, None)
        return read

    def _drain_one_by_one(self, limit: int) -> int:
        """:meth:`_drain_queued` message by message: for CURVE (every message says which key
        sent it) and phi (every answer has its own arrival time)."""
        socket, noblock = self.pongstream, zmq.NOBLOCK
        authenticated = self._authenticated
        key = None
        for handled in range(limit):
            if socket.closed:  # a handler may close it
                return handled
            try:
                identity = _base_recv(socket, noblock)
            except zmq.Again:
                return handled
            # A ROUTER delivers whole messages: the identity, then at least one frame. That
            # frame, uncopied, says whether more follow (cheaper than asking RCVMORE), which key
            # sent it, and which connection it came in on.
            frame = _base_recv(socket, noblock, copy=False)
            if authenticated:
                key = _sender_key(frame)
            try:
                fd = frame.get(zmq.SRCFD)
            except zmq.ZMQError:  # libzmq knows no descriptor for some of a flood's messages
                fd = -1
            frames = [identity, frame.bytes]
            more = frame.more
            while more:
                frame = _base_recv(socket, noblock, copy=False)
                frames.append(frame.bytes)
                more = frame.more
            self._account(frames, fd, key)
        return limit

    def _account(self, frames: list[bytes], fd: int, key: str | None) -> None:
        """One message, with the descriptor it came in on and the key it was sent with."""
        book, identity = self._ledger.connections, frames[0]
        untied = fd >= 0 and not book.tied(identity, fd)
        if untied:
            # the one case where a connection event may matter: let the book know every
            # connection accepted and closed before this message
            self._watches[1].read_queued()
            if book.gone(fd):  # sent before its connection closed: its heart is not here
                self._ledger.stale(identity)
                return
        try:
            pong = self.handle_pong(frames, key)
            if untied and pong.kind in ANSWERS:
                book.answered(pong.heart, fd)
        except Exception:
            self._limited(logging.ERROR, "pong", "handling a pong failed", exc_info=True)

    def _connection_accepted(self, fd: int) -> None:
        self._ledger.connections.accepted(fd)

    def _connection_closed(self, fd: int) -> None:
        """The connection on ``fd`` closed: fail the hearts the ledger says it fails."""
        failures = self._ledger.closed(fd, self.clock())
        if failures:
            self.log.warning("%d heart(s) failed: %s", len(failures), _certified(failures))
        for failure in failures:
            self.handle_heart_failure(failure.heart, failure)
