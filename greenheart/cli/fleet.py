"""``greenheart fleet``: many simulated hearts, with scripted misbehaviour, until Ctrl-C."""

from __future__ import annotations

import argparse
import json

import attrs

from greenheart.cli.args import (
    add_address_arguments,
    add_behaviour_arguments,
    behaviour_from,
    scenario_from,
)
from greenheart.cli.keys import add_client_arguments, client_curve
from greenheart.cli.printer import now_text
from greenheart.cli.signals import serve
from greenheart.core.behaviour import Reconnect
from greenheart.core.checks import count, positive_float, probability
from greenheart.green.fleet import FleetStatus, HeartFleet


def add_command(commands: argparse._SubParsersAction) -> None:
    fleet = commands.add_parser("fleet", help="run many simulated hearts against a monitor")
    add_address_arguments(fleet, bind=False)
    fleet.add_argument("--size", type=count, required=True, metavar="N", help="hearts to run")
    add_behaviour_arguments(fleet)
    fleet.add_argument(
        "--reconnect-max",
        type=positive_float,
        metavar="MS",
        help="back off reconnecting (doubling from 100 ms) up to MS; off by default, as a Heart",
    )
    fleet.add_argument(
        "--reconnect-jitter",
        type=probability,
        default=0.0,
        metavar="F",
        help="spread each heart's reconnect interval by up to F of itself (0 to 1)",
    )
    fleet.add_argument(
        "--every-ping",
        action="store_true",
        help="answer every ping queued, not only the newest (as IPython.parallel's thread device"
        " does)",
    )
    fleet.add_argument("--prefix", help="identities are PREFIX-N (default: fleet-<random>)")
    fleet.add_argument("--status-every", type=positive_float, default=5.0, metavar="SECONDS")
    fleet.add_argument("--json", action="store_true", help="print status as JSON lines")
    add_client_arguments(fleet)
    fleet.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fleet = HeartFleet(
        args.ping,
        args.pong,
        size=args.size,
        behaviour=behaviour_from(args),
        scenario=scenario_from(args),
        curve=client_curve(args),
        reconnect=Reconnect(max_ms=args.reconnect_max or 0, jitter=args.reconnect_jitter),
        answer_every_ping=args.every_ping,
        **({"prefix": args.prefix} if args.prefix else {}),
    )
    banner = (
        f"greenheart fleet {fleet.prefix}: {args.size} hearts answering {args.ping} on"
        f" {args.pong}; Ctrl-C stops"
    )
    return serve(
        "fleet", fleet, banner, lambda: status_line(fleet.status(), args.json), args.status_every
    )


def status_line(status: FleetStatus, as_json: bool) -> str:
    if as_json:
        fields = attrs.asdict(status)
        # the line's keys stay what they have always been
        for key, count in (
            ("hearts", "heart_count"),
            ("alive", "alive_count"),
            ("silent", "silent_count"),
        ):
            fields[key] = fields.pop(count)
        return json.dumps({"event": "status", "time": now_text(), **fields})
    return (
        f"{now_text()} {status.alive_count} alive ({status.silent_count} silent,"
        f" {status.heart_count - status.alive_count} dead), {status.fleet_pings} pings"
        f" ({status.skipped_pings} skipped),"
        f" {status.pongs} pongs, {status.dropped} dropped, {status.delayed} delayed,"
        f" {status.unsent} unsent" + ("; its monitor is lost" if status.monitor_lost else "")
    )
