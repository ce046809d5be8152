"""``greenheart bench tune``: record a misbehaving load, tune it to targets, check the choice live.

Three runs of the same load, each ``--duration`` seconds: a fleet with slow hearts (their
answers 50 to 150 ms late) and flapping ones (silent for 250 ms every 5 s), and a second fleet
process that is SIGSTOPped for 300 ms every 20 s (a paused process: its hearts' connections stay
up). Same seeds, same schedule.

1. A monitor at its defaults (``--max-misses 1``) records the load; the replay of the recording
   under its own setting must give the live monitor's failures and false failures exactly.
2. ``greenheart tune`` replays the recording under its grid and names the fastest setting that
   meets the targets.
3. A monitor with that setting runs on the same load: its live false failures are compared with
   what the replay predicted for it.

How long a death takes to notice at a setting is measured live by ``greenheart bench detect``
(``--periods``, ``--max-misses``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from greenheart.bench.child import STARTUP_SECONDS, Child, ChildFailed, children
from greenheart.bench.programs.common import LOOPBACK
from greenheart.core.recording import read
from greenheart.core.replay import replay

HELP = "record a misbehaving load, tune it to targets, and check the chosen setting live"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else None

#: what ``greenheart monitor`` says on stderr once bound: where, on ports of its choosing
BOUND = r"pinging on (?P<ping>\S+) every [^,]*, pongs on (?P<pong>[^;\s]+);"

#: what ``greenheart fleet`` says on stderr once its hearts are started
FLEET_STARTED = r"^greenheart fleet \S+: \d+ hearts answering"

#: the second fleet is SIGSTOPped this often, for this long (seconds)
PAUSE_EVERY = 20.0
PAUSE_SECONDS = 0.3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=180.0, help="seconds a run (180)")
    parser.add_argument("--period", type=float, default=100.0, help="the recorded period, ms")
    parser.add_argument("--hearts", type=int, default=100, help="hearts in the misbehaving fleet")
    parser.add_argument("--paused-hearts", type=int, default=20, help="hearts in the paused one")
    parser.add_argument("--detect", default="1s", help="the detection target (1s)")
    parser.add_argument("--false-failures", default="10/day", help="the false-failure target")
    parser.add_argument("--dir", help="where the recordings go (a temporary directory)")
    parser.add_argument("--json", metavar="FILE", help="write the figures here")


def live_run(args: argparse.Namespace, options: list[str], record: Path) -> dict[str, int]:
    """The load against a monitor with ``options``, recorded to ``record``: what it printed."""
    # its lines go to a file beside the recording, read once it has stopped
    with record.with_suffix(".jsonl").open("w+") as printed, children() as started:
        monitor = Child.command(
            "monitor", "monitor", "--ping", LOOPBACK, "--pong", LOOPBACK, "--json",
            "--record", str(record), *options, stdout=printed,
        )  # fmt: skip
        started.append(monitor)
        bound = monitor.expect_on_stderr(BOUND, STARTUP_SECONDS)
        ping, pong = bound["ping"], bound["pong"]
        # started once the monitor is bound, so that none waits for a reconnect
        busy = Child.command(
            "busy fleet", "fleet", "--ping", ping, "--pong", pong, "--size", str(args.hearts),
            "--seed", "1", "--slow", "0.1:uniform:50:150",
            "--flap", f"{max(1, args.hearts // 20)}:0.25:5", "--prefix", "busy",
            "--status-every", "3600",
        )  # fmt: skip
        started.append(busy)
        paused = Child.command(
            "paused fleet", "fleet", "--ping", ping, "--pong", pong,
            "--size", str(args.paused_hearts), "--seed", "2", "--prefix", "paused",
            "--status-every", "3600",
        )  # fmt: skip
        started.append(paused)
        # the load's seconds count from when both fleets answer, not from their processes'
        # start (about as long as the monitor ran alone before the fleets, before)
        for fleet in (busy, paused):
            fleet.expect_on_stderr(FLEET_STARTED, STARTUP_SECONDS)
        start = time.monotonic()
        next_pause = start + PAUSE_EVERY
        while time.monotonic() - start < args.duration:
            for child in started:
                child.check()
            if time.monotonic() >= next_pause:
                _pause(paused)
                next_pause += PAUSE_EVERY
            time.sleep(0.05)
        # the monitor stops first, so that its figures and its recording end with the load
        monitor.stop()
        printed.seek(0)
        return _counted(printed.read())


def _pause(child: Child) -> None:
    """Stop ``child`` for :data:`PAUSE_SECONDS`, as a paused process: its connections stay up."""
    os.kill(child.pid, signal.SIGSTOP)
    try:
        time.sleep(PAUSE_SECONDS)
    finally:  # also when interrupted: a stopped child would not heed the SIGTERM to come
        os.kill(child.pid, signal.SIGCONT)


def _counted(printed: str) -> dict[str, int]:
    """The failures and false failures among ``greenheart monitor --json``'s lines."""
    counts = {"failed_heart": 0, "false_failure": 0}
    for line in printed.splitlines():
        try:
            event = json.loads(line).get("event")
        except ValueError:
            continue
        if event in counts:
            counts[event] += 1
    return counts


def _replayed(path: Path) -> dict[str, int]:
    recording = read(path.read_bytes())
    outcome = replay(recording.inputs, recording.header.rules)
    return {"failed_heart": len(outcome.failures), "false_failure": len(outcome.false_failures)}


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
    defaults = ["--period", f"{args.period:g}"]
    print(f"-- 1. recording {args.duration:g} s at {shlex.join(defaults)}", file=sys.stderr)
    live = live_run(args, defaults, recorded)
    again = _replayed(recorded)
    print(f"   live: {live}; its replay: {again}", file=sys.stderr)

    print("-- 2. greenheart tune", file=sys.stderr)
    tune = ["tune", str(recorded), "--detect", args.detect, "--false-failures", args.false_failures]
    subprocess.run([sys.executable, "-m", "greenheart", *tune], check=False)
    answer = subprocess.run(
        [sys.executable, "-m", "greenheart", *tune, "--json"], capture_output=True, text=True
    )
    tuned = json.loads(answer.stdout)
    chosen = tuned.get("choice", {}).get("chosen")
    if chosen is None:
        return 1
    options = chosen["options"].split()

    print(f"-- 3. live, with {' '.join(options)}", file=sys.stderr)
    checked = live_run(args, options, folder / "checked.rec")
    predicted = chosen["false_failures"]
    hours = args.duration / 3600
    print(
        f"\nrecorded at the defaults: live {live['failed_heart']} failures,"
        f" {live['false_failure']} false; the replay of its recording"
        f" {again['failed_heart']} and {again['false_failure']}"
        f"\nchosen: {' '.join(options)}: predicted {predicted} false failures"
        f" in {args.duration:g} s, live {checked['false_failure']}"
        f" ({checked['failed_heart']} failures in all)"
    )
    figures = {
        "duration_s": args.duration,
        "recorded": {"options": defaults, "live": live, "replay": again},
        "chosen": {
            **chosen,
            "predicted_false_failures": predicted,
            "live": checked,
            "live_false_failures_per_hour": round(checked["false_failure"] / hours, 2),
        },
        "results": tuned["results"],
        "recording": tuned["recording"],
    }
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0
