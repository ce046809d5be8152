"""``greenheart bench fleet``: what a simulated heart costs, and how faithfully it misbehaves.

Every monitor and load runs in its own process, on loopback:

- density: one fleet of ``--hearts`` (9,000) against a greenheart monitor at a 1 s period
  for ``--hold`` (60) seconds; every beat must hear every heart (no probation, no late
  pong, no failure);
- descriptors and memory a heart: a fleet, and as many :class:`~greenheart.Heart` objects;
- round completion: 5,000 hearts at 500 ms, ping sent to its last pong, p50 and p99;
- fidelity: ``--pings`` pings to 100 hearts with ``exp:20`` delays and 5% loss, each pong
  timed on the wire by a bare PUB and ROUTER in this process;
- ipyparallel's thread hearts for comparison: added ``--ipyparallel-step`` at a time to one
  process until the monitor stops hearing all of them, creating one fails, or
  ``--ipyparallel-limit`` is reached.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greenheart.bench.child import STARTUP_SECONDS, Child, ChildFailed, children
from greenheart.bench.lines import ThreadHearts, ThreadHeartsFailed
from greenheart.bench.ramp import Step, StepResult
from greenheart.bench.runner import MonitorChild, NotSettled, StepRunner
from greenheart.core.checks import output_file, positive_count, positive_float
from greenheart.core.stats import percentile
from greenheart.green.limits import raise_open_file_limit

HELP = "what a simulated heart costs, and how faithfully it misbehaves"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hearts", type=positive_count, default=9000, help="hearts in the density run"
    )
    parser.add_argument(
        "--hold", type=positive_float, default=60.0, help="seconds of the density run"
    )
    parser.add_argument(
        "--pings", type=positive_count, default=100, help="pings of the fidelity run"
    )
    parser.add_argument("--ipyparallel-step", type=positive_count, default=250, metavar="N")
    parser.add_argument("--ipyparallel-limit", type=positive_count, default=3000, metavar="N")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1,000 hearts, short holds"
    )
    parser.add_argument("--json", type=output_file, metavar="FILE", help="write every figure here")


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.hearts, args.hold, args.pings = 1000, 5.0, 20
        args.ipyparallel_step, args.ipyparallel_limit = 50, 100
    limit = raise_open_file_limit()
    hearts, hold = args.hearts, args.hold
    results: dict[str, Any] = {"open_file_limit": limit, "cores": os.cpu_count()}

    def measure(name: str, how: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        print(f"-- {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        results[name] = how()
        took = time.monotonic() - started
        print(f"   {json.dumps(results[name], default=str)} ({took:.0f} s)", flush=True)
        return dict(results[name])

    def step(hearts: int, period: float, hold: float, load: str = "fleet") -> dict[str, Any]:
        result = StepRunner(hold=hold, load=load).run("greenheart", Step(hearts, period))
        return _figures(result)

    small, completion = min(1000, hearts), min(5000, hearts)
    density = measure(f"density_{hearts}", lambda: step(hearts, 1000, hold))
    fleet = measure(f"fleet_{small}", lambda: step(small, 1000, max(1.0, hold / 12)))
    objects = measure(
        f"heart_objects_{small}", lambda: step(small, 500, max(1.0, hold / 30), "hearts")
    )
    rounds = measure(f"round_completion_{completion}", lambda: step(completion, 500, hold / 2))
    fidelity = measure("fidelity", lambda: fidelity_run(args.pings, min(100, hearts)))
    ipp = measure(
        "ipyparallel_thread_hearts",
        lambda: ipyparallel_ramp(args.ipyparallel_step, args.ipyparallel_limit),
    )
    rows = [
        (
            "density: hearts in one fleet, 1 s period, zero misses",
            f"{hearts} for {hold:g} s: {'yes' if density['zero_misses'] else 'NO'}",
            ">= 9,000",
        ),
        (
            "ipyparallel thread Hearts held by one process",
            f"{ipp['held']} ({ipp['stopped_because']})",
            "< 2,000",
        ),
        (
            "descriptors a heart: fleet / Heart objects",
            f"{fleet['fds_per_heart']:.2f} / {objects['fds_per_heart']:.2f}",
            "2 / 4",
        ),
        (
            f"fleet RSS a heart at {small} / at {hearts}",
            f"{fleet['rss_kib_per_heart']:.1f} / {density['rss_kib_per_heart']:.1f} KiB",
            "<= 40 KiB",
        ),
        ("ipyparallel thread Heart RSS a heart", f"{ipp['rss_per_heart_kib']:.0f} KiB", "~200"),
        (
            f"round completion p99 (ping to last pong), {completion} hearts",
            f"{rounds['round_p99_ms']:.1f} ms (p50 {rounds['round_p50_ms']:.1f})",
            "<= 150 ms",
        ),
        (
            f"loss asked 5%: observed over {fidelity['pongs_expected']:,} pongs",
            f"{100 * fidelity['loss']:.2f}%",
            "within 2 pp",
        ),
        (
            "delay asked exp mean 20 ms: observed mean (p50, p90)",
            f"{fidelity['delay_mean_ms']:.1f} ms ({fidelity['delay_p50_ms']:.1f},"
            f" {fidelity['delay_p90_ms']:.1f}; ideal 13.9, 46.1)",
            "within 10%",
        ),
    ]
    width = max(len(row[0]) for row in rows)
    print()
    for name, value, target in rows:
        print(f"{name:<{width}}  {value}   [target {target}]")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def _figures(result: StepResult) -> dict[str, Any]:
    """What this benchmark reports of a step."""
    if not result.settled:
        raise NotSettled(result.verdict)
    return {
        "hearts": result.step.hearts,
        "period_ms": result.step.period_ms,
        "beats": result.beats,
        "zero_misses": result.zero_misses,
        "min_responded": result.min_responded,
        "max_on_probation": result.max_on_probation,
        "late_pongs": result.late_pongs,
        "false_failures": result.false_failures,
        "round_p50_ms": result.round_p50_ms,
        "round_p99_ms": result.round_p99_ms,
        "monitor_cpu_percent": result.monitor_cpu_percent,
        "rss_kib_per_heart": result.fleet_rss_kib_per_heart,
        "fds_per_heart": result.fleet_fds_per_heart,
    }


def ipyparallel_ramp(step: int, limit: int, period_ms: float = 1000) -> dict[str, Any]:
    """ipyparallel's thread hearts in one process, ``step`` more at a time, until the
    monitor stops hearing every one of them (or one cannot be made)."""
    held, why = 0, f"reached the limit of {limit}"
    last: ThreadHearts | None = None
    with children() as started:
        monitor = MonitorChild("greenheart", period_ms, "--max-misses=10")
        started.append(monitor.child)
        hearts = monitor.load(
            "ipyparallel hearts",
            "ipyparallel-hearts",
            f"--size={step}",
            f"--limit={limit}",
            stdin=True,
        )
        started.append(hearts)
        while True:
            try:
                report = hearts.next(2 * STARTUP_SECONDS)
            except ChildFailed as error:
                why = f"the process died past {held}: {error}"
                break
            if isinstance(report, ThreadHeartsFailed):
                why = f"creating heart {report.hearts + 1} failed: {report.error}"
                break
            if not isinstance(report, ThreadHearts):
                raise ChildFailed(f"ipyparallel-hearts said {report!r}")
            count = report.hearts
            try:
                monitor.until_heard(count, 30)
                beats = monitor.hold(3 * period_ms / 1000)[1:]
            except (TimeoutError, ChildFailed) as error:
                why = f"at {count} hearts: {error}"
                break
            if min(b.responded for b in beats) < count or max(b.on_probation for b in beats):
                why = f"at {count} hearts the monitor missed some"
                break
            held, last = count, report
            if count >= limit:
                break
            hearts.say("more")
    return {
        "held": held,
        "stopped_because": why,
        "rss_per_heart_kib": (last.rss_kib - last.rss_before_kib) / held if last else None,
        "threads_per_heart": (last.threads - 1) / held if last else None,
        "fds_per_heart": last.fds / held if last else None,
    }


def fidelity_run(
    pings: int, hearts: int, delay: str = "exp:20", loss: float = 0.05
) -> dict[str, Any]:
    """Ping a fleet from a bare PUB, time every pong at a bare ROUTER: what arrived, when."""
    import zmq

    context = zmq.Context()
    pub, router = context.socket(zmq.XPUB), context.socket(zmq.ROUTER)
    with tempfile.TemporaryDirectory() as workdir, children() as started:
        ping, pong = f"ipc://{workdir}/ping", f"ipc://{workdir}/pong"
        pub.bind(ping)
        router.bind(pong)
        fleet = ["fleet", "--ping", ping, "--pong", pong, "--size", str(hearts), "--delay", delay,
                 "--loss", str(loss), "--seed", "1", "--status-every", "3600"]  # fmt: skip
        started.append(Child.command("fleet", *fleet))
        try:
            if not pub.poll(int(STARTUP_SECONDS * 1000)):
                raise TimeoutError("the fleet never subscribed")
            pub.recv()
            seen: set[bytes] = set()
            while len(seen) < hearts:  # warm up until every heart's connection is up
                pub.send(b"warm-up")
                while router.poll(20):
                    seen.add(router.recv_multipart()[0])
            while router.poll(500):
                router.recv_multipart()
            sent_at: dict[bytes, float] = {}
            delays: list[float] = []
            for n in range(pings):
                payload = b"%d" % n
                sent_at[payload] = time.monotonic()
                pub.send(payload)
                deadline = time.monotonic() + 0.05
                while (wait := deadline - time.monotonic()) > 0 and router.poll(int(wait * 1000)):
                    _, echoed = router.recv_multipart()
                    delays.append(time.monotonic() - sent_at[echoed])
            while router.poll(2000):  # the long tail of delayed pongs
                _, echoed = router.recv_multipart()
                delays.append(time.monotonic() - sent_at[echoed])
        finally:
            pub.close(0)
            router.close(0)
            context.term()
    expected = pings * hearts
    delays_ms = [seconds * 1000 for seconds in delays]
    return {
        "pongs_expected": expected,
        "pongs_received": len(delays),
        "loss": 1 - len(delays) / expected,
        "delay_mean_ms": statistics.fmean(delays_ms),
        "delay_p50_ms": percentile(delays_ms, 0.5),
        "delay_p90_ms": percentile(delays_ms, 0.9),
    }
