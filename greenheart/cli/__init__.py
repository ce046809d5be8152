"""The ``greenheart`` command: one module a subcommand, assembled here.

Errors the user can fix (:class:`~greenheart.core.errors.UsageError`: a bad address, a key
file that cannot be read, a size that cannot fit) print as one line with exit status 2;
anything else is a bug in greenheart and surfaces as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from greenheart import __version__
from greenheart.bench import command as bench_command
from greenheart.cli import demo, engines, events, fleet, heart, ipcontroller, keys, monitor, tune
from greenheart.core.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenheart",
        description="A gevent heartbeat monitor and hearts, ipyparallel-compatible.",
    )
    parser.add_argument("--version", action="version", version=f"greenheart {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeatable)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    monitor.add_command(commands)
    heart.add_command(commands)
    fleet.add_command(commands)
    events.add_command(commands)
    keys.add_keys_command(commands)
    demo.add_command(commands)
    ipcontroller.add_command(commands)
    engines.add_command(commands)
    tune.add_command(commands)
    bench_command.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [ipcontroller.NAME]:
        try:
            return ipcontroller.main(argv[1:])
        except UsageError as error:
            print(f"greenheart {ipcontroller.NAME}: error: {error}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(bench_command.with_default_subcommand(argv))
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        status: int = args.run(args)
    except UsageError as error:
        print(f"greenheart {args.command}: error: {error}", file=sys.stderr)
        return 2
    return status
