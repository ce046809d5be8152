"""Simulated ipyparallel engines: they register with a real controller, then only beat.

Each engine asks the hub to register (a Session-signed ``registration_request`` with its
uuid), and once accepted its heart, one of a :class:`~greenheart.green.fleet.HeartFleet`'s
with the uuid as identity, answers the controller's heart monitor. Nothing else: these
engines have no task, control or IOPub sockets, so they never accept work, and a client
that sends them some waits forever. They exist to load the controller as a storm of real
engines would: registrations, heartbeats, deaths.

The hub's notifications (:mod:`~greenheart.integrations.ipyparallel.notifications`) say what
the controller made of them: registered, purged (it never heard the heart in time),
unregistered (killed, left, or lost while alive). Their watches say when one leaves, as
ipengine does, and when all stop (:mod:`~greenheart.integrations.ipyparallel.watches`).

Every decision is the :class:`~greenheart.core.registrations.Registry`'s; this driver moves
messages, time and hearts.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import gevent
import gevent.event
import zmq
import zmq.green

from greenheart.core.behaviour import SCENARIO, Action, Behaviour, as_scenario
from greenheart.core.checks import COUNT
from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.registrations import (
    EngineState,
    RegistrationStatus,
    Registry,
    registration_times,
)
from greenheart.core.timeline import Hearts, Timeline
from greenheart.green.curve import ClientCurve, KeyPair
from greenheart.green.fleet import HeartFleet, descriptors_per_heart
from greenheart.green.lifecycle import Service
from greenheart.green.limits import check_room
from greenheart.green.scenario import play
from greenheart.green.sockets import close_sockets, connect
from greenheart.integrations.ipyparallel.connection import ControllerConnection
from greenheart.integrations.ipyparallel.notifications import follow_notifications
from greenheart.integrations.ipyparallel.registrar import Registrar

# the errors the watches end the engines with are theirs to users, imported from here as ever
from greenheart.integrations.ipyparallel.watches import ControllerSilent as ControllerSilent
from greenheart.integrations.ipyparallel.watches import RegistrationFailed as RegistrationFailed
from greenheart.integrations.ipyparallel.watches import Watches

log = logging.getLogger("greenheart.engines")


@attrs.define(eq=False)
class SimulatedEngines(Service):
    """``size`` engines that register with the controller at ``connection`` and then beat.

    ``behaviour`` and ``scenario`` are the fleet's (delay, loss; die, revive, churn, flap):
    a revived engine registers again under its uuid, churn replaces engines with new ones.
    """

    connection: ControllerConnection
    size: int = attrs.field(default=0, validator=COUNT)
    behaviour: Behaviour = attrs.field(
        factory=Behaviour, validator=attrs.validators.instance_of(Behaviour)
    )
    scenario: tuple[Action, ...] = attrs.field(
        factory=tuple, converter=as_scenario, validator=SCENARIO
    )
    #: one DEALER for every registration request; else one per engine, closed once answered
    shared_registrar: bool = True
    #: registration requests a second at most; None for all at once
    rate: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    #: each engine first waits a seeded delay in [0, spread) seconds
    spread: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    #: each engine's heart gets its own SUB, as real engines load the controller's PUB
    ping_per_heart: bool = False
    #: seconds an engine waits for the hub's answer before it is counted unanswered
    reply_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    #: seconds after which an accepted engine never announced registered counts as purged;
    #: None for the hub's default for the period it announces
    purge_after: float | None = None
    #: as ipengine's trait: an engine that heard no ping in this many checks in a row (one
    #: each period + 500 ms) asks to be unregistered and dies; 0 never gives up
    max_heartbeat_misses: int = attrs.field(default=50, validator=attrs.validators.ge(0))
    prefix: str = attrs.field(factory=lambda: f"sim-{secrets.token_hex(4)}")
    #: called as ``on_unregistered(uuid, seconds_since_killed_or_None)``
    on_unregistered: Callable[[str, float | None], object] | None = None
    clock: Callable[[], float] = time.monotonic

    _registry: Registry = attrs.field(init=False)
    _fleet: HeartFleet | None = attrs.field(default=None, init=False)
    _context: zmq.green.Context | None = attrs.field(default=None, init=False)
    _registrar: Registrar | None = attrs.field(default=None, init=False)
    _notifications: zmq.green.Socket | None = attrs.field(default=None, init=False)
    #: one key pair for every socket of these engines, when the cluster uses CURVE
    _curve: ClientCurve | None = attrs.field(default=None, init=False)
    _session: Any = attrs.field(default=None, init=False)
    _started: float = attrs.field(default=0.0, init=False)
    _serial: int = attrs.field(default=0, init=False)
    _limited: RateLimitedLog = attrs.field(init=False)
    #: set when engines are added, to wake the greenlet that asks for them
    _added: gevent.event.Event = attrs.field(factory=gevent.event.Event, init=False)

    def __attrs_post_init__(self) -> None:
        self._limited = RateLimitedLog(log)
        self._registry = Registry(purge_after=self.purge_after, reply_timeout=self.reply_timeout)

    @property
    def period(self) -> float | None:
        """The heart period the hub announced, in ms; None until it accepted an engine."""
        return self._registry.period_ms

    # -- what it is doing ---------------------------------------------------------------------

    def status(self) -> RegistrationStatus:
        return self._registry.status(self.clock())

    @property
    def uuids(self) -> tuple[str, ...]:
        return self._registry.uuids

    def engines_in(self, state: EngineState) -> list[str]:
        return self._registry.in_state(state)

    def engine_ids(self) -> dict[str, int]:
        """The id the hub gave each engine it accepted (``Client.ids`` speaks these), by uuid."""
        return self._registry.engine_ids()

    def registration_seconds(self) -> list[float]:
        return self._registry.registration_seconds()

    def detection_seconds(self) -> list[float]:
        return self._registry.detection_seconds()

    @property
    def fleet(self) -> HeartFleet | None:
        """The hearts of the engines accepted so far."""
        return self._fleet

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> SimulatedEngines:
        """Start registering; an engine count that cannot fit under the open-file limit is
        refused first (``TooManyHearts``), not found out halfway through a storm."""
        if not self.running:
            check_room(self.size, self.descriptors_per_engine, "simulated engines")
        return super().start()

    @property
    def descriptors_per_engine(self) -> int:
        """Its heart's, and its own registrar's (open until answered) if it has one."""
        return descriptors_per_heart(self.ping_per_heart) + (0 if self.shared_registrar else 2)

    def _open(self) -> None:
        self._session = self.connection.session()
        self._context = zmq.green.Context()
        self._context.set(zmq.MAX_SOCKETS, self._context.get(zmq.SOCKET_LIMIT))
        if self.connection.curve_serverkey is not None:
            self._curve = ClientCurve(self.connection.curve_serverkey, KeyPair.generate())
        self._fleet = HeartFleet(
            self.connection.ping_url,
            self.connection.pong_url,
            behaviour=self.behaviour,
            prefix=self.prefix,
            ping_per_heart=self.ping_per_heart,
            curve=self._curve,
            clock=self.clock,
        ).start()
        self._fleet.add_stop_handler(self._part_stopped)
        if self.connection.notification_url is not None:
            self._notifications = self._socket(zmq.SUB)
            self._notifications.setsockopt(zmq.SUBSCRIBE, b"")
            connect(self._notifications, self.connection.notification_url, "hub notifications")
            self._spawn(
                follow_notifications,
                self._notifications,
                self._session,
                self._registry,
                self.clock,
                self._limited,
                self.on_unregistered,
            )
        else:
            log.warning(
                "%s names no notification port (no client file beside it): registrations"
                " and unregistrations will not be known",
                self.connection.source or "the connection",
            )
        self._registrar = Registrar(
            self.connection.registration_url,
            self._session,
            self._registry,
            socket=self._socket,
            spawn=self._spawn,
            on_accepted=self._beat,
            limited=self._limited,
            clock=self.clock,
            shared=self.shared_registrar,
            identity=f"{self.prefix}-registrar".encode(),
        )
        self._registrar.open()
        self._started = self.clock()
        self._add(self.size)
        self._spawn(self._ask_when_due)
        Watches(
            self._registry,
            self._fleet,
            self._registrar,
            self.connection,
            self._limited,
            self.clock,
            self.max_heartbeat_misses,
        ).spawn(self._spawn)
        if self.scenario:
            # flapping engines are chosen now, from every engine that will register
            planned = [uuid.encode() for uuid in self._registry.uuids]
            timeline = Timeline.start(self.scenario, self.behaviour.seed, planned)
            self._spawn(play, timeline, self.clock, _EngineCast(self))

    def _close(self) -> None:
        if self._fleet is not None:
            self._fleet.stop()
        if self._registrar is not None:
            self._registrar.close()
        close_sockets(self._notifications)
        if self._context is not None:
            self._context.term()

    def _part_stopped(self, part: Service, error: BaseException | None) -> None:
        if error is not None:
            self._fail("its fleet of hearts died", error)

    def _socket(self, kind: int) -> zmq.green.Socket:
        assert self._context is not None
        socket = self._context.socket(kind)
        socket.linger = 0
        if self._curve is not None:
            self._curve.apply(socket)
        return socket

    # -- engines --------------------------------------------------------------------------------

    def kill(self, uuids: Iterable[str]) -> None:
        """Close these engines' connections, as their processes' deaths would."""
        uuids = list(uuids)
        now = self.clock()
        for uuid in uuids:
            self._registry.killed(uuid, now)
        assert self._fleet is not None
        beating = set(self._fleet.alive)
        self._fleet.kill([uuid.encode() for uuid in uuids if uuid.encode() in beating])

    def add(self, count: int) -> list[str]:
        """``count`` more engines, asking to register now; their uuids."""
        return self._add(count, due=self.clock() - self._started)

    def register_again(self, uuids: Iterable[str]) -> None:
        """Have these (dead) engines ask to register again, under the same uuids."""
        for uuid in uuids:
            self._ask(uuid)

    def _add(self, count: int, due: float | None = None) -> list[str]:
        times = (
            registration_times(
                count, rate=self.rate, spread=self.spread, seed=self.behaviour.seed + self._serial
            )
            if due is None
            else [due] * count
        )
        uuids = []
        for offset in times:
            uuid = f"{self.prefix}-{self._serial}"
            self._serial += 1
            self._registry.add(uuid, offset)
            uuids.append(uuid)
        self._added.set()
        return uuids

    def _ask_when_due(self) -> None:
        """Ask for each engine's registration when it is due; sleep until the next is, or
        until more engines are added."""
        while True:
            self._added.clear()
            for uuid in self._registry.due(self.clock() - self._started):
                self._ask(uuid)
            upcoming = self._registry.next_due()
            if upcoming is None:
                self._added.wait()
            else:
                self._added.wait(max(0.0, upcoming - (self.clock() - self._started)))

    def _ask(self, uuid: str) -> None:
        assert self._registrar is not None
        self._registrar.ask(uuid)

    def _beat(self, uuid: str) -> None:
        assert self._fleet is not None
        heart = uuid.encode()
        if heart in self._fleet.ids:
            self._fleet.revive([heart])
        else:
            self._fleet.add_hearts([heart])


@attrs.define
class _EngineCast:
    """Simulated engines, as their scenario plays on them: a revived engine registers again
    under its uuid, and churn replaces engines with new ones that register."""

    engines: SimulatedEngines
    noun: str = "engines"

    @property
    def _fleet(self) -> HeartFleet:
        assert self.engines.fleet is not None
        return self.engines.fleet

    @property
    def alive(self) -> tuple[bytes, ...]:
        return self._fleet.alive

    @property
    def dead(self) -> tuple[bytes, ...]:
        return self._fleet.dead

    def kill(self, hearts: Hearts) -> None:
        self.engines.kill(heart.decode() for heart in hearts)

    def revive(self, hearts: Hearts) -> None:
        self.engines.register_again(heart.decode() for heart in hearts)

    def replace(self, hearts: Hearts) -> None:
        self.kill(hearts)
        self.engines.add(len(hearts))

    def silence(self, hearts: Hearts, silent: bool) -> None:
        beating = set(self._fleet.ids)
        self._fleet.silence([heart for heart in hearts if heart in beating], silent)
