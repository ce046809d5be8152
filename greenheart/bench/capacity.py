"""``greenheart bench ramp`` (the default): ramp the load on monitors and name their capacity."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO, TypeVar

import attrs

from greenheart.bench import report
from greenheart.bench.child import ChildFailed
from greenheart.bench.lines import BeatReport
from greenheart.bench.programs import MONITORS
from greenheart.bench.ramp import (
    RampPlan,
    Step,
    StepResult,
    ramp_goes_on,
    run_again,
    unsettled,
)
from greenheart.bench.runner import StepRunner, pinned_cpus
from greenheart.core.checks import count, listed, output_file, positive_count, positive_float
from greenheart.core.errors import UsageError, require_extra

T = TypeVar("T")

DEFAULT_HEARTS = "1000,2000,4000"
DEFAULT_PERIODS = "200,133,100,90,80,73,67,60,55,50"
DEFAULT_DURATION = 40.0


HELP = "ramp the load on a monitor and report its capacity (the default)"
DESCRIPTION = (
    "Ramp hearts, then shorten the period, holding each step; report per step and name the"
    " last good step (every heart on time >= 99%%, none wrongly failed) as the capacity."
)


def _numbers(kind: Callable[[str], T]) -> Callable[[str], list[T]]:
    parse = listed(kind)

    def numbers(text: str) -> list[T]:
        values = parse(text)
        if not values:
            raise argparse.ArgumentTypeError(f"a comma-separated list, not {text!r}")
        return values

    return numbers


def _monitors(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in MONITORS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"monitors are {', '.join(MONITORS)}; got {text!r}")
    return list(dict.fromkeys(names))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hearts",
        type=_numbers(positive_count),
        default=DEFAULT_HEARTS,
        help=f"hearts to ramp through at the longest period (default {DEFAULT_HEARTS})",
    )
    parser.add_argument(
        "--period",
        type=_numbers(positive_float),
        default=DEFAULT_PERIODS,
        help="periods in ms; the ramp then shortens the period at the most hearts"
        f" (default {DEFAULT_PERIODS})",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=DEFAULT_DURATION,
        help="seconds of measurement per monitor, shared among the steps (default"
        f" {DEFAULT_DURATION:g}); starting each step's processes comes on top",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="each monitor on a CPU of its own and its fleets on the others, so that a step"
        " measures the monitor rather than the scheduler",
    )
    parser.add_argument(
        "--processes",
        type=positive_count,
        default=1,
        help="fleet processes sharing the hearts (default 1)",
    )
    parser.add_argument(
        "--monitor",
        type=_monitors,
        default=["greenheart"],
        help="which monitor(s) to ramp, comma-separated: greenheart, greenheart-sockets (on"
        " sockets made as a caller would, not by bind()), greenheart-curve (CURVE"
        " on: encrypted, keys checked), greenheart-unwatched (no transport liveness),"
        " greenheart-zmtp (ZeroMQ's heartbeats for it), ipyparallel, or raw (a bare pyzmq"
        " loop: the transport's limit); several alternate step by step",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also ramp ipyparallel's HeartMonitor, alternating steps, and print the ratios",
    )
    parser.add_argument(
        "--max-misses", type=count, default=3, help="the monitors' max_misses (default 3)"
    )
    parser.add_argument(
        "--repeat",
        type=positive_count,
        default=1,
        metavar="N",
        help="run the whole ramp N times and report each monitor's capacity in every run, and"
        " its median CPU per pong against the bare loop's (raw)",
    )
    parser.add_argument("--json", type=output_file, metavar="FILE", help="write every figure here")
    parser.add_argument(
        "--plot",
        type=output_file,
        metavar="FILE",
        help="draw latency and on-time %% against load (PNG)",
    )


class ProgressLine:
    """One line on a terminal, rewritten as beats come in; plain lines elsewhere."""

    def __init__(self, out: TextIO):
        self.out = out
        self.live = out.isatty()
        self._shown = 0.0

    def beat(self, monitor: str, step: Step, held: int, beat: BeatReport) -> None:
        now = time.monotonic()
        if not self.live or now - self._shown < 0.25:
            return
        self._shown = now
        on_time = 100.0 * beat.on_time / max(1, step.hearts)
        self.out.write(
            f"\r  {monitor:<16} {step}: beat {held}, {beat.responded} answered,"
            f" {on_time:.1f}% on time   "
        )
        self.out.flush()

    def step_done(self, result: StepResult) -> None:
        if self.live:
            self.out.write("\r\x1b[K")
        pongs = f"{result.pongs_per_second:.0f} pongs/s, " if result.settled else ""
        self.out.write(f"  {result.monitor:<16} {result.step}: {pongs}{result.verdict}\n")
        self.out.flush()


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    monitors = list(args.monitor)
    if args.compare and "ipyparallel" not in monitors:
        monitors.append("ipyparallel")
    if "ipyparallel" in monitors:
        require_extra("ipyparallel", "ipyparallel")
    if args.processes < 1:
        raise UsageError("--processes must be at least 1")
    if args.pin:
        pinned_cpus()  # refuses a machine of one CPU before anything starts
    if args.duration <= 0:
        raise UsageError("--duration must be positive")
    if args.plot:
        require_extra("matplotlib", "plot")
    steps = RampPlan(args.hearts, args.period).steps()
    hold = args.duration / len(steps)
    progress = ProgressLine(err)
    runner = StepRunner(
        hold=hold,
        processes=args.processes,
        max_misses=args.max_misses,
        progress=progress.beat,
        pin=args.pin,
    )
    err.write(
        f"greenheart bench: {len(steps)} steps of {hold:.1f} s for {', '.join(monitors)};"
        f" {args.processes} fleet process(es), loopback TCP"
        f"{'; the monitor on a CPU of its own' if args.pin else ''}\n"
    )
    if args.repeat < 1:
        raise UsageError("--repeat must be at least 1")
    runs = []
    for number in range(args.repeat):
        if args.repeat > 1:
            err.write(f"greenheart bench: run {number + 1} of {args.repeat}\n")
        results = _ramp(runner, monitors, steps, progress)
        runs.append(results)
        print(report.table(results), file=out)
        print(file=out)
        print(report.summary(results, monitors), file=out)
    repeated = None
    if args.repeat > 1 and "raw" in monitors:
        text, repeated = report.spread(runs, monitors, "raw")
        print(f"\nover {args.repeat} runs, against the bare loop:\n{text}", file=out)
    config = {
        "hearts": args.hearts,
        "periods_ms": args.period,
        "hold_seconds": hold,
        "processes": args.processes,
        "pinned": args.pin,
        "max_misses": args.max_misses,
        "monitors": monitors,
        "repeat": args.repeat,
    }
    if args.json:
        doc = report.document(results, monitors, config)
        if args.repeat > 1:
            doc["runs"] = [
                {"steps": [r.as_dict() for r in run], "capacity": report.capacities(run, monitors)}
                for run in runs
            ]
            doc["spread"] = repeated
        report.write_json(args.json, doc)
    if args.plot:
        report.plot(args.plot, results, monitors)
    return 0


def _ramp(
    runner: StepRunner, monitors: Sequence[str], steps: Sequence[Step], progress: ProgressLine
) -> list[StepResult]:
    """Every monitor through the steps, alternating, each stopping at its first bad step."""
    results: list[StepResult] = []
    for step in steps:
        for monitor in monitors:
            ramp = [result for result in results if result.monitor == monitor]
            if not ramp_goes_on(ramp):
                continue
            runs = 0
            while True:
                runs += 1
                try:
                    result = runner.run(monitor, step)
                except (TimeoutError, ChildFailed) as error:
                    result = unsettled(monitor, step, str(error))
                if not run_again(result, runs):
                    break
                progress.step_done(result)  # shown, then run again in fresh processes
            if runs > 1:
                note = f"run {runs} times: the fleet fell behind in the run before"
                result = attrs.evolve(result, note=note)
            results.append(result)
            progress.step_done(result)
    return results
