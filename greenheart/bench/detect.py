"""``greenheart bench detect``: how long after a heart dies its monitor says so.

For each monitor and period, a fresh monitor process and, aimed at it, heart processes
(``greenheart heart``) and a fleet. Once every heart is registered, at random moments over
two periods, heart processes are killed with SIGKILL (their kernel closes their connections
at once), others are stopped with SIGSTOP (hung: their connections stay up), and the fleet
kills some of its hearts with ``kill()`` (their sockets close). The latency of each is from
the kill to the monitor's failure handler, both on the machine's monotonic clock, and the
table gives p50, p99 and max by monitor, period, ``fail_on_disconnect`` and kind of death.

greenheart runs with ``max_misses=1`` (its default; ``--max-misses`` sets others), with and without
``fail_on_disconnect``; ipyparallel's monitor at its own defaults (3 s, 10 misses).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from greenheart.bench.child import STARTUP_SECONDS, Child, children
from greenheart.bench.lines import Failed, Killed, MonitorEvent, Started
from greenheart.bench.report import aligned
from greenheart.bench.runner import MonitorChild
from greenheart.core.checks import count, listed, output_file, positive_count, positive_float
from greenheart.core.errors import UsageError
from greenheart.core.stats import percentile

HELP = "how long after a heart dies its monitor says so, with and without fail_on_disconnect"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else None

KINDS = ("SIGKILL", "kill()", "SIGSTOP")


@attrs.frozen
class Config:
    """One monitor under test."""

    monitor: str
    period_ms: float
    max_misses: int
    fail_on_disconnect: bool

    def __str__(self) -> str:
        option = " --fail-on-disconnect" if self.fail_on_disconnect else ""
        return f"{self.monitor} @ {self.period_ms:g} ms, {self.max_misses} misses{option}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--periods",
        type=listed(positive_float),
        default="1000,3000",
        help="greenheart's periods, in ms (default 1000,3000)",
    )
    parser.add_argument(
        "--max-misses",
        type=listed(count),
        default="1",
        help="greenheart's miss counts, comma-separated (default 1)",
    )
    parser.add_argument(
        "--processes", type=positive_count, default=12, help="heart processes a run"
    )
    parser.add_argument("--stopped", type=count, default=2, help="of them, SIGSTOPped")
    parser.add_argument("--fleet", type=count, default=100, help="fleet hearts a run")
    parser.add_argument("--fleet-kills", type=count, default=20, help="fleet hearts killed")
    parser.add_argument("--no-ipyparallel", action="store_true", help="leave ipyparallel out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=output_file, metavar="FILE", help="write every latency here")


def configs(args: argparse.Namespace) -> list[Config]:
    found = []
    for period in args.periods:
        for max_misses in args.max_misses:
            for option in (False, True):
                found.append(Config("greenheart", period, max_misses, option))
    if not args.no_ipyparallel:
        found.append(Config("ipyparallel", 3000.0, 10, False))
    return found


def run(args: argparse.Namespace) -> int:
    if args.stopped >= args.processes:
        raise UsageError("--stopped must be fewer than --processes")
    rng = random.Random(args.seed)
    rows = []
    for config in configs(args):
        print(f"-- {config} ...", file=sys.stderr, flush=True)
        latencies = measure(config, args, rng)
        for kind in KINDS:
            rows.append(row(config, kind, latencies.get(kind, [])))
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return 0


def row(config: Config, kind: str, latencies: Sequence[float]) -> dict[str, Any]:
    ms = [seconds * 1000 for seconds in latencies]
    return {
        "monitor": config.monitor,
        "period_ms": config.period_ms,
        "max_misses": config.max_misses,
        "fail_on_disconnect": config.fail_on_disconnect,
        "kind": kind,
        "deaths": len(ms),
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms, default=None),
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = ["monitor", "period", "misses", "on disconnect", "death", "n", "p50 ms", "p99 ms"]
    head.append("max ms")
    lines = [head]
    for r in rows:
        lines.append(
            [
                r["monitor"],
                f"{r['period_ms']:g}",
                str(r["max_misses"]),
                "yes" if r["fail_on_disconnect"] else "no",
                r["kind"],
                str(r["deaths"]),
                *(_ms(r[key]) for key in ("p50_ms", "p99_ms", "max_ms")),
            ]
        )
    return aligned(lines, left=5)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def measure(config: Config, args: argparse.Namespace, rng: random.Random) -> dict[str, list[float]]:
    """The latencies of each kind of death, for one monitor."""
    period = config.period_ms / 1000
    extra = ["--events", f"--max-misses={config.max_misses}"]
    if config.fail_on_disconnect:
        extra.append("--fail-on-disconnect")
    killed: dict[str, tuple[str, float]] = {}  # heart -> (kind, when)
    with children() as started:
        monitor = MonitorChild(config.monitor, config.period_ms, *extra)
        started.append(monitor.child)
        command = ["heart", "--ping", monitor.ping, "--pong", monitor.pong]
        hearts = [
            Child.command(f"heart {n}", *command, "--id", f"process-{n}")
            for n in range(args.processes)
        ]
        started.extend(hearts)
        fleet = monitor.load(
            "fleet", "kill-fleet", f"--size={args.fleet}", f"--seed={args.seed}", stdin=True
        )
        started.append(fleet)
        fleet.expect(Started, STARTUP_SECONDS)
        monitor.until_heard(args.processes + args.fleet, STARTUP_SECONDS + 10 * period)
        # every death at a moment of its own over two periods, so anywhere in a round
        window = 2 * period
        deaths = [("process", n) for n in range(args.processes)]
        deaths += [("fleet", n) for n in range(args.fleet_kills)]
        schedule = sorted((rng.uniform(0, window), death) for death in deaths)
        began = time.monotonic()
        for moment, (where, n) in schedule:
            time.sleep(max(0.0, began + moment - time.monotonic()))
            if where == "fleet":
                fleet.say("kill")  # it says whom, and when
                continue
            kind = "SIGSTOP" if n < args.stopped else "SIGKILL"
            killed[f"process-{n}"] = (kind, time.monotonic())
            os.kill(hearts[n].pid, signal.SIGSTOP if kind == "SIGSTOP" else signal.SIGKILL)
        bound = (config.max_misses + 2) * period + 5
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            time.sleep(0.2)
            for line in fleet.said():
                if isinstance(line, Killed):
                    killed.update({heart: ("kill()", line.at) for heart in line.hearts})
            monitor.said()
            failed = _failures(monitor.events)
            if len(killed) == len(deaths) and all(heart in failed for heart in killed):
                break
        for child in hearts[: args.stopped]:
            os.kill(child.pid, signal.SIGCONT)  # so that they can be stopped
    failures = _failures(monitor.events)
    latencies: dict[str, list[float]] = {}
    for heart, (kind, at) in killed.items():
        if heart in failures and failures[heart] >= at:
            latencies.setdefault(kind, []).append(failures[heart] - at)
    return latencies


def _failures(events: Sequence[MonitorEvent]) -> dict[str, float]:
    """Heart -> when it was first failed."""
    failed: dict[str, float] = {}
    for event in events:
        if isinstance(event, Failed):
            failed.setdefault(event.heart, event.at)
    return failed
