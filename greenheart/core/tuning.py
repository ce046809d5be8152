"""Settings from targets: what each setting would have cost on a recording, and which to choose.

For each :class:`Setting` (a period and the :class:`~greenheart.core.ledger.Rules`),
:func:`evaluate` replays the recording (resampled, for another period: see
:mod:`greenheart.core.replay`) twice: as it was, for the false failures the setting would have
made, and with a plan of deaths injected, for how long it takes to notice a hang and a crash.
A crash with ``fail_on_disconnect`` is noticed when its connection closes, whatever the rest of
the setting, so it is measured once per period.

:func:`choose` then names the setting that meets a detection target and a false-failure target
with the fastest detection, or says that none does and which comes closest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from greenheart.core.ledger import Rules
from greenheart.core.recording import Event
from greenheart.core.replay import (
    CRASH,
    HANG,
    Detection,
    Injection,
    detections,
    inject,
    plan,
    replay,
    resample,
)

DAY = 86_400.0


@attrs.frozen
class Setting:
    """A period (ms) and the rules a monitor would judge with."""

    period: float
    rules: Rules

    @property
    def rule(self) -> str:
        """The rule, as an option would set it: ``misses=2``, ``phi=8 pause=100ms``."""
        phi = self.rules.phi
        if phi is None:
            return f"misses={self.rules.max_misses}"
        return f"phi={phi.threshold:g} pause={phi.acceptable_pause * 1000:g}ms"

    @property
    def silence(self) -> str:
        rule = self.rules.mass_silence
        return "off" if rule is None else f"{rule.share:g}/{rule.hold}"

    def options(self) -> str:
        """The ``greenheart monitor`` options for this setting."""
        words = [f"--period {self.period:g}"]
        phi = self.rules.phi
        if phi is None:
            words.append(f"--max-misses {self.rules.max_misses}")
        else:
            words.append(f"--phi {phi.threshold:g}")
            if phi.acceptable_pause:
                words.append(f"--phi-pause {phi.acceptable_pause * 1000:g}")
        rule = self.rules.mass_silence
        if rule is None:
            words.append("--no-mass-silence")
        else:
            words.append(f"--mass-silence-share {rule.share:g} --mass-silence-hold {rule.hold}")
        return " ".join(words)


@attrs.frozen
class FalseFailures:
    """The false failures a setting made on a recording."""

    count: int
    #: heart-seconds the recording covers
    exposure: float
    #: how long each lasted, in seconds
    durations: tuple[float, ...]
    #: hearts known at once, at most
    hearts: int

    @property
    def per_heart_day(self) -> float:
        return self.count / (self.exposure / DAY) if self.exposure > 0 else math.inf

    @property
    def per_heart_day_bound(self) -> float:
        """The rate's 95% upper bound (a Poisson count): what a short recording can promise."""
        if self.exposure <= 0:
            return math.inf
        return poisson_upper(self.count) / (self.exposure / DAY)

    def per_day(self, per_heart: bool) -> float:
        """The rate, per heart or for the recorded cluster (its most hearts), per day."""
        return self.per_heart_day * (1 if per_heart else self.hearts)


def poisson_upper(count: int, z: float = 1.645) -> float:
    """The one-sided 95% upper bound of a Poisson mean after ``count`` events (Wilson and
    Hilferty's approximation; 3.0 for none, the rule of three)."""
    if count == 0:
        return 3.0
    n = count + 1
    return n * (1 - 1 / (9 * n) + z / (3 * math.sqrt(n))) ** 3


@attrs.frozen
class Result:
    setting: Setting
    hang: Detection
    crash: Detection
    #: a crash with ``fail_on_disconnect``
    crash_on_disconnect: Detection
    false_failures: FalseFailures

    def detect(self, fail_on_disconnect: bool) -> float | None:
        """The slowest detection of a death, hang or crash; None if one went unnoticed."""
        crash = self.crash_on_disconnect if fail_on_disconnect else self.crash
        worst = [self.hang.worst, crash.worst]
        if None in worst or not (self.hang.times or crash.times):
            return None
        return max(value for value in worst if value is not None)

    def as_json(self) -> dict[str, Any]:
        def detection(value: Detection) -> dict[str, Any]:
            return {
                "median_s": _round(value.median),
                "worst_s": _round(value.worst),
                "deaths": len(value.times) + value.missed,
                "missed": value.missed,
            }

        mistakes = self.false_failures
        return {
            "period_ms": self.setting.period,
            "rule": self.setting.rule,
            "mass_silence": self.setting.silence,
            "options": self.setting.options(),
            "hang": detection(self.hang),
            "crash": detection(self.crash),
            "crash_fail_on_disconnect": detection(self.crash_on_disconnect),
            "false_failures": mistakes.count,
            "false_failures_per_heart_day": _round(mistakes.per_heart_day),
            "false_failures_per_heart_day_95": _round(mistakes.per_heart_day_bound),
            "false_failure_median_s": _round(_median(mistakes.durations)),
            "false_failure_max_s": _round(max(mistakes.durations, default=None)),
        }


def _round(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else round(value, 4)


def _median(values: Sequence[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def grid(
    period: float,
    *,
    max_misses: Sequence[int] = (),
    phi: Sequence[float] = (),
    phi_pauses: Sequence[float] = (0.0,),
    silences: Sequence[Any] = (),
    base: Rules,
) -> list[Setting]:
    """Every combination: each miss count and each phi threshold with each pause (seconds),
    under each mass-silence rule (the base rules' own if none is given)."""
    rules: list[Rules] = [
        attrs.evolve(base, max_misses=n, phi=None, fail_on_disconnect=False) for n in max_misses
    ]
    from greenheart.core.phi import PhiAccrual

    base_phi = base.phi or PhiAccrual()
    rules += [
        attrs.evolve(
            base,
            phi=attrs.evolve(base_phi, threshold=threshold, acceptable_pause=pause),
            fail_on_disconnect=False,
        )
        for threshold in phi
        for pause in phi_pauses
    ]
    silence_rules = list(silences) or [base.mass_silence]
    return [
        Setting(period, attrs.evolve(rule, mass_silence=silence))
        for silence in silence_rules
        for rule in rules
    ]


@attrs.define
class Tape:
    """A recording's events at one period, clean and with deaths injected."""

    period: float
    clean: list[Event]
    dead: list[Event]
    made: list[Injection]
    crash_on_disconnect: Detection | None = None


def tape(
    events: list[Event], recorded_period: float, period: float, deaths: list[Injection]
) -> Tape:
    clean = events if period == recorded_period else resample(events, period)
    dead, made = inject(clean, deaths)
    return Tape(period, clean, dead, made)


def plan_deaths(
    events: Sequence[Event], count: int, seed: int, longest: float, period: float
) -> list[Injection]:
    """Deaths for every setting to notice, from a tenth of the recording in, and at least
    ``longest`` seconds (the slowest detection to allow for) before its end, each of a heart
    that answered the ping before and the ping after (``period`` in ms)."""
    if not events:
        return []
    duration = events[-1][1] - events[0][1]
    return plan(
        events,
        count,
        seed=seed,
        warmup=min(5.0, duration / 10),
        tail=longest,
        within=1.5 * period / 1000,
    )


def evaluate(setting: Setting, tape: Tape) -> Result:
    """What ``setting`` would have done on ``tape`` (at its period)."""
    clean = replay(tape.clean, setting.rules)
    dead = replay(tape.dead, setting.rules)
    if tape.crash_on_disconnect is None:
        on_disconnect = replay(tape.dead, attrs.evolve(setting.rules, fail_on_disconnect=True))
        tape.crash_on_disconnect = detections(on_disconnect, tape.made, CRASH)
    mistakes = FalseFailures(
        count=len(clean.false_failures),
        exposure=clean.exposure,
        durations=tuple(mistake.gone for mistake in clean.false_failures),
        hearts=clean.most_hearts,
    )
    return Result(
        setting,
        hang=detections(dead, tape.made, HANG),
        crash=detections(dead, tape.made, CRASH),
        crash_on_disconnect=tape.crash_on_disconnect,
        false_failures=mistakes,
    )


@attrs.frozen
class Targets:
    #: seconds within which every death must be noticed
    detect: float | None = None
    #: false failures per day, per heart or for the recorded cluster
    false_failures: float | None = None
    per_heart: bool = False
    fail_on_disconnect: bool = False


@attrs.frozen
class Choice:
    #: the setting that meets both targets with the fastest detection, if any does
    chosen: Result | None
    #: with none: the fastest within the false-failure target, and the one with the fewest
    #: false failures within the detection target
    fastest_quiet: Result | None = None
    quietest_fast: Result | None = None
    #: with none: the setting nearest both (the smallest worst ratio of measure to target)
    closest: Result | None = None
    #: which target the closest setting misses: "detect" or "false_failures"
    misses: str | None = None


def choose(results: Sequence[Result], targets: Targets) -> Choice:
    def detect(result: Result) -> float:
        value = result.detect(targets.fail_on_disconnect)
        return math.inf if value is None else value

    def rate(result: Result) -> float:
        return result.false_failures.per_day(targets.per_heart)

    def fast(result: Result) -> bool:
        return targets.detect is None or detect(result) <= targets.detect

    def quiet(result: Result) -> bool:
        return targets.false_failures is None or rate(result) <= targets.false_failures

    def order(result: Result) -> tuple[float, float]:
        return detect(result), rate(result)

    meeting = [result for result in results if fast(result) and quiet(result)]
    if meeting:
        return Choice(min(meeting, key=order))
    quiet_ones = [result for result in results if quiet(result)]
    fast_ones = [result for result in results if fast(result)]

    def ratios(result: Result) -> tuple[float, float]:
        d = detect(result) / targets.detect if targets.detect else 0.0
        f = 0.0
        if targets.false_failures is not None:
            f = rate(result) / targets.false_failures if targets.false_failures else math.inf
            f = f if rate(result) else 0.0
        return d, f

    closest = min(results, key=lambda result: max(ratios(result)), default=None)
    misses = None
    if closest is not None:
        d, _ = ratios(closest)
        misses = "detect" if d > 1 else "false_failures"
    return Choice(
        None,
        fastest_quiet=min(quiet_ones, key=order, default=None),
        quietest_fast=min(fast_ones, key=lambda r: (rate(r), detect(r)), default=None),
        closest=closest,
        misses=misses,
    )
