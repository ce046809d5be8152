"""``greenheart bench``: the load tests, each a subcommand on the one harness.

- ``ramp`` (the default, so ``greenheart bench --hearts ...`` is a ramp): how many hearts a
  monitor holds at a period, against ipyparallel's and the bare loop
  (:mod:`~greenheart.bench.capacity`);
- ``fleet``: what a simulated heart costs, and how faithfully it misbehaves
  (:mod:`~greenheart.bench.fleet`);
- ``soak``: minutes of churn and garbage, checked for false failures, late detections and
  memory growth (:mod:`~greenheart.bench.soak`);
- ``detect``: how long after a heart dies its monitor says so (:mod:`~greenheart.bench.detect`);
- ``storm``: a monitor holding a fleet under a storm of connections that never speak
  ZeroMQ, fast and past its open-file limit (:mod:`~greenheart.bench.storm`);
- ``ipyparallel``: a real ipyparallel controller under a storm of simulated engines
  (:mod:`~greenheart.bench.controller`);
- ``tune``: a misbehaving load recorded, tuned to targets, and the choice checked live
  (:mod:`~greenheart.bench.tuning`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from greenheart.bench import capacity, controller, detect, fleet, page, soak, storm, tuning


class BenchModule(Protocol):
    """What each benchmark's module has."""

    @property
    def HELP(self) -> str: ...

    @property
    def DESCRIPTION(self) -> str | None: ...

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


DEFAULT = "ramp"
SUBCOMMANDS: dict[str, BenchModule] = {
    "ramp": capacity,
    "fleet": fleet,
    "soak": soak,
    "detect": detect,
    "storm": storm,
    "ipyparallel": controller,
    "page": page,
    "tune": tuning,
}


def with_default_subcommand(argv: Sequence[str]) -> list[str]:
    """``greenheart`` arguments with ``ramp`` put after ``bench`` when no subcommand follows."""
    argv = list(argv)
    # the command is the first argument that is not an option (greenheart -v bench ...)
    command = next((n for n, arg in enumerate(argv) if not arg.startswith("-")), None)
    if command is not None and argv[command] == "bench":
        after = argv[command + 1 : command + 2]
        if not after or after[0] not in (*SUBCOMMANDS, "-h", "--help"):
            argv.insert(command + 1, DEFAULT)
    return argv


def add_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench",
        help="on loopback: load tests (ramp, the default; fleet; soak; detect; storm; ipyparallel;"
        " page)",
        description="Load tests on loopback, each in fresh processes: ramp (the default, so"
        " 'greenheart bench --hearts ...' is a ramp) measures how many hearts a monitor holds;"
        " fleet what a simulated heart costs; soak checks minutes of churn and garbage; detect"
        " times crash detection; storm floods the pong port with connections; ipyparallel"
        " load-tests a real ipyparallel controller; page weighs the live page under a fleet.",
    )
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name, module in SUBCOMMANDS.items():
        parser = kinds.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(parser)
        parser.set_defaults(run=_run(module))


def _run(module: BenchModule) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        # SIGTERM unwinds like Ctrl-C, so that every child process is stopped on the way out
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            return module.run(args)
        except KeyboardInterrupt:
            print(
                f"greenheart bench {args.bench}: interrupted; every child process stopped",
                file=sys.stderr,
            )
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)

    return run


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
