"""The life of simulated ipyparallel engines as their controller sees it: a state machine.

An engine asks to register (``registration_request``), the hub answers (accepted, or refused
with an error), the engine starts beating, and the hub announces it registered once its heart
monitor reported the heart; if that never happens, the hub purges the registration after its
timeout. Later the hub may announce it unregistered: because it was killed (and how fast that
was noticed is the point of a benchmark), because it left (it stopped hearing the controller's
pings, and asked to be unregistered, as ipengine does), or, for an engine still alive, wrongly
(lost). :class:`PingWatch` is ipengine's check on its controller's pings.

:class:`Registry` keeps that per engine, fed with events and the time they happened; the
driver (:mod:`greenheart.integrations.ipyparallel.engines`) only moves messages and time in.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import random
from collections.abc import Mapping

import attrs


class EngineState(enum.Enum):
    WAITING = "waiting"  # not asked yet
    ASKED = "asked"  # asked, no answer yet
    ACCEPTED = "accepted"  # the hub said ok; beating, not announced registered yet
    REGISTERED = "registered"
    REFUSED = "refused"
    UNANSWERED = "unanswered"  # no answer in time
    UNREGISTERED = "unregistered"


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

    #: seconds the hub waits for an accepted engine's heart before it purges the registration
    purge_after: float = 30.0
    _records: dict[str, EngineRecord] = attrs.field(factory=dict)
    _counts: dict[str, int] = attrs.field(
        factory=lambda: dict.fromkeys(
            (
                "asked",
                "accepted",
                "refused",
                "unanswered",
                "registered",
                "unregistered",
                "lost",
                "unreadable",
                "left",
            ),
            0,
        )
    )
    _registration_seconds: list[float] = attrs.field(factory=list)
    _detection_seconds: list[float] = attrs.field(factory=list)
    _last_error: str | None = None
    #: engines not yet asked, soonest first (ties in the order added)
    _waiting: list[tuple[float, int, str]] = attrs.field(factory=list)
    _order: itertools.count[int] = attrs.field(factory=itertools.count)

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
        record.state, record.asked_at, record.accepted_at = EngineState.ASKED, now, None
        record.killed_at = record.left_at = None
        self._counts["asked"] += 1

    def accepted(self, uuid: str, now: float, engine_id: int) -> None:
        record = self._records[uuid]
        if record.state is not EngineState.ASKED:
            return  # answered after it was given up on: not beating
        record.state, record.accepted_at, record.engine_id = EngineState.ACCEPTED, now, engine_id
        self._counts["accepted"] += 1

    def refused(self, uuid: str, error: str) -> None:
        record = self._records[uuid]
        if record.state is EngineState.ASKED:
            record.state, record.error = EngineState.REFUSED, error
            self._counts["refused"] += 1
            self._last_error = error

    def unanswered(self, uuid: str) -> None:
        record = self._records[uuid]
        if record.state is EngineState.ASKED:
            record.state = EngineState.UNANSWERED
            self._counts["unanswered"] += 1

    def registered(self, uuid: str, now: float) -> bool:
        """The hub announced ``uuid`` registered; False if it is not one of these engines."""
        record = self._records.get(uuid)
        if record is None or record.state is not EngineState.ACCEPTED:
            return False
        record.state = EngineState.REGISTERED
        self._counts["registered"] += 1
        assert record.asked_at is not None
        self._registration_seconds.append(now - record.asked_at)
        return True

    def unreadable(self) -> None:
        """A message from the hub was skipped: it could not be read, or answered nobody."""
        self._counts["unreadable"] += 1

    def killed(self, uuid: str, now: float) -> None:
        record = self._records[uuid]
        if record.killed_at is None:
            record.killed_at = now

    def left(self, uuid: str, now: float) -> None:
        """The engine gave up on its controller and asked to be unregistered."""
        record = self._records[uuid]
        if record.left_at is None and record.killed_at is None:
            record.left_at = now
            self._counts["left"] += 1

    def unregistered(self, uuid: str, now: float) -> float | None:
        """The hub announced ``uuid`` unregistered: the seconds since it was killed, if it was."""
        record = self._records.get(uuid)
        if record is None or record.state is not EngineState.REGISTERED:
            return None
        record.state = EngineState.UNREGISTERED
        self._counts["unregistered"] += 1
        if record.left_at is not None:
            return None  # as it asked
        if record.killed_at is None:
            self._counts["lost"] += 1
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

    def overdue(self, now: float, timeout: float) -> list[str]:
        """Engines that asked more than ``timeout`` seconds ago and have had no answer."""
        overdue = []
        for uuid in self.in_state(EngineState.ASKED):
            asked_at = self._records[uuid].asked_at
            if asked_at is not None and now - asked_at > timeout:
                overdue.append(uuid)
        return overdue

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
            and now - r.accepted_at > self.purge_after
        )
        killed = [r for r in records if r.killed_at is not None]
        return RegistrationStatus(
            engines=len(self._records),
            asked=self._counts["asked"],
            accepted=self._counts["accepted"],
            refused=self._counts["refused"],
            unanswered=self._counts["unanswered"],
            registered=self._counts["registered"],
            registered_now=sum(r.state is EngineState.REGISTERED for r in records),
            purged=purged,
            unregistered=self._counts["unregistered"],
            lost=self._counts["lost"],
            killed=len(killed),
            killed_unregistered=sum(r.state is EngineState.UNREGISTERED for r in killed),
            unreadable=self._counts["unreadable"],
            left=self._counts["left"],
            last_error=self._last_error,
        )


@attrs.define
class PingWatch:
    """ipengine's check on its controller: at every check (ipengine checks every heart period
    plus 500 ms), an engine whose heart heard no ping since the check before has missed one;
    one that has missed ``max_misses`` in a row gives up on the controller and leaves.

    The first check of an engine only notes its count, as ipengine's first check cannot miss.
    """

    max_misses: int = attrs.field(validator=attrs.validators.ge(1))
    _heard: dict[str, int] = attrs.field(factory=dict, init=False)
    _misses: dict[str, int] = attrs.field(factory=dict, init=False)

    def check(self, pings: Mapping[str, int]) -> list[str]:
        """``pings``: how many pings each engine to watch has heard so far. The engines that
        have now missed ``max_misses`` checks in a row; they are watched no more (until they
        are in ``pings`` again, as from scratch). An engine left out of ``pings`` is forgotten.
        """
        for uuid in [uuid for uuid in self._heard if uuid not in pings]:
            del self._heard[uuid], self._misses[uuid]
        given_up = []
        for uuid, count in pings.items():
            if self._heard.get(uuid, -1) != count:
                self._heard[uuid], self._misses[uuid] = count, 0
                continue
            self._misses[uuid] += 1
            if self._misses[uuid] >= self.max_misses:
                given_up.append(uuid)
                del self._heard[uuid], self._misses[uuid]
        return given_up
