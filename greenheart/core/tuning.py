"""Settings from targets: what each setting would have cost on a recording, and which to choose.

For each :class:`Setting` (a period and the :class:`~greenheart.core.rules.Rules`),
:func:`evaluate` replays the recording (resampled, for another period: see
:mod:`greenheart.core.replay`) twice: as it was, for the false failures the setting would have
made, and with a plan of deaths injected, for how long it takes to notice a hang and a crash.
A crash with ``fail_on_disconnect`` is noticed when its connection closes, whatever the rest of
the setting, so what that would give is measured once per period (:class:`Tape`), beside each
setting's own. :func:`evaluate_all` does it for a whole grid (:func:`grid`) with one plan of
deaths, and :func:`choose` names the setting that meets a detection target and a
false-failure target with the fastest detection, or says that none does and which comes
closest.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import attrs

from greenheart.core.errors import UsageError
from greenheart.core.inputs import Input
from greenheart.core.phi import PhiAccrual
from greenheart.core.recording import Header, Recording
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
from greenheart.core.rules import Rules
from greenheart.core.silence import MassSilence
from greenheart.core.stats import percentile

DAY = 86_400.0

#: the grid ``greenheart tune`` tries unless told otherwise
MAX_MISSES = (1, 2, 3, 4, 6, 8, 12)
PHI_THRESHOLDS = (3.0, 5.0, 8.0, 12.0)
#: deaths injected into every replay, half hangs and half crashes
DEATHS = 40


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 < value < math.inf:
        raise ValueError(f"{attribute.name} must be a positive number of ms, not {value!r}")


@attrs.frozen
class Setting:
    """A period (ms) and the rules a monitor would judge with."""

    period: float = attrs.field(converter=float, validator=_positive)
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


@attrs.frozen
class FalseFailureRate:
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
    #: a crash, had the setting had ``fail_on_disconnect`` (the same as ``crash`` if it has)
    crash_on_disconnect: Detection
    false_failures: FalseFailureRate

    def detect(self) -> float | None:
        """The slowest detection of a death, hang or crash; None if one went unnoticed."""
        worst = [self.hang.worst, self.crash.worst]
        if None in worst or not (self.hang.times or self.crash.times):
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
            "hang": detection(self.hang),
            "crash": detection(self.crash),
            "crash_fail_on_disconnect": detection(self.crash_on_disconnect),
            "false_failures": mistakes.count,
            "false_failures_per_heart_day": _round(mistakes.per_heart_day),
            "false_failures_per_heart_day_95": _round(mistakes.per_heart_day_bound),
            "false_failure_median_s": _round(percentile(mistakes.durations, 0.5)),
            "false_failure_max_s": _round(max(mistakes.durations, default=None)),
        }


def _round(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else round(value, 4)


def grid(
    period: float,
    *,
    max_misses: Sequence[int] = (),
    phi: Sequence[float] = (),
    phi_pauses: Sequence[float] = (0.0,),
    silences: Sequence[MassSilence | None] = (),
    fail_on_disconnect: bool = False,
    base: Rules,
) -> list[Setting]:
    """Every combination: each miss count and each phi threshold with each pause (seconds),
    under each mass-silence rule (the base rules' own if none is given); every other setting
    (``max_hearts``, phi's spread and window) as in ``base``."""
    base = attrs.evolve(base, fail_on_disconnect=fail_on_disconnect)
    rules = [attrs.evolve(base, max_misses=n, phi=None) for n in max_misses]
    base_phi = base.phi or PhiAccrual()
    rules += [
        attrs.evolve(base, phi=attrs.evolve(base_phi, threshold=threshold, acceptable_pause=pause))
        for threshold in phi
        for pause in phi_pauses
    ]
    silence_rules = list(silences) or [base.mass_silence]
    return [
        Setting(period, attrs.evolve(rule, mass_silence=silence))
        for silence in silence_rules
        for rule in rules
    ]


def settings_for(
    header: Header,
    *,
    periods: Sequence[float] = (),
    max_misses: Sequence[int] = MAX_MISSES,
    phi: Sequence[float] = PHI_THRESHOLDS,
    phi_pauses_ms: Sequence[float] | None = None,
    shares: Sequence[float] = (),
    holds: Sequence[int] = (),
    without_mass_silence: bool = False,
    fail_on_disconnect: bool = False,
) -> list[Setting]:
    """The grid ``greenheart tune`` tries on a recording with ``header``: at each of
    ``periods`` (ms; the recorded one by default), every miss count and every phi threshold
    with each pause (ms; 0 and one period by default), under the recorded mass-silence rule
    with each of ``shares`` and ``holds`` (the rule's own by default), and without it too if
    asked; everything else as recorded."""
    recorded = header.rules
    base_rule = recorded.mass_silence or MassSilence()
    silences: list[MassSilence | None] = [recorded.mass_silence]
    if shares or holds:
        silences = [
            attrs.evolve(base_rule, share=share, hold=hold)
            for share in shares or [base_rule.share]
            for hold in holds or [base_rule.hold]
        ]
    if without_mass_silence and None not in silences:
        silences.append(None)
    tried = []
    for period in periods or [header.period]:
        pauses = phi_pauses_ms if phi_pauses_ms is not None else [0.0, period]
        tried += grid(
            period,
            max_misses=max_misses,
            phi=phi,
            phi_pauses=[pause / 1000 for pause in pauses],
            silences=silences,
            fail_on_disconnect=fail_on_disconnect,
            base=recorded,
        )
    return tried


def slowest_detection(setting: Setting) -> float:
    """About the longest a death may take ``setting`` to notice, in seconds: room to leave
    between the last death planned and the end of the recording."""
    period = setting.period / 1000
    if setting.rules.phi is None:
        return (setting.rules.max_misses + 3) * period
    return 20 * period + setting.rules.phi.acceptable_pause


@attrs.frozen
class Tape:
    """A recording's inputs at one period, clean and with deaths injected, and how long the
    crashes take to notice with ``fail_on_disconnect``: when their connections close, whatever
    the other rules (they are replayed under the first setting tried at this period)."""

    period: float
    clean: list[Input]
    dead: list[Input]
    made: list[Injection]
    crash_on_disconnect: Detection


def tape(
    inputs: list[Input],
    recorded_period: float,
    period: float,
    deaths: list[Injection],
    rules: Rules,
) -> Tape:
    """``inputs`` at ``period`` with ``deaths`` injected."""
    clean = inputs if period == recorded_period else resample(inputs, period)
    dead, made = inject(clean, deaths)
    on_disconnect = replay(dead, attrs.evolve(rules, fail_on_disconnect=True))
    return Tape(period, clean, dead, made, detections(on_disconnect, made, CRASH))


def plan_deaths(
    inputs: Sequence[Input], count: int, seed: int, longest: float, period: float
) -> list[Injection]:
    """Deaths for every setting to notice, from a tenth of the recording in, and at least
    ``longest`` seconds (the slowest detection to allow for) before its end, each of a heart
    that answered the ping before and the ping after (``period`` in ms)."""
    if not inputs:
        return []
    duration = inputs[-1].at - inputs[0].at
    return plan(
        inputs,
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
    mistakes = FalseFailureRate(
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


def evaluate_all(
    recording: Recording, settings: Sequence[Setting], *, deaths: int = DEATHS, seed: int = 0
) -> list[Result]:
    """Every setting replayed on ``recording``, with the same ``deaths`` (half hangs, half
    crashes) planned for all of them (``seed`` chooses them)."""
    if not recording.beat_count():
        raise UsageError("the recording holds no beat: nothing to replay")
    if not settings:
        raise UsageError("no setting to try")
    longest = max(map(slowest_detection, settings))
    header = recording.header
    planned = plan_deaths(recording.inputs, deaths, seed, longest, header.period)
    if not planned:
        raise UsageError(_no_deaths(recording, settings))
    tapes: dict[float, Tape] = {}
    results = []
    for setting in settings:
        if setting.period not in tapes:
            tapes[setting.period] = tape(
                recording.inputs, header.period, setting.period, planned, setting.rules
            )
        results.append(evaluate(setting, tapes[setting.period]))
    return results


def _no_deaths(recording: Recording, settings: Sequence[Setting]) -> str:
    """Why no death could be planned: the recording is too short for the slowest setting to
    notice one, or no heart answered steadily."""
    slowest = max(settings, key=slowest_detection)
    needed = slowest_detection(slowest) + min(5.0, recording.duration / 10)
    if recording.duration > needed:
        return "no heart answered steadily in the recording: no death to inject"
    return (
        f"the recording covers {recording.duration:.0f} s, too short to inject a death: the"
        f" slowest setting tried ({slowest.rule} at {slowest.period:g} ms) may take"
        f" {slowest_detection(slowest):.0f} s to notice one; record longer, or try shorter"
        " periods and fewer misses"
    )


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``5s``, ``500ms``, ``2m``: seconds."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|min|m|h)?\s*", text)
    if not match:
        raise ValueError(f"a duration such as 5s or 500ms, not {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@attrs.frozen
class Rate:
    """False failures per day, per heart or for the recorded cluster."""

    per_day: float
    per_heart: bool
    text: str


def parse_rate(text: str) -> Rate:
    """``1/day``, ``2/hour`` (for the cluster), ``0.01/heart/day``."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*/\s*(heart\s*/\s*)?(day|hour|h|d)\s*", text)
    if not match:
        raise ValueError(f"a rate such as 1/day, 2/hour or 0.1/heart/day, not {text!r}")
    scale = 24.0 if match.group(3) in ("hour", "h") else 1.0
    return Rate(float(match.group(1)) * scale, bool(match.group(2)), text.strip())


@attrs.frozen
class Targets:
    #: seconds within which every death must be noticed
    detect: float | None = None
    #: false failures per day, per heart or for the recorded cluster
    false_failures: float | None = None
    per_heart: bool = False

    @classmethod
    def of(cls, detect: float | None, false_failures: Rate | None) -> Targets:
        if false_failures is None:
            return cls(detect)
        return cls(detect, false_failures.per_day, false_failures.per_heart)


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
        value = result.detect()
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
