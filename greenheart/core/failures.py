"""Why a heart was failed, and which failures were mistakes.

Every failure comes with a :class:`Failure`, a certificate: its :class:`Cause` and the
evidence the monitor had when it decided (when the heart last answered, its round trips, its
misses and suspicion, whether its connection was up), with the monitor's own state on that
beat (how late it came, how much of the time its thread computed, how many hearts failed with
it). A reader can then tell a heart that died from a monitor that could not hear, and, by its
:class:`Diagnosis`, a crashed heart (restart it) from a hung one (kill it) from one whose host
is gone (replace it); and a heart that said it stopped cleanly from all three (nothing to do).

A heart failed for its silence whose identity answers again on the same connection (which
never closed, so its process never died) was failed by mistake: a :class:`FalseFailure`,
which carries how long the mistake lasted. With the detection time of a real death, these are
the three measures failure detectors are compared by (Chen, Toueg and Aguilera, "On the
quality of service of failure detectors", 2002): detection time, mistake rate and mistake
duration, counted here in production, not only in a benchmark.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, MutableSequence
from typing import Any

import attrs

from greenheart.core.transport import Keepalive
from greenheart.core.wire import display_id


class Cause(enum.Enum):
    """Why a heart was failed."""

    #: its connection closed (its process died), with ``fail_on_disconnect`` or while held
    DISCONNECTED = "disconnected"
    #: it missed more than ``max_misses`` beats in a row
    MISSED = "missed"
    #: its phi-accrual suspicion passed the threshold
    PHI = "phi"
    #: it was held as a suspect in a mass silence, and stayed silent for the whole hold
    HELD = "held"
    #: a heart the monitor knew before it restarted, not seen within the grace since
    RESTARTED = "restarted"
    #: it said it stops cleanly (:data:`~greenheart.core.wire.LEAVE`), on its own connection
    LEFT = "left"


class Diagnosis(enum.Enum):
    """What became of a failed heart, as far as its connection tells."""

    #: its connection closed: its kernel said its process died
    CRASHED = "crashed"
    #: silent while its connection stayed up: a blocked hub, a stopped or stuck process
    HUNG = "hung"
    #: silent, and its connection timed out (:mod:`greenheart.core.transport`): its host is
    #: gone, its link cut, or the network between partitioned
    UNREACHABLE = "unreachable"
    #: it said it stopped cleanly (a deploy, a scale-in, a shutdown): nothing to restart
    STOPPED = "stopped"


#: the causes that are a verdict on silence, which a heart can prove wrong by answering again
SILENCE = frozenset({Cause.MISSED, Cause.PHI, Cause.HELD})


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


@attrs.frozen
class Failure:
    """The certificate of one heart's failure; times in seconds on the monitor's clock."""

    heart: bytes
    cause: Cause
    #: when it was failed
    at: float
    #: the number of the last beat closed when it was failed (the beat that failed it, for
    #: every cause but a closed connection and a leave, which fail a heart between beats)
    beat: int
    #: beats missed in a row when it was failed
    misses: int
    #: when its last answer arrived; None if it never answered since it was registered
    last_answer: float | None
    #: its last and mean round trip; None if never measured
    last_rtt: float | None
    mean_rtt: float | None
    #: its phi-accrual suspicion when it was failed; None without phi
    phi: float | None
    #: whether its connection was still up; None where the monitor does not know
    connected: bool | None
    #: how late the monitor's beat came (the last beat's, for a closed connection)
    lag: float
    #: the share of the time since the beat before that the monitor's thread computed; None
    #: where the driver did not measure it
    cpu_share: float | None
    #: hearts failed by the same beat (or the same closed connection), this one included
    failed_together: int
    #: for a held suspect: when the hold began, and the judged beats it lasted
    held_since: float | None = None
    held_beats: int = 0
    #: whether its connection closed because it timed out (no word from its host, not even
    #: its kernel's), when it failed or since: see :meth:`Ledger.closed
    #: <greenheart.core.ledger.Ledger.closed>`
    timed_out: bool = False

    @property
    def diagnosis(self) -> Diagnosis:
        """Stopped, crashed, hung or unreachable, by its cause and its connection."""
        if self.cause is Cause.LEFT:
            return Diagnosis.STOPPED
        if self.timed_out or self.cause is Cause.RESTARTED:  # never reached again
            return Diagnosis.UNREACHABLE
        if self.cause is Cause.DISCONNECTED or self.connected is False:
            return Diagnosis.CRASHED
        return Diagnosis.HUNG

    def gone(self, timed_out: bool) -> Failure:
        """This certificate, amended: its connection closed since, timing out or not."""
        return attrs.evolve(self, connected=False, timed_out=timed_out)

    @property
    def silence(self) -> float | None:
        """Seconds from its last answer to its failure."""
        return None if self.last_answer is None else self.at - self.last_answer

    def describe(self) -> str:
        """One line for a log: the cause first, then the evidence."""
        if self.cause is Cause.DISCONNECTED:
            what = "its connection closed"
        elif self.cause is Cause.MISSED:
            what = f"missed {self.misses} beats"
        elif self.cause is Cause.PHI:
            what = f"phi {self.phi:.1f} passed the threshold"
        elif self.cause is Cause.RESTARTED:
            what = "not seen since the monitor restarted"
        elif self.cause is Cause.LEFT:
            what = "it left: stopped cleanly"
        else:
            what = f"silent through a hold of {self.held_beats} beats in a mass silence"
        parts = [what]
        if self.silence is not None:
            parts.append(f"silent {self.silence * 1000:.0f} ms")
        if self.last_rtt is not None and self.mean_rtt is not None:
            parts.append(
                f"round trip last {self.last_rtt * 1000:.2f} ms, mean {self.mean_rtt * 1000:.2f} ms"
            )
        if self.timed_out:
            parts.append("connection timed out")
        elif self.connected is not None and self.cause not in (Cause.DISCONNECTED, Cause.LEFT):
            parts.append("connection up" if self.connected else "connection closed")
        monitor = f"monitor lag {self.lag * 1000:.0f} ms"
        if self.cpu_share is not None:
            monitor += f", CPU {self.cpu_share:.0%}"
        parts.append(monitor)
        if self.failed_together > 1:
            parts.append(f"{self.failed_together} failed together")
        return "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        """The certificate as JSON fields, times in ms (``at`` in seconds, on the monitor's
        monotonic clock)."""
        return {
            "heart": display_id(self.heart),
            "cause": self.cause.value,
            "diagnosis": self.diagnosis.value,
            "at": round(self.at, 6),
            "beat": self.beat,
            "misses": self.misses,
            "silent_ms": _ms(self.silence),
            "last_rtt_ms": _ms(self.last_rtt),
            "mean_rtt_ms": _ms(self.mean_rtt),
            "phi": None if self.phi is None else round(self.phi, 3),
            "connected": self.connected,
            "timed_out": self.timed_out,
            "lag_ms": _ms(self.lag),
            "cpu_share": None if self.cpu_share is None else round(self.cpu_share, 3),
            "failed_together": self.failed_together,
            "held_beats": self.held_beats,
        }


@attrs.frozen
class FalseFailure:
    """A heart failed for its silence that answered again on the same connection."""

    failure: Failure
    #: when its first answer after the failure arrived
    returned_at: float

    @property
    def heart(self) -> bytes:
        return self.failure.heart

    @property
    def gone(self) -> float:
        """How long the mistake lasted: seconds from the failure to the answer."""
        return self.returned_at - self.failure.at

    def as_json(self) -> dict[str, Any]:
        return {
            "heart": display_id(self.heart),
            "gone_ms": _ms(self.gone),
            "cause": self.failure.cause.value,
            "failed_at": round(self.failure.at, 6),
            "failed_beat": self.failure.beat,
        }


#: hearts failed for their silence, with their connection, remembered at most to tell a false
#: failure (entries go when the connection closes or the heart returns)
MAX_SILENCED = 100_000


@attrs.define
class Silenced:
    """The hearts failed for their silence while their connection was up, each with the serial
    of that connection (:class:`~greenheart.core.connections.ConnectionBook`), until it closes or
    the heart returns: a return on the same connection is a :class:`FalseFailure`."""

    limit: int = MAX_SILENCED
    _failures: dict[bytes, tuple[Failure, int]] = attrs.field(factory=dict, init=False)

    def __len__(self) -> int:
        return len(self._failures)

    def __contains__(self, heart: object) -> bool:
        return heart in self._failures

    def failed(self, failure: Failure, serial: int | None) -> None:
        """Remember ``failure`` if it is a verdict on silence made while its heart was tied to
        the connection numbered ``serial``."""
        if failure.cause not in SILENCE or serial is None:
            return
        if len(self._failures) >= self.limit:
            del self._failures[next(iter(self._failures))]
        self._failures[failure.heart] = (failure, serial)

    def closed(self, heart: bytes, now: float, keepalive: Keepalive | None) -> Failure | None:
        """``heart``'s connection closed at ``now``: a return now is a new connection's, not
        a mistake. If it was silenced on that connection, its certificate amended: the
        connection gone, and whether it timed out."""
        entry = self._failures.pop(heart, None)
        if entry is None:
            return None
        failure = entry[0]
        silence = None if failure.last_answer is None else now - failure.last_answer
        return failure.gone(keepalive is not None and keepalive.timed_out(silence))

    def returns(
        self,
        hearts: Iterable[bytes],
        serial_of: Callable[[bytes], int | None],
        arrival: Callable[[bytes], float | None],
    ) -> tuple[FalseFailure, ...]:
        """The false failures among ``hearts``, new at a beat: each tied to the connection
        ``serial_of`` numbers, its answer arrived when ``arrival`` says."""
        if not self._failures:
            return ()
        mistakes = []
        for heart in hearts:
            at = arrival(heart) if heart in self._failures else None
            mistake = None if at is None else self.returned(heart, serial_of(heart), at)
            if mistake is not None:
                mistakes.append(mistake)
        return tuple(mistakes)

    def returned(self, heart: bytes, serial: int | None, at: float) -> FalseFailure | None:
        """``heart`` answered again at ``at``, tied to the connection numbered ``serial``: the
        mistake, if it was failed for its silence on that connection."""
        entry = self._failures.pop(heart, None)
        if entry is None or entry[1] != serial:
            return None  # never silenced, or back on a new connection: it had died
        return FalseFailure(entry[0], at)


def amend(failures: MutableSequence[Failure], amended: Failure) -> None:
    """Put ``amended`` where its original is in ``failures`` (the same heart, failed at the
    same time), if it is there still."""
    for index in range(len(failures) - 1, -1, -1):
        old = failures[index]
        if old.heart == amended.heart and old.at == amended.at:
            failures[index] = amended
            return
