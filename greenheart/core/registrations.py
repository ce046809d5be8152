"""The life of simulated ipyparallel engines as their controller sees it: a state machine.

An engine asks to register (``registration_request``), the hub answers (accepted, or refused
with an error), the engine starts beating, and the hub announces it registered once its heart
monitor reported the heart; if that never happens, the hub purges the registration after its
timeout. Later the hub may announce it unregistered: because it was killed (and how fast that
was noticed is the point of a benchmark), because it left (it stopped hearing the controller's
pings, and asked to be unregistered, as ipengine does), or, for an engine still alive, wrongly
(lost).

:class:`Registry` keeps that per engine, fed with events and the time they happened, and
decides what the driver (:mod:`greenheart.integrations.ipyparallel.engines`) is to do about
it: which requests to give up on, when to warn that the hub answers nobody, when to stop
because no engine could register or because every engine left, which engines to check for
pings (:mod:`greenheart.core.pingwatch`), and when an accepted engine counts as purged. The
states an engine moves through, and what moves it, are the table :data:`TRANSITIONS`.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import random
from collections.abc import Collection, Mapping
from typing import Any

import attrs

#: the hub's default registration timeout: max(30 s, 10 periods)
MIN_PURGE_SECONDS = 30.0

#: seconds without any answer from the hub before saying so (ipengine gives up after 5)
UNANSWERED_WARNING = 5.0

#: seconds the engines wait for the hub to announce that those that left are unregistered,
#: once every engine has left, before they stop
LEAVING_GRACE = 5.0

#: the heart period (ms) assumed of a hub whose acceptance does not say its own
DEFAULT_HUB_PERIOD_MS = 3000.0


def hub_purge_seconds(period_ms: float) -> float:
    """How long ipyparallel's hub waits for an accepted engine's first beat, by default."""
    return max(MIN_PURGE_SECONDS, 10 * period_ms / 1000)


class EngineState(enum.Enum):
    WAITING = "waiting"  # not asked yet
    ASKED = "asked"  # asked, no answer yet
    ACCEPTED = "accepted"  # the hub said ok; beating, not announced registered yet
    REGISTERED = "registered"
    REFUSED = "refused"
    UNANSWERED = "unanswered"  # no answer in time
    UNREGISTERED = "unregistered"


class Happening(enum.Enum):
    """What moves an engine from one state to another."""

    ASKED = "asked"  # it sent a registration request (again, perhaps)
    ACCEPTED = "accepted"  # the hub's reply said ok
    REFUSED = "refused"  # the hub's reply said no
    UNANSWERED = "unanswered"  # no reply in time
    REGISTERED = "registered"  # the hub announced it registered
    UNREGISTERED = "unregistered"  # the hub announced it unregistered


#: (state, happening) -> the next state; a pair not here leaves the engine where it is (an
#: answer to a request given up on, an announcement of an engine not in that state)
TRANSITIONS: dict[tuple[EngineState, Happening], EngineState] = {
    **{(state, Happening.ASKED): EngineState.ASKED for state in EngineState},
    (EngineState.ASKED, Happening.ACCEPTED): EngineState.ACCEPTED,
    (EngineState.ASKED, Happening.REFUSED): EngineState.REFUSED,
    (EngineState.ASKED, Happening.UNANSWERED): EngineState.UNANSWERED,
    (EngineState.ACCEPTED, Happening.REGISTERED): EngineState.REGISTERED,
    (EngineState.REGISTERED, Happening.UNREGISTERED): EngineState.UNREGISTERED,
}


@attrs.define
class EngineRecord:
    uuid: str
    #: seconds after the start when it is to ask
    due: float
    state: EngineState = EngineState.WAITING
    asked_at: float | None = None
    accepted_at: float | None = None
    killed_at: float | None = None
    #: when it gave up on a silent controller and asked to be unregistered
    left_at: float | None = None
    engine_id: int | None = None
    error: str | None = None


@attrs.define
class RegistrationCounters:
    """Totals of what happened, engines that asked again counted again."""

    asked: int = 0
    accepted: int = 0
    refused: int = 0
    unanswered: int = 0
    registered: int = 0
    unregistered: int = 0
    #: announced unregistered while alive, neither killed nor gone on their own
    lost: int = 0
    #: messages from the hub that could not be read, or answered nobody: skipped
    unreadable: int = 0
    #: engines that stopped hearing the controller's pings and left
    left: int = 0


@attrs.frozen
class Look:
    """What the driver is to do after a look at the registrations (:meth:`Registry.look`)."""

    #: requests given up on at this look, unanswered in time
    unanswered: tuple[str, ...]
    #: say, once, that the hub has answered no request yet
    warn_unanswered: bool
    #: every engine asked and none could register: stop (``RegistrationFailed``)
    none_registered: bool
    #: every engine that was beating left, and none is left to run: stop (``ControllerSilent``)
    everyone_left: bool
    status: RegistrationStatus


@attrs.frozen
class RegistrationStatus:
    """The engines' registrations now. Counts of events include engines that asked again."""

    engines: int
    #: requests sent, answers ok, answers refused, requests never answered in time
    asked: int
    accepted: int
    refused: int
    unanswered: int
    #: engines the hub announced registered, and how many of them are registered now
    registered: int
    registered_now: int
    #: accepted, but not announced registered within the hub's registration timeout
    purged: int
    #: announced unregistered: all of them, and those of them that were alive (wrongly)
    unregistered: int
    lost: int
    #: killed on purpose, and how many of those the hub has unregistered
    killed: int
    killed_unregistered: int
    #: engines that stopped hearing the controller's pings and left, asking to be unregistered
    left: int = 0
    #: messages from the hub that could not be read, or answered nobody: skipped
    unreadable: int = 0
    #: the last refusal's error
    last_error: str | None = None


def registration_times(count: int, *, rate: float | None, spread: float, seed: int) -> list[float]:
    """When each of ``count`` engines asks, in seconds after the start, in engine order.

    Each waits a seeded uniform delay in ``[0, spread)`` (engines started together but slow
    to boot, as in ipyparallel issue #700); ``rate`` caps the requests a second, in the order
    the delays fall due.
    """
    chooser = random.Random(seed)
    # random() < 1, but its product with a tiny spread can round up to the spread itself
    latest = math.nextafter(spread, 0.0) if spread > 0 else 0.0
    due = [min(chooser.random() * spread, latest) for _ in range(count)]
    if rate:
        previous = -1.0 / rate
        for engine in sorted(range(count), key=due.__getitem__):
            due[engine] = previous = max(due[engine], previous + 1.0 / rate)
    return due


@attrs.define
class Registry:
    """Every engine's registration, fed with what happened and when (seconds, any clock)."""

    #: seconds the hub waits for an accepted engine's heart before it purges the
    #: registration; None for the hub's default (:func:`hub_purge_seconds`) for the period
    #: it announced
    purge_after: float | None = None
    #: seconds an engine waits for the hub's answer before it is counted unanswered
    reply_timeout: float = 30.0
    #: the heart period the hub announced when it accepted an engine, in ms
    period_ms: float | None = None
    counters: RegistrationCounters = attrs.field(factory=RegistrationCounters)
    _records: dict[str, EngineRecord] = attrs.field(factory=dict)
    _registration_seconds: list[float] = attrs.field(factory=list)
    _detection_seconds: list[float] = attrs.field(factory=list)
    _last_error: str | None = None
    #: engines not yet asked, soonest first (ties in the order added)
    _waiting: list[tuple[float, int, str]] = attrs.field(factory=list)
    _order: itertools.count[int] = attrs.field(factory=itertools.count)
    _first_asked: float | None = None
    _warned: bool = False

    @property
    def purge_seconds(self) -> float:
        """How long an accepted engine may wait to be announced registered."""
        if self.purge_after is not None:
            return self.purge_after
        return hub_purge_seconds(self.period_ms or DEFAULT_HUB_PERIOD_MS)

    def _move(self, record: EngineRecord, happening: Happening) -> bool:
        """Move ``record`` as :data:`TRANSITIONS` says; False if it stays where it is."""
        state = TRANSITIONS.get((record.state, happening))
        if state is None:
            return False
        record.state = state
        return True

    def add(self, uuid: str, due: float) -> None:
        if uuid in self._records:
            raise ValueError(f"engine {uuid} is already known")
        self._records[uuid] = EngineRecord(uuid, due)
        heapq.heappush(self._waiting, (due, next(self._order), uuid))

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._records

    def __getitem__(self, uuid: str) -> EngineRecord:
        return self._records[uuid]

    @property
    def uuids(self) -> tuple[str, ...]:
        return tuple(self._records)

    def asked(self, uuid: str, now: float) -> None:
        record = self._records[uuid]
        self._move(record, Happening.ASKED)
        record.asked_at, record.accepted_at = now, None
        record.killed_at = record.left_at = None
        self.counters.asked += 1
        if self._first_asked is None:
            self._first_asked = now

    def accepted(
        self, uuid: str, now: float, engine_id: int, period_ms: float | None = None
    ) -> bool:
        """The hub accepted ``uuid`` as engine ``engine_id``, announcing its heart period (if
        it said); whether the engine is to beat now (not if it was given up on)."""
        self.period_ms = period_ms or self.period_ms or DEFAULT_HUB_PERIOD_MS
        record = self._records[uuid]
        if not self._move(record, Happening.ACCEPTED):
            return False  # answered after it was given up on: not beating
        record.accepted_at, record.engine_id = now, engine_id
        self.counters.accepted += 1
        return True

    def refused(self, uuid: str, error: str) -> None:
        record = self._records[uuid]
        if self._move(record, Happening.REFUSED):
            record.error = error
            self.counters.refused += 1
            self._last_error = error

    def unanswered(self, uuid: str) -> None:
        if self._move(self._records[uuid], Happening.UNANSWERED):
            self.counters.unanswered += 1

    def registered(self, uuid: str, now: float) -> bool:
        """The hub announced ``uuid`` registered; False if it is not one of these engines."""
        record = self._records.get(uuid)
        if record is None or not self._move(record, Happening.REGISTERED):
            return False
        self.counters.registered += 1
        assert record.asked_at is not None
        self._registration_seconds.append(now - record.asked_at)
        return True

    def unreadable(self) -> None:
        """A message from the hub was skipped: it could not be read, or answered nobody."""
        self.counters.unreadable += 1

    def killed(self, uuid: str, now: float) -> None:
        record = self._records[uuid]
        if record.killed_at is None:
            record.killed_at = now

    def left(self, uuid: str, now: float) -> None:
        """The engine gave up on its controller and asked to be unregistered."""
        record = self._records[uuid]
        if record.left_at is None and record.killed_at is None:
            record.left_at = now
            self.counters.left += 1

    def unregistered(self, uuid: str, now: float) -> float | None:
        """The hub announced ``uuid`` unregistered: the seconds since it was killed, if it was."""
        record = self._records.get(uuid)
        if record is None or not self._move(record, Happening.UNREGISTERED):
            return None
        self.counters.unregistered += 1
        if record.left_at is not None:
            return None  # as it asked
        if record.killed_at is None:
            self.counters.lost += 1
            return None
        seconds = now - record.killed_at
        self._detection_seconds.append(seconds)
        return seconds

    def due(self, now: float) -> list[str]:
        """Engines waiting whose time to ask has come (``now`` since the start), in due order.
        Each is returned once: the caller asks them."""
        due = []
        while self._waiting and self._waiting[0][0] <= now:
            _, _, uuid = heapq.heappop(self._waiting)
            if self._records[uuid].state is EngineState.WAITING:  # else asked some other way
                due.append(uuid)
        return due

    def next_due(self) -> float | None:
        """When the next engine waiting is due to ask; None when none is waiting."""
        return self._waiting[0][0] if self._waiting else None

    def look(self, now: float, *, beating: bool) -> Look:
        """Give up on the requests unanswered for :attr:`reply_timeout`, and say what the
        driver is to do; ``beating``: whether any engine's heart is still alive."""
        unanswered = []
        for uuid in self.in_state(EngineState.ASKED):
            asked_at = self._records[uuid].asked_at
            if asked_at is not None and now - asked_at > self.reply_timeout:
                self.unanswered(uuid)
                unanswered.append(uuid)
        status = self.status(now)
        counters = self.counters
        warn = (
            not self._warned
            and not counters.accepted
            and not counters.refused
            and self._first_asked is not None
            and now - self._first_asked > UNANSWERED_WARNING
        )
        self._warned = self._warned or warn
        failed = counters.refused + counters.unanswered
        return Look(
            unanswered=tuple(unanswered),
            warn_unanswered=warn,
            none_registered=bool(status.engines) and counters.asked == status.engines == failed,
            everyone_left=bool(counters.left) and self._everyone_left(now, beating),
            status=status,
        )

    def _everyone_left(self, now: float, beating: bool) -> bool:
        """No engine beats or is about to, and every one that left has been unregistered or
        has waited :data:`LEAVING_GRACE` for it (a dead hub announces nothing)."""
        if beating or any(
            r.state in (EngineState.WAITING, EngineState.ASKED) for r in self._records.values()
        ):
            return False
        return all(
            r.left_at is None
            or r.state is EngineState.UNREGISTERED
            or now - r.left_at >= LEAVING_GRACE
            for r in self._records.values()
        )

    def watched(self, beating: Collection[str]) -> list[str]:
        """The engines whose pings are to be checked (:mod:`greenheart.core.pingwatch`):
        accepted or registered, with a heart in ``beating``, and not killed on purpose."""
        return [
            r.uuid
            for r in self._records.values()
            if r.state in (EngineState.ACCEPTED, EngineState.REGISTERED)
            and r.uuid in beating
            and r.killed_at is None
        ]

    def oldest_asked(self) -> str | None:
        """The engine that has waited longest for an answer to its request, if any does."""
        asked = [r for r in self._records.values() if r.state is EngineState.ASKED]
        return min(asked, key=lambda r: r.asked_at or 0.0).uuid if asked else None

    def in_state(self, state: EngineState) -> list[str]:
        return [r.uuid for r in self._records.values() if r.state is state]

    def engine_ids(self) -> dict[str, int]:
        """The hub's id for every engine it accepted (its latest, for one that registered
        again), by uuid."""
        return {r.uuid: r.engine_id for r in self._records.values() if r.engine_id is not None}

    def registration_seconds(self) -> list[float]:
        """Request to announcement, for every engine announced registered."""
        return list(self._registration_seconds)

    def detection_seconds(self) -> list[float]:
        """Kill to announcement of unregistration, for every killed engine unregistered."""
        return list(self._detection_seconds)

    def status(self, now: float) -> RegistrationStatus:
        records = self._records.values()
        purged = sum(
            1
            for r in records
            if r.state is EngineState.ACCEPTED
            and r.accepted_at is not None
            and now - r.accepted_at > self.purge_seconds
        )
        killed = [r for r in records if r.killed_at is not None]
        return RegistrationStatus(
            engines=len(self._records),
            asked=self.counters.asked,
            accepted=self.counters.accepted,
            refused=self.counters.refused,
            unanswered=self.counters.unanswered,
            registered=self.counters.registered,
            registered_now=sum(r.state is EngineState.REGISTERED for r in records),
            purged=purged,
            unregistered=self.counters.unregistered,
            lost=self.counters.lost,
            killed=len(killed),
            killed_unregistered=sum(r.state is EngineState.UNREGISTERED for r in killed),
            unreadable=self.counters.unreadable,
            left=self.counters.left,
            last_error=self._last_error,
        )


@attrs.frozen
class Reply:
    """What the hub's answer to a registration request says: accepted as ``engine_id``, with
    its heart period if it said; or refused, and why."""

    engine_id: int | None = None
    period_ms: float | None = None
    error: str | None = None


def reply_of(msg_type: str, content: Mapping[str, Any]) -> Reply:
    """The hub's answer (a deserialized message's type and content); ValueError or
    TypeError when an acceptance is not one."""
    if msg_type == "registration_reply" and content.get("status") == "ok":
        period = content.get("hb_period")
        return Reply(int(content["id"]), None if period is None else float(period))
    why = f"{content.get('ename', msg_type)}: {content.get('evalue', content)}"
    if "signature" in why.lower():
        why += " (the key does not match the controller's)"
    return Reply(error=why)
