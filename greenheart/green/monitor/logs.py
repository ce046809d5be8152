"""What a heart monitor logs, on its logger (``greenheart.monitor`` by default).

A beat's news (new hearts, failures with their certificates, a mass silence beginning and
ending) is logged as it happens; what a peer or an overload can repeat at will (bad pongs, late
pongs, false failures, refused hearts, late beats, handlers that raise) at most once every
10 s per kind, saying how many were held back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from greenheart.core.failures import Failure
from greenheart.core.judging import Lateness
from greenheart.core.ratelimit import RateLimitedLog
from greenheart.core.rules import Rules
from greenheart.core.schedule import Slot
from greenheart.core.values import Beat, Pong
from greenheart.core.wire import display_id

#: how many hearts a log line names before it only counts them
NAMED_IN_LOG = 10


def named(hearts: Sequence[bytes]) -> str:
    names = ", ".join(display_id(heart) for heart in hearts[:NAMED_IN_LOG])
    if len(hearts) > NAMED_IN_LOG:
        names += f" and {len(hearts) - NAMED_IN_LOG} more"
    return names


def certified(failures: Sequence[Failure]) -> str:
    """The failures for a log line: the first few with their certificates, then a count by
    cause."""
    named = "; ".join(
        f"{display_id(failure.heart)} ({failure.describe()})" for failure in failures[:NAMED_IN_LOG]
    )
    if len(failures) > NAMED_IN_LOG:
        causes: dict[str, int] = {}
        for failure in failures:
            causes[failure.cause.value] = causes.get(failure.cause.value, 0) + 1
        by_cause = ", ".join(f"{count} {cause}" for cause, count in sorted(causes.items()))
        named += f"; and {len(failures) - NAMED_IN_LOG} more (in all: {by_cause})"
    return named


@attrs.define
class MonitorLog:
    """The monitor's log lines."""

    log: logging.Logger
    _limited: RateLimitedLog = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._limited = RateLimitedLog(self.log)

    def started(self, period: float, ping: str, pong: str) -> None:
        self.log.info("beating every %g ms on %s, listening on %s", period, ping, pong)

    def resuming(self, hearts: int, grace: float, path: str) -> None:
        self.log.info(
            "awaiting the %d heart(s) %s remembers for %.1f s: those not back then fail",
            hearts,
            path,
            grace,
        )

    def beat(self, beat: Beat, rules: Rules) -> None:
        if beat.resumed:
            self.log.info(
                "%d heart(s) back after the restart: %s", len(beat.resumed), named(beat.resumed)
            )
        if beat.new_hearts:
            self.log.info("%d new heart(s): %s", len(beat.new_hearts), named(beat.new_hearts))
        if beat.failed_hearts:
            self.failed(beat.failures[: len(beat.failed_hearts)])
        if beat.mass_silence_began:
            self.log.warning(
                "mass silence: beat %d would have failed %d of %d hearts at once, their"
                " connections up; holding them as suspects for up to %d beats, since the monitor"
                " or its network may be at fault",
                beat.number,
                len(beat.held),
                beat.heart_count,
                rules.mass_silence.hold if rules.mass_silence else 0,
            )
        if beat.mass_silence_ended:
            self.log.warning("mass silence over at beat %d: no heart is held", beat.number)
        for mistake in beat.false_failures[:NAMED_IN_LOG]:
            self._limited(
                logging.WARNING,
                "false failure",
                "false failure: %s answered again on the connection it was failed on, %.0f ms"
                " after it was failed (%s)",
                display_id(mistake.heart),
                mistake.gone * 1000,
                mistake.failure.describe(),
            )
        for failure in beat.unreachable[:NAMED_IN_LOG]:
            self._limited(
                logging.WARNING,
                "unreachable",
                "unreachable: %s, failed %.0f ms before its connection timed out, lost its"
                " host or its network, not its process (%s)",
                display_id(failure.heart),
                (beat.at - failure.at) * 1000,
                failure.describe(),
            )
        if beat.refused_count:
            self._limited(
                logging.WARNING,
                "refused",
                "refused %d new heart(s): max_hearts=%d are known",
                beat.refused_count,
                rules.max_hearts,
            )
        if beat.late_hearts:
            slowest = max(beat.late_hearts, key=beat.late_hearts.__getitem__)
            self._limited(
                logging.WARNING,
                "late",
                "%d late pong(s) in beat %d; slowest %s, %.1f ms after its beat",
                beat.late_pongs,
                beat.number,
                display_id(slowest),
                beat.late_hearts[slowest] * 1000,
            )

    def failed(self, failures: Sequence[Failure]) -> None:
        """Hearts failed, by a beat or by their connections closing."""
        self.log.warning("%d heart(s) failed: %s", len(failures), certified(failures))

    def left(self, failure: Failure) -> None:
        """A heart said it stopped cleanly: failed, as nothing to worry about."""
        self.log.info("heart left: %s", certified([failure]))

    def late_beat(self, slot: Slot, lateness: Lateness) -> None:
        if lateness is Lateness.STALLED:
            self._limited(
                logging.WARNING,
                "stall",
                "monitor stalled: its beat came %.0f ms late (%d beat(s) lost) from a paused"
                " or blocked process; hearts are not charged a miss for it",
                slot.lag * 1000,
                slot.skipped,
            )
        else:
            self._limited(
                logging.WARNING,
                "busy",
                "monitor busy: its beat came %.0f ms late (%d beat(s) lost) from a busy hub;"
                " the hearts are judged by the answers already queued",
                slot.lag * 1000,
                slot.skipped,
            )

    def behind(self) -> None:
        self._limited(
            logging.WARNING,
            "unread",
            "monitor is behind: answers were still queued at a beat; hearts that"
            " did not answer are not charged a miss for it",
        )

    def bad_pong(self, pong: Pong, msg: Sequence[bytes] | None) -> None:
        """A pong that was not an answer, with its frames if they are at hand."""
        who = display_id(pong.heart) if pong.heart else "(no identity)"
        kind = pong.kind.value
        if msg is None:
            self._limited(logging.WARNING, kind, "%s pong from %s", kind, who)
            return
        self._limited(
            logging.WARNING,
            kind,
            "%s pong from %s: %d frame(s), first bytes %r",
            kind,
            who,
            len(msg),
            msg[-1][:32] if msg else b"",
        )

    def error(self, key: str, what: str, *args: object) -> None:
        """Something raised that must not stop the monitor (a handler, a pong's handling)."""
        self._limited(logging.ERROR, key, what, *args, exc_info=True)
