"""What a benchmark's child programs say to it: one small value per kind of line.

A program (:mod:`greenheart.bench.programs`) writes each line with :func:`say`, a JSON
object tagged with its kind; the benchmark's :class:`~greenheart.bench.child.Child` reads
it back with :func:`read`, so that the modules that measure read attributes of these values,
never keys of a dictionary. Times called ``at`` are on the shared monotonic clock, in seconds;
``cpu`` is the process's CPU time, every thread included. A line that is not one of these
(the ``greenheart`` command's own output, say) is not read.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, TypeAlias

import attrs

from greenheart.core.registrations import RegistrationStatus

#: round trips reported per beat; a random sample when more hearts answered
RTT_SAMPLE = 200


def _hearts(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


def _floats(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(values)


@attrs.frozen
class Ready:
    """A monitor is bound: where its loads are to connect."""

    TAG: ClassVar[str] = "ready"
    ping: str
    pong: str
    pid: int


@attrs.frozen
class Footprint:
    """A load's memory and descriptors before it opened any socket."""

    TAG: ClassVar[str] = "footprint"
    rss_kib: int
    fds: int
    pid: int


@attrs.frozen
class Started:
    """A load's sockets are all open."""

    TAG: ClassVar[str] = "started"
    hearts: int
    at: float


@attrs.frozen
class FleetPings:
    """A fleet's counters so far: the pings its hearts heard, and those it could not answer."""

    TAG: ClassVar[str] = "fleet_status"
    pings: int
    skipped_pings: int


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


@attrs.frozen
class BeatReport:
    """One beat of a monitor under test, in the same terms for every monitor.

    ``hearts`` known after it; ``responded``: answered its round; ``new`` and ``failed``
    hearts; ``on_time``, ``late`` and ``bad`` pongs; ``rtt_ms``: a sample of at most
    :data:`RTT_SAMPLE` round trips; ``round_ms``: ping sent to its last on-time pong;
    ``judged``: False if the beat charged nobody a miss; ``lag_ms``: how long after its grid
    time the beat's ping left.
    """

    TAG: ClassVar[str] = "beat"
    beat: int
    at: float
    cpu: float
    hearts: int
    responded: int
    on_probation: int
    new: int
    failed: int
    on_time: int
    late: int
    bad: int
    rtt_ms: tuple[float, ...] = attrs.field(converter=_floats)
    rtt_max_ms: float | None
    round_ms: float | None
    judged: bool = True
    lag_ms: float | None = 0.0

    @classmethod
    def now(
        cls,
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
        judged: bool = True,
        lag: float = 0.0,
    ) -> BeatReport:
        """The report of a beat that has just ended, round trips and lag in seconds."""
        sample = (
            round_trips
            if len(round_trips) <= RTT_SAMPLE
            else random.sample(list(round_trips), RTT_SAMPLE)
        )
        return cls(
            beat=beat,
            at=time.monotonic(),
            cpu=time.process_time(),  # every thread; opens no file, at the fd limit too
            hearts=hearts,
            responded=responded,
            on_probation=on_probation,
            new=new,
            failed=failed,
            on_time=on_time,
            late=late,
            bad=bad,
            rtt_ms=tuple(round(rtt * 1000, 3) for rtt in sample),
            rtt_max_ms=_ms(max(round_trips)) if round_trips else None,
            round_ms=_ms(round_s),
            judged=judged,
            lag_ms=_ms(lag),
        )


@attrs.frozen
class Registered:
    """A monitor registered a heart (``--events``)."""

    TAG: ClassVar[str] = "registered"
    heart: str
    at: float


@attrs.frozen
class Failed:
    """A monitor failed a heart (``--events``); greenheart's say why."""

    TAG: ClassVar[str] = "failed"
    heart: str
    at: float
    cause: str | None = None


@attrs.frozen
class FalselyFailed:
    """A heart failed earlier answered again, ``gone_s`` seconds after its last answer: a
    false failure (:class:`~greenheart.core.failures.FalseFailure`), as the monitor says."""

    TAG: ClassVar[str] = "false_failure"
    heart: str
    at: float
    gone_s: float


@attrs.frozen
class Refusing:
    """A greenheart monitor began, or stopped, refusing new connections."""

    TAG: ClassVar[str] = "refusing"
    refusing: bool
    at: float


@attrs.frozen
class Killed:
    """A load killed these hearts (or engines, by uuid), at ``at``: taken before the kill,
    since a monitor may hear of a death before the kill returns."""

    TAG: ClassVar[str] = "killed"
    hearts: tuple[str, ...] = attrs.field(converter=_hearts)
    at: float


@attrs.frozen
class Revived:
    """A load brought these dead hearts back under their identities."""

    TAG: ClassVar[str] = "revived"
    hearts: tuple[str, ...] = attrs.field(converter=_hearts)


@attrs.frozen
class Unregistered:
    """The hub unregistered a simulated engine: ``after_kill`` seconds after it was killed,
    or None if it was not."""

    TAG: ClassVar[str] = "unregistered"
    uuid: str
    after_kill: float | None


def _registrations(value: RegistrationStatus | dict[str, Any]) -> RegistrationStatus:
    return value if isinstance(value, RegistrationStatus) else RegistrationStatus(**value)


@attrs.frozen
class EngineStatus:
    """Simulated engines' registrations now, and the longest wait, request to registered."""

    TAG: ClassVar[str] = "engine_status"
    at: float
    registrations: RegistrationStatus = attrs.field(converter=_registrations)
    registration_max_s: float | None


@attrs.frozen
class ThreadHearts:
    """ipyparallel's thread hearts so far in one process, and what they cost it."""

    TAG: ClassVar[str] = "thread_hearts"
    hearts: int
    rss_before_kib: int
    rss_kib: int
    fds: int
    threads: int


@attrs.frozen
class ThreadHeartsFailed:
    """Making one more thread heart failed (out of descriptors or threads, say)."""

    TAG: ClassVar[str] = "thread_hearts_failed"
    hearts: int
    error: str


@attrs.frozen
class StormOpened:
    """A storm's connections are open (``failed``: could not be opened)."""

    TAG: ClassVar[str] = "storm_opened"
    opened: int
    failed: int
    seconds: float


@attrs.frozen
class StormClosed:
    """A storm closed its connections, all at once."""

    TAG: ClassVar[str] = "storm_closed"
    closed: int
    at: float


Line: TypeAlias = (
    Ready
    | Footprint
    | Started
    | FleetPings
    | BeatReport
    | Registered
    | Failed
    | FalselyFailed
    | Refusing
    | Killed
    | Revived
    | Unregistered
    | EngineStatus
    | ThreadHearts
    | ThreadHeartsFailed
    | StormOpened
    | StormClosed
)

#: a monitor's events (``--events``): its lines about its hearts, and its refusing
MonitorEvent: TypeAlias = Registered | Failed | FalselyFailed | Refusing

_KINDS: dict[str, type[Line]] = {
    kind.TAG: kind
    for kind in (
        Ready,
        Footprint,
        Started,
        FleetPings,
        BeatReport,
        Registered,
        Failed,
        FalselyFailed,
        Refusing,
        Killed,
        Revived,
        Unregistered,
        EngineStatus,
        ThreadHearts,
        ThreadHeartsFailed,
        StormOpened,
        StormClosed,
    )
}


def write(line: Line) -> str:
    """``line`` as one line of JSON."""
    return json.dumps({"line": line.TAG, **attrs.asdict(line)})


def read(text: str) -> Line | None:
    """The line ``text`` says, or None if it is not one of these (ValueError if it claims to
    be one and is not)."""
    if not text.startswith("{"):
        return None
    fields = json.loads(text)
    kind = _KINDS.get(fields.pop("line", None)) if isinstance(fields, dict) else None
    if kind is None:
        return None
    try:
        return kind(**fields)
    except TypeError as error:
        raise ValueError(f"not a {kind.__name__} line: {text.strip()}") from error


def say(line: Line) -> None:
    """Write ``line`` to stdout, at once (the benchmark is waiting for it)."""
    sys.stdout.write(write(line) + "\n")
    sys.stdout.flush()
