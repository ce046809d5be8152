"""``greenheart events``: follow a monitor's event stream, every event once, as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys

from greenheart.core.checks import connect_address, count
from greenheart.integrations.events import EventClient


def add_command(commands: argparse._SubParsersAction) -> None:
    events = commands.add_parser(
        "events", help="print a monitor's events (greenheart monitor --events) as JSON lines"
    )
    events.add_argument(
        "addr", type=connect_address, metavar="ADDR", help="the stream's address (--events)"
    )
    events.add_argument(
        "--snapshot",
        type=connect_address,
        metavar="ADDR",
        help="its snapshot socket (default: the next port, as the monitor binds it)",
    )
    events.add_argument(
        "--since", type=count, metavar="SEQ", help="start after this event, not from a snapshot"
    )
    events.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    client = EventClient(args.addr, args.snapshot, since=args.since)
    try:
        for event in client.events():
            sys.stdout.write(json.dumps(event) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
    return 0
