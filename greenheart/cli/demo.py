"""The demo: a monitor and a few hearts on loopback; one heart dies and the monitor notices."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

import gevent.event

from greenheart.core.checks import count, positive_count, positive_float
from greenheart.core.errors import UsageError
from greenheart.core.wire import display_id
from greenheart.green.heart import Heart
from greenheart.green.monitor import HeartMonitor


def add_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="on loopback: a monitor and a few hearts; stop one and watch it detected"
    )
    demo.add_argument("--hearts", type=positive_count, default=3, metavar="N")
    demo.add_argument("--period", type=positive_float, default=100.0, metavar="MS")
    demo.add_argument("--max-misses", type=count, default=2, metavar="N")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_demo(
        hearts=args.hearts, period=args.period, max_misses=args.max_misses, out=sys.stdout
    )


def run_demo(*, hearts: int, period: float, max_misses: int, out: TextIO) -> int:
    """Run the demo, narrating to ``out``; 0 if the killed heart was detected within its bound:
    (max_misses + 2) periods after it died, plus however late the beats themselves ran."""
    if hearts < 1:
        raise UsageError("the demo needs at least one heart")
    seconds = period / 1000
    bound = (max_misses + 2) * seconds
    registered = gevent.event.Event()
    failed: dict[bytes, float] = {}
    failure_seen = gevent.event.Event()

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    with HeartMonitor.bind(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=period, max_misses=max_misses
    ) as monitor:
        say(
            f"monitor: pinging on {monitor.ping_addr} every {period:g} ms, pongs on"
            f" {monitor.pong_addr}, a heart fails after {max_misses + 1} missed beats"
        )
        fleet = [
            Heart(monitor.ping_addr, monitor.pong_addr, heart_id=f"heart-{i}")
            for i in range(hearts)
        ]

        def on_new(heart: bytes) -> None:
            say(f"  new heart: {display_id(heart)}")
            if len(monitor.hearts) == hearts:
                registered.set()

        def on_failure(heart: bytes) -> None:
            failed[heart] = time.monotonic()
            say(f"  heart failed: {display_id(heart)}")
            failure_seen.set()

        beat_lags = [0.0]
        monitor.add_new_heart_handler(on_new)
        monitor.add_heart_failure_handler(on_failure)
        monitor.add_beat_handler(lambda beat: beat_lags.append(beat.lag))
        try:
            for heart in fleet:
                heart.start()
            if not registered.wait(timeout=5 + 10 * seconds):
                say(f"FAILED: only {len(monitor.hearts)} of {hearts} hearts registered")
                return 1
            victim = fleet[len(fleet) // 2]
            say(f"killing {display_id(victim.id)}")  # stopped, it would leave: failed at once
            stopped_at = time.monotonic()
            del beat_lags[1:]
            victim.kill()
            if not failure_seen.wait(timeout=bound + 5):
                say(f"FAILED: {display_id(victim.id)} was never declared failed")
                return 1
            detected_after = failed.get(victim.id, float("inf")) - stopped_at
            bound += max(beat_lags)
            survivors = sorted(display_id(heart) for heart in monitor.hearts)
            say(
                f"{display_id(victim.id)} detected after {detected_after * 1000:.0f} ms"
                f" (bound {bound * 1000:.0f} ms); still beating: {', '.join(survivors)}"
            )
            ok = set(failed) == {victim.id} and detected_after <= bound
            say("demo OK" if ok else "FAILED: the wrong heart failed, or too late")
            return 0 if ok else 1
        finally:
            for heart in fleet:
                heart.stop()
