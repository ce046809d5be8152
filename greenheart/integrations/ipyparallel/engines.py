"""Simulated ipyparallel engines: they register with a real controller, then only beat.

Each engine asks the hub to register (a Session-signed ``registration_request`` with its
uuid), and once accepted its heart, one of a :class:`~greenheart.green.fleet.HeartFleet`'s
with the uuid as identity, answers the controller's heart monitor. Nothing else: these
engines have no task, control or IOPub sockets, so they never accept work, and a client
that sends them some waits forever. They exist to load the controller as a storm of real
engines would: registrations, heartbeats, deaths.

The hub's notifications (``registration_notification``, ``unregistration_notification``, on
the channel clients follow) say what the controller made of them: registered, purged (it
never heard the heart in time), unregistered (killed, left, or lost while alive). An engine
leaves as ipengine does, when its heart has heard no ping for ``max_heartbeat_misses`` checks:
it asks the hub to unregister it, and dies.
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

from greenheart.core.behaviour import Behaviour, Churn, Die, Event, Flap, Revive, as_scenario
from greenheart.core.checks import COUNT
from greenheart.core.errors import GreenheartError
from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.registrations import (
    EngineState,
    PingWatch,
    RegistrationStatus,
    Registry,
    registration_times,
)
from greenheart.core.timeline import Action, KillHearts, ReplaceHearts, ReviveHearts, Timeline
from greenheart.green.curve import ClientCurve, KeyPair
from greenheart.green.fleet import HeartFleet, descriptors_per_heart, play
from greenheart.green.lifecycle import Service
from greenheart.green.limits import check_room
from greenheart.green.sockets import close_sockets, connect
from greenheart.integrations.ipyparallel.connection import ControllerConnection

log = logging.getLogger("greenheart.engines")

#: the hub's default registration timeout: max(30 s, 10 periods)
MIN_PURGE_SECONDS = 30.0

#: seconds without any answer from the hub before saying so (ipengine gives up after 5)
UNANSWERED_WARNING = 5.0

#: seconds between looks for requests gone unanswered and registrations purged
CHECK_INTERVAL = 0.5

#: ipengine checks for its controller's pings every heart period plus this, in ms
PING_CHECK_SLACK_MS = 500.0

#: how long (ms) a leaving engine's own registrar may take to deliver its unregistration request
LEAVING_LINGER_MS = 1000

#: seconds the engines wait for the hub to announce that those that left are unregistered,
#: once every engine has left, before they stop
LEAVING_GRACE = 5.0


class RegistrationFailed(GreenheartError):
    """Every engine that asked was refused or went unanswered: none could register."""


class ControllerSilent(GreenheartError):
    """Every engine left, hearing no ping from the controller: there is nobody left to run."""


def hub_purge_seconds(period_ms: float) -> float:
    """How long ipyparallel's hub waits for an accepted engine's first beat, by default."""
    return max(MIN_PURGE_SECONDS, 10 * period_ms / 1000)


@attrs.define(eq=False)
class SimulatedEngines(Service):
    """``count`` engines that register with the controller at ``connection`` and then beat.

    ``behaviour`` and ``scenario`` are the fleet's (delay, loss; die, revive, churn, flap):
    a revived engine registers again under its uuid, churn replaces engines with new ones.
    """

    connection: ControllerConnection
    count: int = attrs.field(default=0, validator=COUNT)
    behaviour: Behaviour = attrs.field(
        factory=Behaviour, validator=attrs.validators.instance_of(Behaviour)
    )
    scenario: tuple[Event, ...] = attrs.field(
        factory=tuple,
        converter=as_scenario,
        validator=attrs.validators.deep_iterable(
            attrs.validators.instance_of((Die, Revive, Churn, Flap))
        ),
    )
    #: one DEALER for every registration request; else one per engine, closed once it is
    #: answered
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

    #: the heart period the hub announced, in ms
    period: float | None = attrs.field(default=None, init=False)
    _registry: Registry = attrs.field(factory=Registry, init=False)
    _fleet: HeartFleet | None = attrs.field(default=None, init=False)
    _context: zmq.green.Context | None = attrs.field(default=None, init=False)
    _registrar: zmq.green.Socket | None = attrs.field(default=None, init=False)
    _notifications: zmq.green.Socket | None = attrs.field(default=None, init=False)
    #: one key pair for every socket of these engines, when the cluster uses CURVE
    _curve: ClientCurve | None = attrs.field(default=None, init=False)
    _session: Any = attrs.field(default=None, init=False)
    _started: float = attrs.field(default=0.0, init=False)
    _serial: int = attrs.field(default=0, init=False)
    _limited: RateLimitedLog = attrs.field(init=False)
    _warned: bool = attrs.field(default=False, init=False)
    _first_asked: float | None = attrs.field(default=None, init=False)
    #: set when engines are added, to wake the greenlet that asks for them
    _added: gevent.event.Event = attrs.field(factory=gevent.event.Event, init=False)

    def __attrs_post_init__(self) -> None:
        self._limited = RateLimitedLog(log)

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
            check_room(self.count, self.descriptors_per_engine, "simulated engines")
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
            self._spawn(self._follow_notifications, self._notifications)
        else:
            log.warning(
                "%s names no notification port (no client file beside it): registrations"
                " and unregistrations will not be known",
                self.connection.source or "the connection",
            )
        if self.shared_registrar:
            self._registrar = self._socket(zmq.DEALER)
            self._registrar.setsockopt(zmq.IDENTITY, f"{self.prefix}-registrar".encode())
            connect(self._registrar, self.connection.registration_url, "registration")
            self._spawn(self._read_replies, self._registrar)
        self._started = self.clock()
        self._add(self.count)
        self._spawn(self._ask_when_due)
        self._spawn(self._watch)
        if self.max_heartbeat_misses:
            self._spawn(self._watch_controller, PingWatch(self.max_heartbeat_misses))
        if self.scenario:
            # flapping engines are chosen now, from every engine that will register
            planned = [uuid.encode() for uuid in self._registry.uuids]
            timeline = Timeline.start(self.scenario, self.behaviour.seed, planned)
            self._spawn(play, timeline, self.clock, self._fleet, self._carry_out)

    def _close(self) -> None:
        if self._fleet is not None:
            self._fleet.stop()
        close_sockets(self._registrar, self._notifications)
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
        self._registry.asked(uuid, self.clock())
        if self._first_asked is None:
            self._first_asked = self.clock()
        if self.shared_registrar:
            assert self._registrar is not None
            self._request(self._registrar, uuid)
        else:
            self._spawn(self._register_alone, uuid)

    def _request(self, socket: zmq.Socket, uuid: str) -> None:
        # the hub answers to every routing frame the request came with, so a frame of the
        # uuid's ahead of the message comes back on its reply, naming the engine it answers
        self._session.send(
            socket, "registration_request", content={"uuid": uuid}, ident=[uuid.encode()]
        )

    def _register_alone(self, uuid: str) -> None:
        socket = self._socket(zmq.DEALER)
        try:
            socket.setsockopt(zmq.IDENTITY, uuid.encode())
            connect(socket, self.connection.registration_url, "registration")
            self._request(socket, uuid)
            if socket.poll(round(self.reply_timeout * 1000), zmq.POLLIN):
                self._answered(uuid, self._split(socket.recv_multipart())[1])
        finally:
            close_sockets(socket)

    def _read_replies(self, socket: zmq.green.Socket) -> None:
        while True:
            tag, message = self._split(socket.recv_multipart())
            uuid = self._whose_reply(tag)
            if uuid is None:
                self._registry.unreadable()
                self._limited(logging.WARNING, "reply", "a registration reply nobody waits for")
                continue
            self._answered(uuid, message)

    def _split(self, frames: list[bytes]) -> tuple[str | None, list[bytes] | None]:
        """A reply's tag (the uuid its request carried) and its message; None for what
        is missing."""
        try:
            idents, message = self._session.feed_identities(frames)
        except ValueError:  # no delimiter: not a message at all
            return None, None
        tag = idents[-1].decode("utf8", "replace") if idents else None
        return tag, message

    def _whose_reply(self, tag: str | None) -> str | None:
        """The engine a reply on the shared registrar answers: the one its tag names, even
        if it was given up on (the registry then ignores it). The hub sends its error replies
        to the socket alone, untagged: those answer the oldest request still waiting."""
        if tag is not None and tag in self._registry:
            return tag
        return self._registry.oldest_asked()

    def _answered(self, uuid: str, message: list[bytes] | None) -> None:
        try:
            if message is None:
                raise ValueError("no <IDS|MSG> delimiter")
            reply = self._session.deserialize(message)
            content = reply["content"]
            kind = reply["header"]["msg_type"]
            engine_id = int(content["id"]) if content.get("status") == "ok" else None
        except Exception as error:  # a reply we cannot check is a refusal we cannot read
            self._refused(uuid, f"unreadable reply from the hub ({error!r}): is the key right?")
            return
        if kind == "registration_reply" and engine_id is not None:
            self.period = float(content.get("hb_period", self.period or 3000.0))
            if self.purge_after is None:
                self._registry.purge_after = hub_purge_seconds(self.period)
            if self._registry[uuid].state is not EngineState.ASKED:
                return  # answered after it was given up on: it does not beat
            self._registry.accepted(uuid, self.clock(), engine_id)
            self._beat(uuid)
        else:
            why = f"{content.get('ename', kind)}: {content.get('evalue', content)}"
            if "signature" in why.lower():
                why += " (the key does not match the controller's)"
            self._refused(uuid, why)

    def _refused(self, uuid: str, error: str) -> None:
        self._registry.refused(uuid, error)
        self._limited(logging.ERROR, "refused", "the hub refused engine %s: %s", uuid, error)

    def _beat(self, uuid: str) -> None:
        assert self._fleet is not None
        heart = uuid.encode()
        if heart in self._fleet.ids:
            self._fleet.revive([heart])
        else:
            self._fleet.add_hearts([heart])

    def _watch(self) -> None:
        """Give up on requests unanswered in time; stop when no engine could register."""
        while True:
            gevent.sleep(CHECK_INTERVAL)
            self._give_up_unanswered()
            status = self.status()
            if status.asked:
                self._warn_if_unanswered(status)
            failed = status.refused + status.unanswered
            if status.engines and status.asked == status.engines == failed:
                raise RegistrationFailed(self._why_none_registered(status))
            if status.left and self._everyone_left():
                raise ControllerSilent(
                    f"all {status.left} engines that were beating left, hearing no ping from"
                    f" the controller at {self.connection.ping_url} in"
                    f" {self.max_heartbeat_misses} checks: is it still running?"
                )

    def _why_none_registered(self, status: RegistrationStatus) -> str:
        url = self.connection.registration_url
        if status.refused:
            return f"the hub at {url} refused all {status.asked} engines: {status.last_error}"
        return (
            f"no answer from a hub at {url} to any of {status.asked} engines in"
            f" {self.reply_timeout:g} s: either no controller listens there, or its hub cannot"
            " verify the requests because the key is wrong (ipyparallel's hub then logs"
            " 'Invalid Signature' and answers nothing)"
        )

    def _warn_if_unanswered(self, status: RegistrationStatus) -> None:
        if self._warned or status.accepted or status.refused:
            return
        first = self._first_asked
        if first is not None and self.clock() - first > UNANSWERED_WARNING:
            self._warned = True
            log.error(
                "no answer yet from the hub at %s, %g s after the first request: is the key"
                " right? (the hub answers nothing it cannot verify)",
                self.connection.registration_url,
                UNANSWERED_WARNING,
            )

    def _give_up_unanswered(self) -> None:
        for uuid in self._registry.overdue(self.clock(), self.reply_timeout):
            self._registry.unanswered(uuid)
            self._limited(
                logging.ERROR,
                "unanswered",
                "no answer from the hub at %s to engine %s in %g s",
                self.connection.registration_url,
                uuid,
                self.reply_timeout,
            )

    def _watch_controller(self, watch: PingWatch) -> None:
        """ipengine's check on the controller: an engine whose heart heard no ping for
        ``max_heartbeat_misses`` checks in a row leaves."""
        while True:
            period = self.period  # known from the first acceptance on
            gevent.sleep(((period or 1000.0) + PING_CHECK_SLACK_MS) / 1000)
            if period is None:
                continue
            assert self._fleet is not None
            beating = set(self._fleet.alive)
            pings = {
                uuid: self._fleet.counters(uuid.encode()).pings
                for state in (EngineState.ACCEPTED, EngineState.REGISTERED)
                for uuid in self._registry.in_state(state)
                if uuid.encode() in beating and self._registry[uuid].killed_at is None
            }
            for uuid in watch.check(pings):
                self._leave(uuid, period + PING_CHECK_SLACK_MS)

    def _everyone_left(self) -> bool:
        """No engine beats or is about to, and every one that left has been unregistered or
        has waited long enough for it (a dead hub announces nothing)."""
        assert self._fleet is not None
        if self._fleet.alive or any(
            self._registry.in_state(state) for state in (EngineState.WAITING, EngineState.ASKED)
        ):
            return False
        now = self.clock()
        for uuid in self._registry.uuids:
            record = self._registry[uuid]
            if record.left_at is None or record.state is EngineState.UNREGISTERED:
                continue
            if now - record.left_at < LEAVING_GRACE:
                return False
        return True

    def _leave(self, uuid: str, check_ms: float) -> None:
        """As ipengine does when its controller has gone silent: ask to be unregistered, and
        die."""
        self._registry.left(uuid, self.clock())
        self._limited(
            logging.WARNING,
            "left",
            "engine %s heard no ping from the controller in %d checks of %g ms: it asks to be"
            " unregistered and dies, as ipengine does",
            uuid,
            self.max_heartbeat_misses,
            check_ms,
        )
        content = {"id": self._registry[uuid].engine_id}
        if self._registrar is not None:
            self._session.send(self._registrar, "unregistration_request", content=content)
        else:
            socket = self._socket(zmq.DEALER)
            socket.linger = LEAVING_LINGER_MS  # closed at once, delivered on libzmq's time
            connect(socket, self.connection.registration_url, "registration")
            self._session.send(socket, "unregistration_request", content=content)
            socket.close()
        assert self._fleet is not None
        self._fleet.kill([uuid.encode()])

    def _follow_notifications(self, socket: zmq.green.Socket) -> None:
        while True:
            frames = socket.recv_multipart()
            try:
                _, message = self._session.feed_identities(frames)
                notice = self._session.deserialize(message)
                kind = notice["header"]["msg_type"]
                uuid = notice["content"].get("uuid")
                if not isinstance(uuid, str):
                    raise TypeError(f"a uuid of {type(uuid).__name__}")
            except Exception:
                self._registry.unreadable()
                self._limited(logging.WARNING, "notice", "an unreadable hub notification")
                continue
            if uuid not in self._registry:
                continue  # another client's engine
            now = self.clock()
            if kind == "registration_notification":
                self._registry.registered(uuid, now)
            elif kind == "unregistration_notification":
                seconds = self._registry.unregistered(uuid, now)
                if seconds is None and self._registry[uuid].killed_at is None:
                    self._limited(
                        logging.WARNING, "lost", "the hub unregistered engine %s, alive", uuid
                    )
                if self.on_unregistered is not None:
                    self.on_unregistered(uuid, seconds)

    # -- the scenario ------------------------------------------------------------------------------

    def _carry_out(self, action: Action) -> None:
        uuids = [heart.decode() for heart in action.hearts]
        assert self._fleet is not None
        if isinstance(action, KillHearts):
            log.info("scenario: %d engines die", len(uuids))
            self.kill(uuids)
        elif isinstance(action, ReviveHearts):
            log.info("scenario: %d engines come back and register again", len(uuids))
            self.register_again(uuids)
        elif isinstance(action, ReplaceHearts):
            log.info("scenario: churn, %d engines die and as many new ones register", len(uuids))
            self.kill(uuids)
            self.add(len(uuids))
        else:
            beating = set(self._fleet.ids)
            hearts = [heart for heart in action.hearts if heart in beating]
            self._fleet.silence(hearts, action.silent)
