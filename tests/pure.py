"""How the pure tier's tests drive the ledger and its recording, in one place.

The tests that pin the core's behaviour drive it through these functions, so that a change of
the ledger's calls is a change here; what they assert on is what comes out
(:class:`~greenheart.core.values.Beat`, failures and false failures, counters, replays).

And :func:`examples`: the example counts of the tests that set their own, scaled with the
hypothesis profile that ``GREENHEART_HYPOTHESIS`` loaded (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from hypothesis import settings

from greenheart.core.failures import Failure
from greenheart.core.inputs import Echoed, Input, RoundClosed
from greenheart.core.ledger import Ledger
from greenheart.core.recording import Header, Writer, read
from greenheart.core.replay import Replayed, replay
from greenheart.core.rounds import Echo
from greenheart.core.rules import Rules
from greenheart.core.values import ANSWERS, Beat, Counters, Pong
from greenheart.core.wire import LEAVE

#: the examples hypothesis runs by default (its ``max_examples``), which the suite profile keeps
DEFAULT_EXAMPLES = 100


def examples(normal: int) -> int:
    """``normal`` examples under the suite's profile, and as many times more as the loaded
    profile runs more than hypothesis's default (a hundred times under ``stress``)."""
    return max(normal, normal * settings.default.max_examples // DEFAULT_EXAMPLES)


# -- the ledger --------------------------------------------------------------------------------


def ledger(rules: Rules | None = None, tic: float = 0.0) -> Ledger:
    """A ledger whose first round opens at ``tic``."""
    return Ledger(tic=tic, rules=rules if rules is not None else Rules())


def connect(ledger: Ledger, fd: int, now: float) -> None:
    """A connection was accepted on descriptor ``fd`` at ``now``."""
    ledger.accepted(fd, now)


#: which ping an answer echoes, by name
ECHOES = {
    "current": Echo.CURRENT,
    "previous": Echo.PREVIOUS,
    "upcoming": Echo.UPCOMING,
    "none": Echo.OTHER,
}


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
    pong = ledger.echoed(heart, ECHOES[echo], now, key)
    if fd is not None and pong.kind in ANSWERS and not ledger.connections.tied(heart, fd):
        ledger.tie(heart, fd, now)
    return pong


def leave(ledger: Ledger, heart: bytes, now: float, fd: int = -1, key: object = None) -> Pong:
    """``heart`` says it stops cleanly at ``now``, on the connection on ``fd`` (-1: not known),
    sent with ``key``: the wire's leave, as the monitor's driver hands it in."""
    return ledger.pong(heart, LEAVE, now, key, fd)


def leftover(ledger: Ledger, heart: bytes, now: float, payload: bytes = b"", fd: int = -1) -> Pong:
    """A message ``heart`` sent before its connection (on ``fd``) closed, read at ``now``: an
    answer, or ``payload``."""
    return ledger.stale(heart, now, payload, None, fd)


def close(ledger: Ledger, fd: int, now: float) -> tuple[Failure, ...]:
    """The connection on ``fd`` closed at ``now``: the failures that made."""
    return ledger.closed(fd, now)


def publish(ledger: Ledger, now: float) -> None:
    """The next ping leaves at ``now``, before the beat closes the round."""
    ledger.publish(now)


def beat(
    ledger: Ledger, now: float, judge: bool = True, lag: float = 0.0, cpu_share: float | None = None
) -> Beat:
    """The beat at ``now``, judged or not, and how late it came and the driver's CPU share."""
    return ledger.beat(now, judge=judge, lag=lag, cpu_share=cpu_share)


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
    recorder = Ledger(tic=0.0, rules=rules)
    recorder.observe(writer.write)
    return recorder, writer.take


def header_only(rules: Rules, period: float = 1.0) -> bytes:
    """The bytes of a recording that holds its header and nothing else."""
    _, take = recording(rules, period)
    return take()


def inputs(data: bytes) -> list[Input]:
    return read(data).inputs


def replayed(recorded: bytes | Sequence[Input], rules: Rules) -> Replayed:
    """What a replay of a recording (its bytes, or its events) under ``rules`` decided."""
    return replay(inputs(recorded) if isinstance(recorded, bytes) else recorded, rules)


def beats_in(recorded: Iterable[Input]) -> list[tuple[float, bool]]:
    """The beats of a recording's inputs: (time, judged)."""
    return [(event.at, event.judged) for event in recorded if isinstance(event, RoundClosed)]


def answers_in(recorded: Iterable[Input], heart: bytes) -> list[float]:
    """When ``heart``'s answers (or what it echoed, whatever it was) came in."""
    return [e.at for e in recorded if isinstance(e, Echoed) and e.heart == heart]
