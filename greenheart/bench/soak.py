"""``greenheart bench soak``: thousands of hearts for minutes, with churn and garbage, checked
for lies.

The monitor runs in one process, reporting every beat and every heart it registers or
fails; the hearts run in another as one fleet, which kills a share of its hearts every few
seconds (and grows as many new ones) and sends garbage to the monitor's pong socket. Every
kill is reported with its time on the shared monotonic clock. Checked at the end:

- no false failures: every failure of a heart follows a kill of it that no other failure
  answered, and the monitor itself counted none (a failed heart answering again on the same
  connection: see :class:`~greenheart.core.failures.FalseFailure`);
- every kill was answered by a failure within (max_misses + 2) periods, plus slack for the
  beat (within ``SLACK`` alone with ``--fail-on-disconnect``);
- the monitor's RSS grew by less than 5 MiB after the warm-up.

With ``--revive`` the fleet brings each round's dead back under their identities a round
later, so that the same hearts die and come back again and again. The default is 5,000
hearts at 200 ms for 10 minutes; ``--quick`` is 1,000 for 2.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from greenheart.bench.child import STARTUP_SECONDS, ChildFailed, children
from greenheart.bench.lines import (
    BeatReport,
    Failed,
    FalselyFailed,
    Killed,
    MonitorEvent,
    Registered,
    Started,
)
from greenheart.bench.proc import rss_kib
from greenheart.bench.runner import MonitorChild, failures_by_cause
from greenheart.core.checks import (
    count,
    non_negative_float,
    output_file,
    positive_count,
    positive_float,
    probability,
)
from greenheart.core.stats import percentile

HELP = "minutes of churn and garbage: false failures, late detections, memory growth"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else None

#: seconds between churn rounds in the fleet
CHURN_EVERY = 6.0

#: extra seconds a detection may take beyond the bound: a beat on a busy machine runs late
SLACK = 0.1

#: seconds between looks at the processes
SAMPLE_EVERY = 5.0

#: the most the monitor's memory may grow after the warm-up
GROWTH_LIMIT_MIB = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hearts", type=positive_count, default=5000)
    parser.add_argument("--period", type=positive_float, default=200.0, metavar="MS")
    parser.add_argument("--minutes", type=positive_float, default=10.0)
    parser.add_argument("--max-misses", type=count, default=2)
    parser.add_argument(
        "--churn", type=probability, default=0.01, help="share of hearts killed a minute"
    )
    parser.add_argument(
        "--churn-every", type=positive_float, default=CHURN_EVERY, metavar="SECONDS"
    )
    parser.add_argument("--garbage", type=probability, default=0.01, help="garbage per pong")
    parser.add_argument(
        "--warmup",
        type=non_negative_float,
        default=150.0,
        metavar="SECONDS",
        help="ZeroMQ grows each connection's queue in chunks of 256 messages: the monitor's"
        " memory rises for the first 500 or so beats, then stays flat",
    )
    parser.add_argument(
        "--fail-on-disconnect", action="store_true", help="the monitor fails closed connections"
    )
    parser.add_argument(
        "--revive", action="store_true", help="bring the dead back under their identities"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json", type=output_file, metavar="FILE", help="also write the result here"
    )
    parser.add_argument("--quick", action="store_true", help="1,000 hearts for 2 minutes")


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.hearts, args.minutes, args.warmup = 1000, 2.0, 110.0
    period = args.period / 1000
    bound = SLACK if args.fail_on_disconnect else (args.max_misses + 2) * period + SLACK
    beats: list[BeatReport] = []
    kills: list[tuple[str, float]] = []
    samples: list[tuple[float, int]] = []
    options = ["--fail-on-disconnect"] if args.fail_on_disconnect else []
    with children() as started:
        monitor = MonitorChild(
            "greenheart", args.period, f"--max-misses={args.max_misses}", "--events", *options
        )
        started.append(monitor.child)
        fleet = monitor.load(
            "soak fleet",
            "soak-fleet",
            f"--size={args.hearts}",
            f"--churn={args.churn}",
            f"--every={args.churn_every}",
            f"--garbage={args.hearts / period * args.garbage}",
            f"--seed={args.seed}",
            *(["--revive"] if args.revive else []),
        )
        started.append(fleet)
        try:
            fleet.expect(Started, STARTUP_SECONDS)
            began = time.monotonic()
            end = began + args.minutes * 60
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(SAMPLE_EVERY, left))
                beats += monitor.said()
                for line in fleet.said():
                    if isinstance(line, Killed):
                        kills.extend((heart, line.at) for heart in line.hearts)
                samples.append((time.monotonic() - began, rss_kib(monitor.pid)))
                _progress(samples[-1], beats, kills, monitor.events)
        except ChildFailed as error:
            print(f"FAIL: {error}")
            return 1
    result = summarise(args, beats, monitor.events, kills, samples, bound, end)
    print(json.dumps(result, indent=2))
    problems = problems_of(result)
    for problem in problems:
        print("FAIL:", problem)
    if not problems:
        print("OK: no false failures, every kill detected in time, memory flat")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if problems else 0


def _progress(
    sample: tuple[float, int],
    beats: Sequence[BeatReport],
    kills: Sequence[tuple[str, float]],
    events: Sequence[MonitorEvent],
) -> None:
    failed = sum(isinstance(event, Failed) for event in events)
    killed = len(kills)
    hearts = beats[-1].hearts if beats else 0
    print(
        f"{sample[0]:6.0f} s: {hearts} hearts, {killed} killed, {failed} failed,"
        f" bad pongs {sum(beat.bad for beat in beats)},"
        f" unjudged beats {sum(not beat.judged for beat in beats)},"
        f" RSS {sample[1] / 1024:.1f} MiB",
        flush=True,
    )


def match(
    kills: Sequence[tuple[str, float]], failures: Sequence[tuple[str, float]], until: float
) -> tuple[list[float], list[tuple[str, float]], list[tuple[str, float]]]:
    """Each kill paired with the first failure of its heart after it and before its next kill:
    the latencies, the failures no kill explains (false), and the kills of before ``until``
    that no failure answered (undetected)."""
    by_heart: dict[str, list[tuple[float, str]]] = {}
    for heart, at in kills:
        by_heart.setdefault(heart, []).append((at, "kill"))
    for heart, at in failures:
        by_heart.setdefault(heart, []).append((at, "failure"))
    latencies, false, undetected = [], [], []
    for heart, moments in by_heart.items():
        pending: float | None = None
        for at, what in sorted(moments):
            if what == "kill":
                if pending is not None and pending < until:
                    undetected.append((heart, pending))
                pending = at
            elif pending is None:
                false.append((heart, at))
            else:
                latencies.append(at - pending)
                pending = None
        if pending is not None and pending < until:
            undetected.append((heart, pending))
    return sorted(latencies), false, undetected


def summarise(
    args: argparse.Namespace,
    beats: Sequence[BeatReport],
    events: Sequence[MonitorEvent],
    kills: Sequence[tuple[str, float]],
    samples: Sequence[tuple[float, int]],
    bound: float,
    end: float,
) -> dict[str, Any]:
    failures = [(event.heart, event.at) for event in events if isinstance(event, Failed)]
    # kills of the last moments cannot have been detected yet
    detections, false, undetected = match(kills, failures, until=end - bound)
    warm = [rss for at, rss in samples if at >= args.warmup]
    growth_mib = (max(warm) - warm[0]) / 1024 if len(warm) > 1 else 0.0
    p50, p99 = percentile(detections, 0.5), percentile(detections, 0.99)
    return {
        "hearts": args.hearts,
        "period_ms": args.period,
        "minutes": args.minutes,
        "max_misses": args.max_misses,
        "fail_on_disconnect": args.fail_on_disconnect,
        "revive": args.revive,
        "killed": sum(at < end - bound for _, at in kills),
        "failed": len(failures),
        "false_failures": len(false),
        "false_failure_examples": [heart for heart, _ in false[:3]],
        "failures_by_cause": failures_by_cause(events),
        "counted_false_failures": sum(isinstance(event, FalselyFailed) for event in events),
        "undetected": len(undetected),
        "detection_bound_s": round(bound, 3),
        "detection_max_s": round(detections[-1], 4) if detections else None,
        "detection_p50_s": None if p50 is None else round(p50, 4),
        "detection_p99_s": None if p99 is None else round(p99, 4),
        "late_detections": sum(latency > bound for latency in detections),
        "bad_pongs": sum(beat.bad for beat in beats),
        "beats": len(beats),
        "unjudged_beats": sum(not beat.judged for beat in beats),
        "rss_after_warmup_mib": round(warm[0] / 1024, 1) if warm else None,
        "rss_growth_mib": round(growth_mib, 2),
        "new_hearts": sum(isinstance(event, Registered) for event in events),
    }


def problems_of(result: dict[str, Any]) -> list[str]:
    problems = []
    if result["false_failures"]:
        problems.append(
            f"{result['false_failures']} false failures, e.g. {result['false_failure_examples']}"
        )
    if result["counted_false_failures"]:
        problems.append(f"the monitor counted {result['counted_false_failures']} false failures")
    if result["undetected"] or result["late_detections"]:
        problems.append(
            f"{result['undetected']} kills undetected, {result['late_detections']} detected late"
        )
    if result["rss_growth_mib"] >= GROWTH_LIMIT_MIB:
        problems.append(f"RSS grew {result['rss_growth_mib']:.1f} MiB after warm-up")
    return problems
