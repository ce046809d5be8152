"""``greenheart bench storm``: a monitor holding a fleet while other processes storm its pong
port with TCP connections that never speak ZeroMQ (a port scanner, a client of another
protocol, a SYN storm).

Each run is a fresh monitor process (greenheart's, or the bare pyzmq ROUTER loop for
comparison) holding a fleet of ``--hearts`` in another process, with ``max_misses=1``. Once
every heart answers, the monitor's CPU is read over a few quiet seconds; then ``--storms``
processes open their connections and hold them, and the monitor's CPU is read again by
thread (Python's, where every greenlet runs, and libzmq's I/O thread, which accepts) until
the storm has closed them. Two storms:

- ``fast``: ``--fast`` connections (18,000) in 3 s, below the monitor's open-file limit;
- ``past-limit``: the monitor's open-file limit lowered to ``--limit`` (4,096), and
  ``--past`` connections (20,000) at ``--past-rate`` a second (4,000), held 15 s: libzmq's
  I/O thread would spin on a listener it cannot accept from.

Reported: healthy hearts failed (by cause) and false failures (greenheart; the bare loop
judges nobody), beats in which not every heart answered, CPU per thread, the CPU a
connection cost the monitor beyond its quiet rate, and how long after the storm new hearts
(``--after``) took to be registered, in periods.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from greenheart.bench.child import STARTUP_SECONDS, children
from greenheart.bench.lines import FalselyFailed, Refusing, StormClosed, StormOpened
from greenheart.bench.proc import thread_cpu_seconds
from greenheart.bench.report import aligned
from greenheart.bench.runner import MonitorChild, failures_by_cause, start_load
from greenheart.core.checks import count, output_file, positive_count, positive_float

HELP = "a monitor holding a fleet under a storm of connections that never speak ZeroMQ"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else None

#: the monitors each storm is run against: greenheart's, then the bare loop (not with --no-raw)
STORM_MONITORS = ("greenheart", "raw")

#: seconds of quiet before a storm, to read the monitor's CPU rate without one
QUIET_SECONDS = 3.0

#: seconds after the storm closed its connections that still count as the storm's
AFTERMATH_SECONDS = 2.0


@attrs.frozen
class Storm:
    """One storm: ``connections`` at ``rate`` a second in all, held ``hold`` seconds."""

    name: str
    connections: int
    rate: float
    hold: float
    #: the monitor's open-file limit, soft and hard; None leaves it as the machine has it
    limit: int | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hearts", type=positive_count, default=200, help="fleet hearts held (200)"
    )
    parser.add_argument("--period", type=positive_float, default=200.0, metavar="MS")
    parser.add_argument("--storms", type=positive_count, default=2, help="processes storming (2)")
    parser.add_argument(
        "--fast", type=positive_count, default=18_000, help="connections of the fast storm"
    )
    parser.add_argument(
        "--fast-seconds", type=positive_float, default=3.0, help="opened within (3 s)"
    )
    parser.add_argument(
        "--past", type=positive_count, default=20_000, help="connections past the limit"
    )
    parser.add_argument(
        "--past-rate", type=positive_float, default=4_000.0, help="a second, past it"
    )
    parser.add_argument(
        "--limit", type=positive_count, default=4096, help="the monitor's open-file limit"
    )
    parser.add_argument(
        "--hold", type=positive_float, default=15.0, help="seconds each storm holds"
    )
    parser.add_argument("--after", type=count, default=10, help="hearts joining after the storm")
    parser.add_argument("--only", choices=("fast", "past-limit"), help="one storm only")
    parser.add_argument("--no-raw", action="store_true", help="leave the bare loop out")
    parser.add_argument("--json", type=output_file, metavar="FILE", help="also write the rows here")


def storms(args: argparse.Namespace) -> list[Storm]:
    found = [
        Storm("fast", args.fast, args.fast / args.fast_seconds, args.hold),
        Storm("past-limit", args.past, args.past_rate, args.hold, args.limit),
    ]
    return [storm for storm in found if args.only in (None, storm.name)]


def run(args: argparse.Namespace) -> int:
    rows = []
    for storm in storms(args):
        for monitor in STORM_MONITORS[:1] if args.no_raw else STORM_MONITORS:
            print(f"-- {monitor}, {storm.name} storm ...", file=sys.stderr, flush=True)
            rows.append(measure(monitor, storm, args))
    bare = {row["storm"]: row["us_per_connection"] for row in rows if row["monitor"] == "raw"}
    for row in rows:
        against = bare.get(row["storm"])
        row["cost_ratio"] = round(row["us_per_connection"] / against, 2) if against else None
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    failed = sum(row["failed"] or 0 for row in rows if row["monitor"] == "greenheart")
    unregistered = [row for row in rows if row["after_registered_periods"] is None]
    return 1 if failed or unregistered else 0


def measure(monitor_kind: str, storm: Storm, args: argparse.Namespace) -> dict[str, Any]:
    period = args.period / 1000
    options = ["--max-misses=1"]
    if monitor_kind == "greenheart":
        options.append("--events")
    if storm.limit is not None:
        options.append(f"--open-files={storm.limit}")
    with children() as started:
        monitor = MonitorChild(monitor_kind, args.period, *options)
        started.append(monitor.child)
        fleet, _ = start_load("fleet", monitor, args.hearts, "storm")
        started.append(fleet)
        monitor.until_heard(args.hearts, STARTUP_SECONDS)
        quiet = _cpu_over(monitor, QUIET_SECONDS)
        monitor.said()  # the beats before the storm
        share = storm.connections // args.storms
        before = thread_cpu_seconds(monitor.pid)
        began = time.monotonic()
        stormers = [
            monitor.load(
                f"storm {n}",
                "storm",
                f"--size={share}",
                f"--rate={storm.rate / args.storms}",
                f"--hold={storm.hold}",
            )
            for n in range(args.storms)
        ]
        started.extend(stormers)
        timeout = STARTUP_SECONDS + storm.connections / storm.rate + storm.hold
        opened = [stormer.expect(StormOpened, timeout) for stormer in stormers]
        for stormer in stormers:
            stormer.expect(StormClosed, timeout)
        time.sleep(AFTERMATH_SECONDS)
        beats = monitor.said()
        after = thread_cpu_seconds(monitor.pid)
        seconds = time.monotonic() - began
        joined = _registration_periods(monitor, args.hearts, args.after, period)
        events = monitor.events
    connections = sum(line.opened for line in opened)
    used = {role: after[role] - before[role] for role in before}
    extra = sum(used.values()) - quiet * seconds
    greenheart = monitor_kind == "greenheart"
    causes = failures_by_cause(events)
    return {
        "monitor": monitor_kind,
        "storm": storm.name,
        "hearts": args.hearts,
        "period_ms": args.period,
        "limit": storm.limit,
        "connections": connections,
        "failed_to_open": sum(line.failed for line in opened),
        "open_seconds": max(line.seconds for line in opened),
        "window_s": round(seconds, 1),
        "failed": sum(causes.values()) if greenheart else None,
        "failed_by_cause": causes,
        "false_failures": sum(isinstance(e, FalselyFailed) for e in events) if greenheart else None,
        "refusing": [e.refusing for e in events if isinstance(e, Refusing)],
        "beats": len(beats),
        "short_beats": sum(beat.responded < args.hearts for beat in beats),
        "fewest_answers": min((beat.responded for beat in beats), default=None),
        "cpu_python_s": round(used["python"], 2),
        "cpu_zmq_io_s": round(used["zmq io"], 2),
        "cpu_other_s": round(used["other"], 2),
        "quiet_cpu_share": round(quiet, 3),
        "us_per_connection": round(max(0.0, extra) / max(1, connections) * 1e6, 1),
        "after_registered_periods": joined,
    }


def _cpu_over(monitor: MonitorChild, seconds: float) -> float:
    """The monitor's CPU share (all threads) over ``seconds`` of its beats."""
    first = monitor.beat()
    while (last := monitor.beat()).at - first.at < seconds:
        pass
    return (last.cpu - first.cpu) / (last.at - first.at)


def _registration_periods(
    monitor: MonitorChild, held: int, joining: int, period: float
) -> float | None:
    """How long, in periods, ``joining`` new hearts took to be registered once their sockets
    were open; None if they were not within 20 periods."""
    load, _ = start_load("fleet", monitor, joining, "after")
    try:
        opened = time.monotonic()
        deadline = opened + 20 * period + 5
        while time.monotonic() < deadline:
            beat = monitor.beat()
            if beat.hearts >= held + joining:
                return round((beat.at - opened) / period, 1)
        return None
    finally:
        load.stop()


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = ["storm", "monitor", "conns", "opened in", "failed", "false", "short beats"]
    head += ["python s", "zmq io s", "us/conn", "x bare", "joined in"]
    lines = [head]
    for r in rows:
        lines.append(
            [
                r["storm"],
                r["monitor"],
                f"{r['connections']:,}",
                f"{r['open_seconds']:.1f} s",
                _or_dash(r["failed"]),
                _or_dash(r["false_failures"]),
                f"{r['short_beats']}/{r['beats']}",
                f"{r['cpu_python_s']:.2f}",
                f"{r['cpu_zmq_io_s']:.2f}",
                f"{r['us_per_connection']:.1f}",
                _or_dash(r["cost_ratio"]),
                "-"
                if r["after_registered_periods"] is None
                else f"{r['after_registered_periods']:g} periods",
            ]
        )
    return aligned(lines, left=2)


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)
