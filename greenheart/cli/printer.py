"""What ``greenheart monitor`` prints: a line per event, and a summary line per beat."""

from __future__ import annotations

import datetime
import json
from typing import TextIO

import attrs

from greenheart.core.ledger import Beat
from greenheart.core.wire import display_id


def now_text() -> str:
    """The wall-clock time, as ISO 8601 with milliseconds and the offset."""
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


@attrs.define
class EventPrinter:
    """Prints what each beat meant: one line per event, and a summary line when asked."""

    out: TextIO
    as_json: bool = False
    summary: bool = False

    def __call__(self, beat: Beat) -> None:
        for heart in beat.new_hearts:
            self._emit("new_heart", beat, heart=display_id(heart))
        for heart, late in sorted(beat.late_hearts.items()):
            self._emit("late_heart", beat, heart=display_id(heart), late_ms=_ms(late))
        for heart in beat.failed_hearts:
            self._emit("failed_heart", beat, heart=display_id(heart))
        if self.summary:
            self._emit(
                "beat",
                beat,
                hearts=beat.hearts,
                responded=beat.responded,
                on_probation=beat.on_probation,
                on_time_pongs=beat.on_time_pongs,
                late_pongs=beat.late_pongs,
                bad_pongs=beat.bad_pongs,
                max_rtt_ms=_ms(beat.max_rtt),
            )

    def _emit(self, event: str, beat: Beat, **fields: object) -> None:
        if self.as_json:
            line = json.dumps({"event": event, "time": now_text(), "beat": beat.number, **fields})
        else:
            details = " ".join(f"{key}={value}" for key, value in fields.items())
            line = f"{now_text()} beat {beat.number} {event.replace('_', ' ')} {details}"
        print(line, file=self.out, flush=True)
