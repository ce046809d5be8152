"""How simulated hearts misbehave: seeded, so a run can be repeated exactly.

Every random choice is a pure function of the seed, the heart's serial number and
the ping's number (a counter-based generator, splitmix64), not a draw from a shared
stream. So a heart decides the same way whatever the timing, and whatever the
other hearts do: two runs with the same seed drop and delay the same pongs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import attrs

_MASK = (1 << 64) - 1
_UNIT = 2.0**-53

# The independent streams of draws, one per kind of decision.
_LOSS, _DELAY, _SLOW, _RECONNECT = 1, 2, 3, 4


def _mix(value: int) -> int:
    """splitmix64's finaliser: a 64-bit integer scrambled into another."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def uniform(seed: int, stream: int, heart: int, ping: int) -> float:
    """A number in [0, 1), the same for the same arguments, independent for different ones."""
    return (_mix(_mix(_mix(seed ^ (stream << 56)) ^ heart) ^ ping) >> 11) * _UNIT


_DELAY_SYNTAX = re.compile(r"^(fixed|uniform|exp):([0-9.]+)(?::([0-9.]+))?$")


@attrs.frozen
class Delay:
    """A reply delay in milliseconds: ``fixed``, ``uniform`` between two bounds, or ``exp``
    (exponential) with a mean."""

    kind: str = attrs.field(validator=attrs.validators.in_({"fixed", "uniform", "exp"}))
    #: the delay (fixed), the lower bound (uniform) or the mean (exp), in ms
    a: float = attrs.field(converter=float, validator=attrs.validators.ge(0))
    #: the upper bound (uniform), in ms
    b: float = attrs.field(default=0.0, converter=float, validator=attrs.validators.ge(0))

    def __attrs_post_init__(self) -> None:
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError(f"uniform delay bounds are reversed: {self.a} > {self.b}")

    @classmethod
    def parse(cls, text: str) -> Delay:
        """``fixed:MS``, ``uniform:LOW:HIGH`` or ``exp:MEAN``."""
        match = _DELAY_SYNTAX.match(text)
        if not match or (match[1] == "uniform") != (match[3] is not None):
            raise ValueError(f"a delay is fixed:MS, uniform:LOW:HIGH or exp:MEAN, not {text!r}")
        return cls(match[1], match[2], match[3] or 0.0)

    @property
    def mean(self) -> float:
        """The mean delay in ms."""
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def seconds(self, u: float) -> float:
        """The delay, in seconds, at quantile ``u`` of the distribution."""
        if self.kind == "fixed":
            ms = self.a
        elif self.kind == "uniform":
            ms = self.a + (self.b - self.a) * u
        else:
            ms = -self.a * math.log1p(-u)
        return ms / 1000.0


_probability = [attrs.validators.ge(0.0), attrs.validators.le(1.0)]
_positive_number = attrs.validators.gt(0.0)


@attrs.frozen
class Behaviour:
    """How every heart of a fleet answers a ping: after ``delay``, losing a ``loss``
    fraction of its pongs; a ``slow_fraction`` of the hearts use ``slow_delay`` instead."""

    seed: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))
    delay: Delay | None = None
    loss: float = attrs.field(default=0.0, converter=float, validator=_probability)
    slow_fraction: float = attrs.field(default=0.0, converter=float, validator=_probability)
    slow_delay: Delay | None = None

    def __attrs_post_init__(self) -> None:
        if self.slow_fraction and self.slow_delay is None:
            raise ValueError("slow hearts need a slow_delay")

    @property
    def prompt(self) -> bool:
        """True when every heart answers every ping at once."""
        return self.delay is None and not self.loss and not self.slow_fraction

    def is_slow(self, heart: int) -> bool:
        return uniform(self.seed, _SLOW, heart, 0) < self.slow_fraction

    def decide(self, heart: int, ping: int) -> float | None:
        """Seconds heart number ``heart`` waits before answering ping number ``ping``; None
        if it drops the ping."""
        if self.loss and uniform(self.seed, _LOSS, heart, ping) < self.loss:
            return None
        delay = self.slow_delay if self.slow_fraction and self.is_slow(heart) else self.delay
        if delay is None:
            return 0.0
        return delay.seconds(uniform(self.seed, _DELAY, heart, ping))


@attrs.frozen
class Reconnect:
    """How a simulated heart reconnects once its monitor went away, as a real one does.

    Every ``interval_ms`` (libzmq's default, 100 ms, which a :class:`~greenheart.Heart` uses);
    with ``max_ms``, each failed attempt doubles the wait up to that (libzmq's backoff). Each
    heart's interval is spread by up to ``jitter`` of itself, seeded per heart, so that a fleet
    need not retry in lockstep.
    """

    interval_ms: float = attrs.field(default=100.0, converter=float, validator=_positive_number)
    #: 0 for no backoff
    max_ms: float = attrs.field(default=0.0, converter=float, validator=attrs.validators.ge(0))
    jitter: float = attrs.field(default=0.0, converter=float, validator=_probability)

    def interval(self, seed: int, heart: int) -> int:
        """Heart number ``heart``'s reconnect interval, in whole milliseconds."""
        spread = 1 + self.jitter * uniform(seed, _RECONNECT, heart, 0)
        return max(1, round(self.interval_ms * spread))

    def interval_max(self, seed: int, heart: int) -> int:
        """Heart number ``heart``'s longest wait (``ZMQ_RECONNECT_IVL_MAX``); 0 for none."""
        return max(round(self.max_ms), self.interval(seed, heart)) if self.max_ms else 0


# -- the life of a fleet: deaths, revivals, churn, flapping ------------------------------------

_positive = attrs.validators.gt(0)
_non_negative = attrs.validators.ge(0)


@attrs.frozen
class Die:
    """At ``at`` seconds after the fleet starts, ``count`` hearts die (chosen by the seed)."""

    at: float = attrs.field(converter=float, validator=_non_negative)
    count: int = attrs.field(validator=_positive)


@attrs.frozen
class Revive:
    """At ``at`` seconds, ``count`` dead hearts come back under their identities, longest dead
    first."""

    at: float = attrs.field(converter=float, validator=_non_negative)
    count: int = attrs.field(validator=_positive)


@attrs.frozen
class Churn:
    """Every ``every`` seconds, ``count`` hearts leave the fleet and ``count`` new ones join."""

    every: float = attrs.field(converter=float, validator=_positive)
    count: int = attrs.field(validator=_positive)


@attrs.frozen
class Flap:
    """``count`` hearts (chosen by the seed) answer for ``up`` seconds, then go silent for
    ``down`` seconds, again and again. Their connections stay up, as with a stalled process."""

    count: int = attrs.field(validator=_positive)
    down: float = attrs.field(converter=float, validator=_positive)
    up: float = attrs.field(converter=float, validator=_positive)


#: what a scenario does to a fleet, at its times
Action = Die | Revive | Churn | Flap


def as_scenario(actions: Iterable[Action]) -> tuple[Action, ...]:
    """A scenario: its actions, as a tuple (the converter of a fleet's ``scenario``)."""
    return tuple(actions)


#: the validator of a fleet's ``scenario`` (and simulated engines'): nothing but actions
SCENARIO = attrs.validators.deep_iterable(attrs.validators.instance_of((Die, Revive, Churn, Flap)))


def parse_action(kind: str, text: str) -> Action:
    """An action from the command line: ``die``/``revive`` ``T:N``, ``churn`` ``EVERY:K``,
    ``flap`` ``N:DOWN:UP`` (times in seconds)."""
    fields = text.split(":")
    try:
        if kind == "flap" and len(fields) == 3:
            return Flap(int(fields[0]), float(fields[1]), float(fields[2]))
        timed: dict[str, type[Die | Revive]] = {"die": Die, "revive": Revive}
        if kind in timed and len(fields) == 2:
            return timed[kind](float(fields[0]), int(fields[1]))
        if kind == "churn" and len(fields) == 2:
            return Churn(float(fields[0]), int(fields[1]))
        raise ValueError
    except (ValueError, TypeError):
        syntax = {"die": "T:N", "revive": "T:N", "churn": "EVERY:K", "flap": "N:DOWN:UP"}[kind]
        raise ValueError(f"--{kind} takes {syntax}, not {text!r}") from None
