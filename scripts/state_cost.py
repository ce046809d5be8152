"""What keeping a monitor's state costs (greenheart/green/state.py), per beat, beside no state.

    .venv/bin/python scripts/state_cost.py [--hearts 16000] [--beats 30] [--churn 1000]

A ledger fed by hand (no sockets, so no descriptor limit) with ``--hearts`` hearts answering
every beat, once steady and once with ``--churn`` hearts joining and as many failing every
beat (at a 1 s period: that many a second), each an event the state keeps for the event stream.
For each beat: the ledger's own beat, what ``StateFile.beat`` and the events' marks cost the hub
(it only queues), and the writer thread's transaction.
Prints medians and maxima, in ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import gevent

from greenheart.core.ledger import Ledger
from greenheart.core.rules import Rules
from greenheart.green.state import StateFile


class TimedState(StateFile):
    """The writer's own time, in its thread."""

    figures: list[float]

    def _write(self, batch: list) -> bool:  # type: ignore[type-arg]
        began = time.perf_counter()
        done = super()._write(batch)
        self.figures.append(time.perf_counter() - began)
        return done


def run(hearts: int, beats: int, churn: int, with_state: bool) -> dict[str, list[float]]:
    ledger = Ledger(tic=0.0, rules=Rules(mass_silence=None))
    names = [b"h%d" % n for n in range(hearts)]
    spare = iter(b"j%d" % n for n in range(10**9))
    figures: dict[str, list[float]] = {"ledger": [], "state hub": [], "state write": []}
    with tempfile.TemporaryDirectory() as directory:
        state = TimedState(os.path.join(directory, "state.db")) if with_state else None
        seq = 0
        if state is not None:
            state.open(0.0)
            state.figures = figures["state write"]
            seq, _ = state.stream()
        now = 0.0
        for number in range(beats):
            if churn and number >= 2:
                names = names[churn:] + [next(spare) for _ in range(churn)]
            ledger.pongs(names, [ledger.ping] * len(names), now + 0.5)
            now += 1.0
            began = time.perf_counter()
            beat = ledger.beat(now)
            figures["ledger"].append(time.perf_counter() - began)
            if state is not None:
                began = time.perf_counter()
                state.beat(beat)
                # the event stream's events of this beat: a mark and a queued row each
                for heart in [*beat.new_hearts, *(f.heart for f in beat.failures)]:
                    seq += 1
                    state.published(seq, [b"new_heart", heart, b'{"event": "new_heart"}' * 8])
                figures["state hub"].append(time.perf_counter() - began)
                gevent.sleep(0.2)  # the writer's thread runs meanwhile, as between beats
        if state is not None:
            state.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hearts", type=int, default=16_000)
    parser.add_argument("--beats", type=int, default=30)
    parser.add_argument("--churn", type=int, default=1_000)
    args = parser.parse_args()
    print(f"{args.hearts} hearts, {args.beats} beats; ms per beat, median / max")
    for churn in (0, args.churn):
        for with_state in (False, True):
            figures = run(args.hearts, args.beats, churn, with_state)
            cells = [
                f"{name} {statistics.median(values[2:]) * 1000:.2f} / {max(values[2:]) * 1000:.2f}"
                for name, values in figures.items()
                if values[2:]
            ]
            label = f"churn {churn}/beat" if churn else "steady"
            print(f"{label:>15}  {'state' if with_state else 'no state':>8}  " + "; ".join(cells))


if __name__ == "__main__":
    main()
