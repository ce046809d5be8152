"""``greenheart bench``: the load tests, each a subcommand on the one harness.

The subcommands are :data:`SUBCOMMANDS`, each a module with its one-line ``HELP``: the
command's help names them, and its ``--help`` lists them with theirs. ``ramp`` is the
default, so ``greenheart bench --hearts ...`` is a ramp.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from greenheart.bench import capacity, controller, detect, fleet, page, soak, storm, tuning, vanish


class BenchModule(Protocol):
    """What each benchmark's module has."""

    @property
    def HELP(self) -> str: ...

    @property
    def DESCRIPTION(self) -> str | None: ...

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


#: the bench run when ``greenheart bench`` is given none
DEFAULT = "ramp"
#: every bench, by its subcommand's name, in the order ``--help`` lists them: the one list
SUBCOMMANDS: dict[str, BenchModule] = {
    "ramp": capacity,
    "fleet": fleet,
    "soak": soak,
    "detect": detect,
    "storm": storm,
    "ipyparallel": controller,
    "page": page,
    "tune": tuning,
    "vanish": vanish,
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
    others = [name for name in SUBCOMMANDS if name != DEFAULT]
    bench = commands.add_parser(
        "bench",
        help=f"on loopback: load tests ({DEFAULT}, the default; {'; '.join(others)})",
        description="Load tests on loopback, each in fresh processes: one BENCH of those"
        f" below, {DEFAULT} by default (so 'greenheart bench --hearts ...' is a {DEFAULT}).",
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
