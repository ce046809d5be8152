"""The ramp, and the rule that names a capacity: pure functions over step results.

A benchmark ramps the load step by step: first the number of hearts at the longest
period, then the period, shorter and shorter, at the largest number of hearts. Each
step is held for a while and summed up from the beats the monitor reported
(:func:`summarise`). A step is *good* when every heart answered on time at least
:data:`ON_TIME_FLOOR` percent of the time and no heart was declared failed (every
heart in a benchmark is healthy, so any failure is a false one). A ramp stops at its
first bad step, and the last good step is the monitor's capacity.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from greenheart.core.stats import percentile

if TYPE_CHECKING:
    from greenheart.bench.lines import BeatReport

#: the least on-time percentage of a good step
ON_TIME_FLOOR = 99.0

#: the least share of the beats asked (hold / period) that a good step's monitor made: one
#: that skips beats under load must not be credited with the period it was asked for
BEATS_FLOOR = 98.0

#: the most pings a fleet may skip, in percent of those it received, and still be keeping up
SKIPPED_FLOOR = 1.0

#: how many more times a step is run when it went bad because its fleet fell behind: the
#: monitor was not what was measured, so the step is not yet a verdict on it
FLEET_RETRIES = 1


def _positive_ints(instance: object, attribute: attrs.Attribute, value: tuple) -> None:
    if not value or any(not isinstance(n, int) or n < 1 for n in value):
        raise ValueError(f"{attribute.name} must be positive whole numbers, got {value!r}")


def _positive_numbers(instance: object, attribute: attrs.Attribute, value: tuple) -> None:
    if not value or any(not n > 0 for n in value):
        raise ValueError(f"{attribute.name} must be positive numbers, got {value!r}")


@attrs.frozen(order=True)
class Step:
    """One load: ``hearts`` answering a ping every ``period_ms``."""

    hearts: int
    period_ms: float

    @property
    def pongs_per_second(self) -> float:
        return self.hearts * 1000.0 / self.period_ms

    def __str__(self) -> str:
        return f"{self.hearts} hearts @ {self.period_ms:g} ms"


def _floats(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(float(value) for value in values)


@attrs.frozen
class RampPlan:
    """The hearts to ramp through at the first period, then the periods at the most hearts."""

    hearts: tuple[int, ...] = attrs.field(converter=tuple, validator=_positive_ints)
    periods_ms: tuple[float, ...] = attrs.field(converter=_floats, validator=_positive_numbers)

    def steps(self) -> list[Step]:
        hearts = sorted(set(self.hearts))
        periods = sorted(set(self.periods_ms), reverse=True)
        steps = [Step(count, periods[0]) for count in hearts]
        steps += [Step(hearts[-1], period) for period in periods[1:]]
        return steps


@attrs.frozen
class StepResult:
    """What one monitor did under one step's load; times in milliseconds."""

    monitor: str
    step: Step
    #: False when the hearts never all answered in one beat before the hold could start
    settled: bool
    beats: int = 0
    seconds: float = 0.0
    pongs_per_second: float = 0.0
    on_time_percent: float = 0.0
    late_pongs: int = 0
    bad_pongs: int = 0
    false_failures: int = 0
    max_on_probation: int = 0
    #: the beats the period asked for in the hold (0: not known)
    beats_asked: float = 0.0
    #: the fewest hearts that answered any one beat of the hold
    min_responded: int = 0
    #: beats that charged nobody a miss (the monitor stalled, or was behind)
    unjudged_beats: int = 0
    rtt_p50_ms: float | None = None
    rtt_p99_ms: float | None = None
    rtt_max_ms: float | None = None
    round_p50_ms: float | None = None
    round_p99_ms: float | None = None
    monitor_cpu_percent: float = 0.0
    monitor_us_per_pong: float | None = None
    fleet_cpu_percent: float = 0.0
    fleet_rss_kib_per_heart: float | None = None
    fleet_fds_per_heart: float | None = None
    #: pings the fleets fanned out, and those they skipped because a newer one was queued
    fleet_pings: int = 0
    fleet_skipped_pings: int = 0
    #: how long after its grid time each ping left, p99 (ms)
    ping_lag_p99_ms: float | None = None
    note: str = ""

    @property
    def beats_percent(self) -> float:
        """The beats made, of those asked (100 when not known)."""
        return 100.0 * self.beats / self.beats_asked if self.beats_asked else 100.0

    @property
    def good(self) -> bool:
        return (
            self.settled
            and self.false_failures == 0
            and self.on_time_percent >= ON_TIME_FLOOR
            and self.beats_percent >= BEATS_FLOOR
        )

    @property
    def fleet_behind(self) -> bool:
        """The load generator, not the monitor, could not keep up: its fleets skipped more than
        :data:`SKIPPED_FLOOR` percent of the pings they received."""
        received = self.fleet_pings + self.fleet_skipped_pings
        return self.fleet_skipped_pings > SKIPPED_FLOOR / 100 * received

    @property
    def verdict(self) -> str:
        if not self.settled:
            return self.note or "never heard every heart in one beat"
        problems = []
        if self.false_failures:
            problems.append(f"{self.false_failures} heart(s) wrongly failed")
        if self.on_time_percent < ON_TIME_FLOOR:
            problems.append(f"on time {self.on_time_percent:.1f}% < {ON_TIME_FLOOR:g}%")
        if self.beats_percent < BEATS_FLOOR:
            problems.append(
                f"made {self.beats} of {self.beats_asked:.0f} beats asked"
                f" ({self.beats_percent:.0f}% < {BEATS_FLOOR:g}%)"
            )
        if problems and self.fleet_behind:
            problems.append(
                f"the fleet fell behind, not the monitor ({self.fleet_skipped_pings} pings"
                f" skipped, fleet CPU {self.fleet_cpu_percent:.0f}%)"
            )
        text = "; ".join(problems) or "ok"
        return f"{text} ({self.note})" if self.note else text

    @property
    def zero_misses(self) -> bool:
        """Every heart answered every beat of the hold on time, and none failed."""
        return (
            self.good
            and self.min_responded == self.step.hearts
            and self.max_on_probation == 0
            and self.late_pongs == 0
        )

    def as_dict(self) -> dict[str, Any]:
        fields = attrs.asdict(self, recurse=False)
        fields["step"] = attrs.asdict(self.step)
        fields["hearts"] = self.step.hearts
        fields["period_ms"] = self.step.period_ms
        fields["good"] = self.good
        fields["beats_percent"] = self.beats_percent
        fields["fleet_behind"] = self.fleet_behind
        fields["verdict"] = self.verdict
        return fields


def summarise(
    monitor: str,
    step: Step,
    beats: Sequence[BeatReport],
    *,
    fleet_cpu_seconds: float = 0.0,
    fleet_rss_kib: float | None = None,
    fleet_fds: float | None = None,
    fleet_pings: int = 0,
    fleet_skipped_pings: int = 0,
) -> StepResult:
    """Sum up the beat reports (:class:`~greenheart.bench.lines.BeatReport`) of a step's hold.

    ``beats`` starts with the beat before the hold, which only marks the start of the
    clock and of the CPU count.
    """
    if len(beats) < 2:
        raise ValueError("a hold needs the beat before it and at least one more")
    first, held = beats[0], beats[1:]
    seconds = held[-1].at - first.at
    monitor_cpu = held[-1].cpu - first.cpu
    answers = sum(beat.on_time + beat.late for beat in held)
    on_time = sum(beat.on_time for beat in held)
    round_trips = [rtt for beat in held for rtt in beat.rtt_ms]
    maxima = [beat.rtt_max_ms for beat in held if beat.rtt_max_ms is not None]
    rounds = [beat.round_ms for beat in held if beat.round_ms is not None]
    return StepResult(
        monitor=monitor,
        step=step,
        settled=True,
        beats=len(held),
        seconds=seconds,
        beats_asked=seconds / (step.period_ms / 1000),
        pongs_per_second=answers / seconds if seconds > 0 else 0.0,
        on_time_percent=min(100.0, 100.0 * on_time / (step.hearts * len(held))),
        late_pongs=sum(beat.late for beat in held),
        bad_pongs=sum(beat.bad for beat in held),
        false_failures=sum(beat.failed for beat in held),
        max_on_probation=max(beat.on_probation for beat in held),
        min_responded=min(beat.responded for beat in held),
        unjudged_beats=sum(not beat.judged for beat in held),
        rtt_p50_ms=percentile(round_trips, 0.5),
        rtt_p99_ms=percentile(round_trips, 0.99),
        rtt_max_ms=max(maxima, default=None),
        round_p50_ms=percentile(rounds, 0.5),
        round_p99_ms=percentile(rounds, 0.99),
        monitor_cpu_percent=100.0 * monitor_cpu / seconds if seconds > 0 else 0.0,
        monitor_us_per_pong=1e6 * monitor_cpu / answers if answers else None,
        fleet_cpu_percent=100.0 * fleet_cpu_seconds / seconds if seconds > 0 else 0.0,
        fleet_rss_kib_per_heart=None if fleet_rss_kib is None else fleet_rss_kib / step.hearts,
        fleet_fds_per_heart=None if fleet_fds is None else fleet_fds / step.hearts,
        fleet_pings=fleet_pings,
        fleet_skipped_pings=fleet_skipped_pings,
        ping_lag_p99_ms=percentile([beat.lag_ms or 0.0 for beat in held], 0.99),
    )


def run_again(result: StepResult, runs: int) -> bool:
    """Whether a step that has been run ``runs`` times is to be run once more: it went bad
    because its fleet fell behind, and has not had its :data:`FLEET_RETRIES` yet."""
    return not result.good and result.fleet_behind and runs <= FLEET_RETRIES


def unsettled(monitor: str, step: Step, note: str) -> StepResult:
    return StepResult(monitor=monitor, step=step, settled=False, note=note)


def capacity(results: Iterable[StepResult]) -> StepResult | None:
    """The last good step of a ramp, in the order run, before its first bad one."""
    last_good = None
    for result in results:
        if not result.good:
            break
        last_good = result
    return last_good


def ramp_goes_on(results: Sequence[StepResult]) -> bool:
    """True until a step of the ramp was bad."""
    return all(result.good for result in results)
