"""How the pure tier's tests drive the ledger and its recording, in one place.

The ledger and the recording are about to be restructured: the connection book's calls may
become the ledger's own, taking the time, and the recording ledger an observer of a plain
ledger. The tests that pin the core's behaviour before that drive it only through these
functions, so that adapting them is a change here; what they assert on is what comes out
(:class:`~greenheart.core.ledger.Beat`, failures and false failures, counters, replay
outcomes). Every function takes the time, even where today's call does not need it.

And :func:`examples`: the example counts of the tests that set their own, scaled with the
hypothesis profile that ``GREENHEART_HYPOTHESIS`` loaded (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import attrs
from hypothesis import settings

from greenheart.core.failures import Failure
from greenheart.core.ledger import ANSWERS, Beat, Counters, Ledger, Pong, Rules
from greenheart.core.recording import Event, Header, Op, RecordingLedger, Writer, read
from greenheart.core.replay import Outcome, replay

#: the examples hypothesis runs by default (its ``max_examples``), which the suite profile keeps
DEFAULT_EXAMPLES = 100


def examples(normal: int) -> int:
    """``normal`` examples under the suite's profile, and as many times more as the loaded
    profile runs more than hypothesis's default (a hundred times under ``stress``)."""
    return max(normal, normal * settings.default.max_examples // DEFAULT_EXAMPLES)


# -- the ledger --------------------------------------------------------------------------------


@attrs.define
class Clock:
    """The clock a recording ledger dates the calls that carry no time with."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def ledger(rules: Rules | None = None, tic: float = 0.0) -> Ledger:
    """A ledger whose first round opens at ``tic``."""
    return Ledger(tic=tic, rules=rules if rules is not None else Rules())


def _at(ledger: Ledger, now: float) -> None:
    if isinstance(ledger, RecordingLedger) and isinstance(ledger.clock, Clock):
        ledger.clock.now = now


def connect(ledger: Ledger, fd: int, now: float) -> None:
    """A connection was accepted on descriptor ``fd`` at ``now``."""
    _at(ledger, now)
    ledger.connections.accepted(fd)


#: which ping an answer echoes, by name
ECHOES = {"current": 0, "previous": 1, "upcoming": 2, "none": 3}


def answer(
    ledger: Ledger,
    heart: bytes,
    now: float,
    fd: int | None = None,
    echo: str = "current",
    key: object = None,
) -> Pong:
    """``heart`` echoes a ping (the current one, by default) at ``now``, on the connection on
    ``fd`` if given (an answer ties it to that connection, as the monitor's driver does), sent
    with ``key`` if the transport authenticates (CURVE)."""
    _at(ledger, now)
    pong = ledger.pong(heart, ledger.payload_of(ECHOES[echo]), now, key)
    if fd is not None and pong.kind in ANSWERS and not ledger.connections.tied(heart, fd):
        ledger.connections.answered(heart, fd)
    return pong


def leftover(ledger: Ledger, heart: bytes, now: float) -> Pong:
    """A message ``heart`` sent before its connection closed, read at ``now``."""
    _at(ledger, now)
    return ledger.stale(heart)


def close(ledger: Ledger, fd: int, now: float) -> tuple[Failure, ...]:
    """The connection on ``fd`` closed at ``now``: the failures that made."""
    _at(ledger, now)
    return ledger.closed(fd, now)


def publish(ledger: Ledger, now: float) -> None:
    """The next ping leaves at ``now``, before the beat closes the round."""
    _at(ledger, now)
    ledger.publish(now)


def beat(ledger: Ledger, now: float, **options: object) -> Beat:
    """The beat at ``now``; ``options`` (judge, lag, cpu_share) as the ledger takes them, and
    its defaults where not given."""
    _at(ledger, now)
    return ledger.beat(now, **options)  # type: ignore[arg-type]


def counters(ledger: Ledger) -> Counters:
    return ledger.counters


def failures(ledger: Ledger) -> list[Failure]:
    """Every failure the ledger made, in order (certificates of closed connections too)."""
    return list(ledger.failures)


# -- the recording -----------------------------------------------------------------------------


def recording(rules: Rules, period: float = 1.0) -> tuple[Ledger, Callable[[], bytes]]:
    """A ledger whose inputs are recorded, and what hands out the recording's bytes so far
    (as a monitor writes its file: call it at every beat)."""
    writer = Writer(Header(period=period * 1000, rules=rules, origin=0.0))
    recorder = RecordingLedger(tic=0.0, rules=rules, writer=writer, clock=Clock())
    return recorder, writer.take


def header_only(rules: Rules, period: float = 1.0) -> bytes:
    """The bytes of a recording that holds its header and nothing else."""
    _, take = recording(rules, period)
    return take()


def events(data: bytes) -> list[Event]:
    return read(data).events


def replayed(recorded: bytes | Sequence[Event], rules: Rules) -> Outcome:
    """What a replay of a recording (its bytes, or its events) under ``rules`` decided."""
    return replay(events(recorded) if isinstance(recorded, bytes) else recorded, rules)


def beats_in(recorded: Iterable[Event]) -> list[tuple[float, bool]]:
    """The beats of a recording's events: (time, judged)."""
    return [(event[1], bool(event[3])) for event in recorded if event[0] == Op.BEAT]


def answers_in(recorded: Iterable[Event], heart: bytes) -> list[float]:
    """When ``heart``'s answers (or what it echoed, whatever it was) came in."""
    return [event[1] for event in recorded if event[0] == Op.PONG and event[2] == heart]
