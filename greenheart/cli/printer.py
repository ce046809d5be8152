"""What ``greenheart monitor`` prints: a line per event, and a summary line per beat."""

from __future__ import annotations

import datetime
import json
from typing import TextIO

import attrs

from greenheart.core.failures import Failure
from greenheart.core.values import Beat
from greenheart.core.wire import display_id
from greenheart.green.monitor import HeartMonitor


def now_text() -> str:
    """The wall-clock time, as ISO 8601 with milliseconds and the offset."""
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


@attrs.define
class EventPrinter:
    """Prints what a monitor's beats meant: one line per event, and a summary line per beat
    when asked. A failure is printed when it is declared, which for a heart whose connection
    closed (``--fail-on-disconnect``) is between beats, with its certificate."""

    out: TextIO
    as_json: bool = False
    summary: bool = False

    def attach(self, monitor: HeartMonitor) -> None:
        """Print ``monitor``'s events from now on."""
        monitor.add_beat_handler(self.beat)
        monitor.add_failure_handler(self.failed)

    def failed(self, failure: Failure) -> None:
        fields = failure.as_json()
        del fields["beat"]
        self._emit("failed_heart", failure.beat, **fields)

    def beat(self, beat: Beat) -> None:
        for heart in beat.new_hearts:
            self._emit("new_heart", beat.number, heart=display_id(heart))
        for heart in beat.resumed:
            self._emit("resumed_heart", beat.number, heart=display_id(heart))
        for mistake in beat.false_failures:
            self._emit("false_failure", beat.number, **mistake.as_json())
        for failure in beat.unreachable:
            fields = failure.as_json()
            del fields["beat"]  # the beat it failed at: this one says it is unreachable
            self._emit("unreachable", beat.number, **fields)
        for heart, late in sorted(beat.late_hearts.items()):
            self._emit("late_heart", beat.number, heart=display_id(heart), late_ms=_ms(late))
        if beat.mass_silence_began or beat.mass_silence_ended:
            self._emit(
                "mass_silence",
                beat.number,
                state="began" if beat.mass_silence_began else "ended",
                suspects=len(beat.suspects),
                held=len(beat.held),
                released=len(beat.released),
            )
        if self.summary:
            self._emit(
                "beat",
                beat.number,
                hearts=beat.heart_count,
                responded=beat.responded_count,
                on_probation=beat.probation_count,
                on_time_pongs=beat.on_time_pongs,
                late_pongs=beat.late_pongs,
                bad_pongs=beat.bad_pongs,
                max_rtt_ms=_ms(beat.max_rtt),
                suspects=len(beat.suspects),
            )

    def _emit(self, event: str, number: int, **fields: object) -> None:
        if self.as_json:
            line = json.dumps({"event": event, "time": now_text(), "beat": number, **fields})
        else:
            details = " ".join(f"{key}={value}" for key, value in fields.items())
            line = f"{now_text()} beat {number} {event.replace('_', ' ')} {details}"
        print(line, file=self.out, flush=True)
