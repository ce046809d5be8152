"""Running a step: a monitor process, load processes, and what the monitor says of its beats.

Every step starts from nothing: a fresh monitor process (ours, ipyparallel's, or the
bare pyzmq loop) bound to free loopback ports, and fresh load processes sized to the
step. So monitors compared step by step never share a fleet, nor inherit each
other's backlog. Children are terminated when the step ends, whatever happens.
"""

from __future__ import annotations

import collections
import os
import tempfile
import time
from collections.abc import Callable, Sequence

import attrs

from greenheart.bench.child import STARTUP_SECONDS, Child, ChildFailed, children
from greenheart.bench.lines import (
    BeatReport,
    Failed,
    FleetPings,
    Footprint,
    MonitorEvent,
    Ready,
    Started,
)
from greenheart.bench.proc import cpu_seconds, rss_kib
from greenheart.bench.ramp import Step, StepResult, summarise, unsettled
from greenheart.core.errors import UsageError
from greenheart.green.curve import write_key_pair
from greenheart.green.limits import open_descriptors

#: beats skipped after every heart first answered, before the hold starts
WARMUP_BEATS = 2


class NotSettled(TimeoutError):
    """The monitor never heard every heart in one beat."""


class MonitorChild:
    """A benchmark monitor (:mod:`greenheart.bench.programs.monitors`) and the beats it
    reports."""

    def __init__(self, kind: str, period_ms: float, *args: str) -> None:
        self.kind = kind
        self.period_ms = period_ms
        self.child = Child.program(kind, kind, f"--period={period_ms:g}", *args)
        ready = self.child.expect(Ready, STARTUP_SECONDS)
        self.ping, self.pong = ready.ping, ready.pong
        #: the event lines (``--events``) read so far, in order
        self.events: list[MonitorEvent] = []

    @property
    def pid(self) -> int:
        return self.child.pid

    def load(self, role: str, kind: str, *args: str, stdin: bool = False) -> Child:
        """A load process (:mod:`greenheart.bench.programs.loads`) aimed at this monitor."""
        return Child.program(
            role, kind, f"--ping={self.ping}", f"--pong={self.pong}", *args, stdin=stdin
        )

    @property
    def beat_timeout(self) -> float:
        """How long a beat may take to come, on a busy machine."""
        return 10 + 5 * self.period_ms / 1000

    def beat(self, timeout: float | None = None) -> BeatReport:
        """The next beat report (event lines are kept in :attr:`events`)."""
        deadline = time.monotonic() + (self.beat_timeout if timeout is None else timeout)
        while True:
            line = self._sort(self.child.next(deadline - time.monotonic()))
            if line is not None:
                return line

    def said(self) -> list[BeatReport]:
        """The beat reports already printed, without waiting (events go to :attr:`events`)."""
        return [beat for line in self.child.said() if (beat := self._sort(line)) is not None]

    def stop(self) -> list[MonitorEvent]:
        """Stop the monitor (as at Ctrl-C: a recording ends whole) and read every line it said
        to its last: every event it reported."""
        for line in self.child.stop():
            self._sort(line)
        return self.events

    def _sort(self, line: object) -> BeatReport | None:
        """A beat report, or None once an event is put in :attr:`events`."""
        if isinstance(line, BeatReport):
            return line
        if not isinstance(line, MonitorEvent):
            raise ChildFailed(f"{self.kind} said {line!r}: a monitor says beats and events")
        self.events.append(line)
        return None

    def until_heard(self, hearts: int, within: float) -> BeatReport:
        """The first beat in which all ``hearts`` were known and answered;
        :class:`NotSettled` if none came within ``within`` seconds."""
        deadline = time.monotonic() + within
        best = 0
        while True:
            # a beat at least: a monitor still settling near the deadline may beat late
            beat = self.beat(max(0.0, deadline - time.monotonic()) + self.beat_timeout)
            if beat.hearts >= hearts and beat.responded >= hearts:
                return beat
            best = max(best, beat.responded)
            if time.monotonic() > deadline:
                raise NotSettled(
                    f"heard at most {best} of {hearts} hearts in one beat within {within:.0f} s"
                )

    def hold(
        self, seconds: float, progress: Callable[[int, BeatReport], None] | None = None
    ) -> list[BeatReport]:
        """The beats of ``seconds`` of measurement, led by the beat that starts the clock."""
        first = self.beat()
        beats = [first]
        while beats[-1].at - first.at < seconds or len(beats) < 3:
            beats.append(self.beat())
            if progress:
                progress(len(beats) - 1, beats[-1])
        return beats


def failures_by_cause(events: Sequence[MonitorEvent]) -> dict[str, int]:
    """A greenheart monitor's failure events (``--events``), counted by cause."""
    return dict(collections.Counter(str(e.cause) for e in events if isinstance(e, Failed)))


def start_load(
    kind: str, monitor: MonitorChild, size: int, prefix: str, *args: str
) -> tuple[Child, Footprint]:
    """A load process of ``size`` hearts against ``monitor``, once every socket is open; and
    its footprint before it opened any."""
    load = monitor.load(f"{kind} {prefix}", kind, f"--size={size}", f"--prefix={prefix}", *args)
    try:
        before = load.expect(Footprint, STARTUP_SECONDS)
        load.expect(Started, STARTUP_SECONDS)  # every socket is open
    except BaseException:
        load.stop()
        raise
    return load, before


#: called with (monitor, step, beats held so far, the latest beat)
Progress = Callable[[str, Step, int, BeatReport], None]


@attrs.define
class StepRunner:
    """Runs steps; ``hold`` seconds of measurement each, after the hearts settle.

    ``load`` is what answers: ``fleet`` (a :class:`~greenheart.fleet.HeartFleet` a process) or
    ``hearts`` (:class:`~greenheart.Heart` objects), in ``processes`` processes.
    """

    hold: float
    processes: int = 1
    max_misses: int = 3
    load: str = attrs.field(default="fleet", validator=attrs.validators.in_({"fleet", "hearts"}))
    progress: Progress | None = None
    #: the monitor on a CPU of its own and the loads on the others (see :func:`pinned_cpus`)
    pin: bool = False

    def settle_seconds(self, step: Step) -> float:
        # Connecting thousands of hearts takes a few seconds, and registration a beat.
        return max(20.0, 10 * step.period_ms / 1000)

    def run(self, monitor: str, step: Step) -> StepResult:
        with children() as started, tempfile.TemporaryDirectory() as keys:
            curve = []
            if monitor == "greenheart-curve":
                write_key_pair(keys, "server")
                write_key_pair(os.path.join(keys, "allowed"), "fleet")
                curve = [f"--curve={keys}"]
            monitor_cpus, load_cpus = pinned_cpus() if self.pin else ([], [])
            target = MonitorChild(
                monitor, step.period_ms, f"--max-misses={self.max_misses}", *curve, *monitor_cpus
            )
            started.append(target.child)
            loads, before = [], []
            for number, size in enumerate(_split(step.hearts, self.processes)):
                extra = [*curve, *load_cpus]
                load, footprint = start_load(self.load, target, size, f"bench{number}", *extra)
                started.append(load)
                loads.append(load)
                before.append(footprint)
            try:
                target.until_heard(step.hearts, self.settle_seconds(step))
            except NotSettled as error:
                return unsettled(monitor, step, str(error))
            for _ in range(WARMUP_BEATS):
                target.beat()
            return self._measure(monitor, step, target, loads, before)

    def _measure(
        self,
        monitor: str,
        step: Step,
        target: MonitorChild,
        loads: Sequence[Child],
        before: Sequence[Footprint],
    ) -> StepResult:
        def progress(held: int, beat: BeatReport) -> None:
            if self.progress:
                self.progress(monitor, step, held, beat)

        counts = {load.pid: (0, 0) for load in loads}

        def pings() -> tuple[int, int]:
            """The pings the loads answered and skipped so far, by the status each printed."""
            for load in loads:
                for line in load.said():
                    if isinstance(line, FleetPings):
                        counts[load.pid] = (line.pings, line.skipped_pings)
            return sum(a for a, _ in counts.values()), sum(s for _, s in counts.values())

        load_cpu = sum(cpu_seconds(load.pid) for load in loads)
        answered_before, skipped_before = pings()
        beats = target.hold(self.hold, progress)
        load_cpu = sum(cpu_seconds(load.pid) for load in loads) - load_cpu
        rss = sum(rss_kib(load.pid) for load in loads) - sum(b.rss_kib for b in before)
        fds = sum(open_descriptors(load.pid) for load in loads) - sum(b.fds for b in before)
        answered, skipped = pings()
        return summarise(
            monitor,
            step,
            beats,
            fleet_cpu_seconds=load_cpu,
            fleet_rss_kib=rss,
            fleet_fds=fds,
            fleet_pings=answered - answered_before,
            fleet_skipped_pings=skipped - skipped_before,
        )


def pinned_cpus() -> tuple[list[str], list[str]]:
    """``--cpus`` for the monitor (the first CPU this process may use) and for its loads (the
    rest). On 2 cores a monitor and its fleet otherwise share both with five threads between
    them, and where the scheduler puts them decides a step near capacity as much as the
    monitor does: steps then move by one or two 10% steps from run to run."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise UsageError("--pin needs 2 CPUs or more: one for the monitor, the rest for loads")
    return [f"--cpus={cpus[0]}"], [f"--cpus={','.join(map(str, cpus[1:]))}"]


def _split(hearts: int, processes: int) -> list[int]:
    """``hearts`` shared as evenly as can be among at most ``processes`` loads."""
    processes = max(1, min(processes, hearts))
    share, extra = divmod(hearts, processes)
    return [share + (1 if n < extra else 0) for n in range(processes)]
