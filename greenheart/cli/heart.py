"""``greenheart heart``: one heart answering a monitor, ours or ipyparallel's."""

from __future__ import annotations

import argparse

from greenheart.cli.args import add_address_arguments
from greenheart.cli.keys import add_client_arguments, client_curve
from greenheart.cli.signals import serve
from greenheart.core.pingwatch import Change
from greenheart.core.wire import display_id, parse_id
from greenheart.green.heart import Heart


def add_command(commands: argparse._SubParsersAction) -> None:
    heart = commands.add_parser("heart", help="run one heart answering a monitor")
    add_address_arguments(heart, bind=False)
    heart.add_argument("--id", metavar="NAME", help="identity (0x... for hex); random if omitted")
    add_client_arguments(heart)
    heart.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    heart = Heart(
        args.ping,
        args.pong,
        heart_id=parse_id(args.id) if args.id else None,
        curve=client_curve(args),
    )
    heart.add_hearing_handler(_say)
    banner = (
        f"greenheart heart {display_id(heart.id)}: answering {args.ping} on {args.pong};"
        " Ctrl-C stops"
    )
    return serve("heart", heart, banner)


def _say(change: Change, silence: float) -> None:
    if change is Change.LOST:
        print(f"greenheart heart: monitor lost: no ping for {silence:.1f} s", flush=True)
    else:
        print(f"greenheart heart: monitor back after {silence:.1f} s", flush=True)
