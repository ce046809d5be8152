"""``greenheart bench tune``: record a misbehaving load, tune it to targets, check the choice live.

Three runs of the same load, each ``--duration`` seconds: a fleet with slow hearts (their
answers 50 to 150 ms late) and flapping ones (silent for 250 ms every 5 s), and a second fleet
process that is SIGSTOPped for 300 ms every 20 s (a paused process: its hearts' connections stay
up). Same seeds, same schedule.

1. A monitor at its defaults (``max_misses=1``) records the load; the replay of the recording
   under its own setting must give the live monitor's failures and false failures exactly.
2. The recording is replayed under ``greenheart tune``'s grid (:func:`~greenheart.core.tuning.
   evaluate_all`), which names the fastest setting that meets the targets.
3. A monitor with that setting runs on the same load: its live false failures are compared with
   what the replay predicted for it.

How long a death takes to notice at a setting is measured live by ``greenheart bench detect``
(``--periods``, ``--max-misses``). ``greenheart tune`` on the recording shows the whole grid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from greenheart.bench.child import STARTUP_SECONDS, Child, ChildFailed, children
from greenheart.bench.lines import Failed, FalselyFailed
from greenheart.bench.runner import MonitorChild
from greenheart.core.checks import argument, output_file, positive_count, positive_float
from greenheart.core.recording import read
from greenheart.core.replay import replay
from greenheart.core.rules import Rules
from greenheart.core.tuning import (
    Result,
    Targets,
    choose,
    evaluate_all,
    parse_duration,
    parse_rate,
    settings_for,
)

HELP = "record a misbehaving load, tune it to targets, and check the chosen setting live"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else None

#: what ``greenheart fleet`` says on stderr once its hearts are started
FLEET_STARTED = r"^greenheart fleet \S+: \d+ hearts answering"

#: the second fleet is SIGSTOPped this often, for this long (seconds)
PAUSE_EVERY = 20.0
PAUSE_SECONDS = 0.3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=positive_float, default=180.0, help="seconds a run (180)"
    )
    parser.add_argument(
        "--period", type=positive_float, default=100.0, help="the recorded period, ms"
    )
    parser.add_argument(
        "--hearts", type=positive_count, default=100, help="hearts in the misbehaving fleet"
    )
    parser.add_argument(
        "--paused-hearts", type=positive_count, default=20, help="hearts in the paused one"
    )
    parser.add_argument(
        "--detect", type=argument(parse_duration), default="1s", help="the detection target (1s)"
    )
    parser.add_argument(
        "--false-failures",
        type=argument(parse_rate),
        default="10/day",
        help="the false-failure target",
    )
    parser.add_argument("--dir", help="where the recordings go (a temporary directory)")
    parser.add_argument("--json", type=output_file, metavar="FILE", help="write the figures here")


def live_run(args: argparse.Namespace, rules: Rules, record: Path) -> dict[str, int]:
    """The load against a monitor judging by ``rules``, recorded to ``record``: the failures
    and false failures it reported."""
    with children() as started:
        rules_json = json.dumps(rules.as_json())
        monitor = MonitorChild(
            "greenheart", args.period, "--events", f"--rules={rules_json}", f"--record={record}"
        )
        started.append(monitor.child)
        fleet = ["fleet", "--ping", monitor.ping, "--pong", monitor.pong, "--status-every", "3600"]
        busy = Child.command(
            "busy fleet", *fleet, "--size", str(args.hearts), "--seed", "1",
            "--slow", "0.1:uniform:50:150", "--flap", f"{max(1, args.hearts // 20)}:0.25:5",
            "--prefix", "busy",
        )  # fmt: skip
        started.append(busy)
        paused = Child.command(
            "paused fleet", *fleet, "--size", str(args.paused_hearts), "--seed", "2",
            "--prefix", "paused",
        )  # fmt: skip
        started.append(paused)
        # the load's seconds count from when both fleets answer, not from their processes' start
        for load in (busy, paused):
            load.expect_on_stderr(FLEET_STARTED, STARTUP_SECONDS)
        start = time.monotonic()
        next_pause = start + PAUSE_EVERY
        while time.monotonic() - start < args.duration:
            monitor.said()  # keeps its events; fails if it exited
            for load in (busy, paused):
                load.check()
            if time.monotonic() >= next_pause:
                _pause(paused)
                next_pause += PAUSE_EVERY
            time.sleep(0.05)
        # the monitor stops first, so that its figures and its recording end with the load
        started.remove(monitor.child)
        events = monitor.stop()
    return {
        "failed_heart": sum(isinstance(event, Failed) for event in events),
        "false_failure": sum(isinstance(event, FalselyFailed) for event in events),
    }


def _pause(child: Child) -> None:
    """Stop ``child`` for :data:`PAUSE_SECONDS`, as a paused process: its connections stay up."""
    os.kill(child.pid, signal.SIGSTOP)
    try:
        time.sleep(PAUSE_SECONDS)
    finally:  # also when interrupted: a stopped child would not heed the SIGTERM to come
        os.kill(child.pid, signal.SIGCONT)


def _replayed(path: Path) -> dict[str, int]:
    recording = read(path.read_bytes())
    replayed = replay(recording.inputs, recording.header.rules)
    return {"failed_heart": len(replayed.failures), "false_failure": len(replayed.false_failures)}


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ChildFailed, TimeoutError) as error:  # a child that died, or never said where
        print(f"FAIL: {error}")
        return 1


def _run(args: argparse.Namespace) -> int:
    folder = Path(args.dir or tempfile.mkdtemp(prefix="greenheart-tune-"))
    folder.mkdir(parents=True, exist_ok=True)
    recorded = folder / "recorded.rec"
    print(f"-- 1. recording {args.duration:g} s at {args.period:g} ms", file=sys.stderr)
    live = live_run(args, Rules(), recorded)
    again = _replayed(recorded)
    print(f"   live: {live}; its replay: {again}", file=sys.stderr)

    print(f"-- 2. its replay under greenheart tune's grid ({recorded})", file=sys.stderr)
    recording = read(recorded.read_bytes())
    results = evaluate_all(recording, settings_for(recording.header))
    detect, rate = args.detect, args.false_failures
    chosen = choose(results, Targets.of(detect, rate)).chosen
    wanted = (
        f"every death noticed within {detect * 1000:g} ms and at most {rate.text} false failures"
    )
    if chosen is None:
        print(f"no setting meets {wanted}")
        return 1
    setting = chosen.setting
    print(f"meets {wanted}, fastest: {_described(chosen)}")

    print("-- 3. live, with the chosen setting", file=sys.stderr)
    checked = live_run(args, setting.rules, folder / "checked.rec")
    predicted = chosen.false_failures.count
    hours = args.duration / 3600
    print(
        f"\nrecorded at the defaults: live {live['failed_heart']} failures,"
        f" {live['false_failure']} false; the replay of its recording"
        f" {again['failed_heart']} and {again['false_failure']}"
        f"\nchosen: {_described(chosen)}: predicted {predicted} false failures"
        f" in {args.duration:g} s, live {checked['false_failure']}"
        f" ({checked['failed_heart']} failures in all)"
    )
    figures: dict[str, Any] = {
        "duration_s": args.duration,
        "recorded": {"period_ms": args.period, "live": live, "replay": again},
        "chosen": {
            **chosen.as_json(),
            "rules": setting.rules.as_json(),
            "predicted_false_failures": predicted,
            "live": checked,
            "live_false_failures_per_hour": round(checked["false_failure"] / hours, 2),
        },
        "results": [result.as_json() for result in results],
        "recording": {
            "seconds": round(recording.duration, 3),
            "beats": recording.beat_count(),
            "hearts": len(recording.hearts),
            "bytes": recording.size,
        },
    }
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


def _described(result: Result) -> str:
    setting = result.setting
    closing = ", fail_on_disconnect" if setting.rules.fail_on_disconnect else ""
    return f"{setting.period:g} ms, {setting.rule}, mass silence {setting.silence}{closing}"
