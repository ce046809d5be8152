"""``greenheart fleet``: many simulated hearts, with scripted misbehaviour, until Ctrl-C."""

from __future__ import annotations

import argparse
import json
import sys

import attrs
import gevent

from greenheart.cli.args import count, delay, event, positive_float, probability, slow
from greenheart.cli.keys import add_client_arguments, client_curve
from greenheart.cli.printer import now_text
from greenheart.cli.signals import exit_status, wait_for_signal
from greenheart.core.behaviour import Behaviour, Reconnect
from greenheart.green.fleet import FleetStatus, HeartFleet


def add_command(commands: argparse._SubParsersAction) -> None:
    fleet = commands.add_parser("fleet", help="run many simulated hearts against a monitor")
    fleet.add_argument("--ping", required=True, metavar="ADDR", help="the monitor's ping address")
    fleet.add_argument("--pong", required=True, metavar="ADDR", help="the monitor's pong address")
    fleet.add_argument("--size", type=count, required=True, metavar="N", help="hearts to run")
    fleet.add_argument(
        "--delay", type=delay, metavar="SPEC", help="reply delay: fixed:MS, uniform:LO:HI, exp:MEAN"
    )
    fleet.add_argument(
        "--loss", type=probability, default=0.0, metavar="P", help="pongs lost, 0 to 1"
    )
    fleet.add_argument(
        "--slow",
        type=slow,
        metavar="FRACTION:SPEC",
        help="a fraction of slow hearts: 0.1:fixed:500",
    )
    for kind, syntax, text in [
        ("die", "T:N", "at T seconds, N hearts die"),
        ("revive", "T:N", "at T seconds, N dead hearts come back"),
        ("churn", "EVERY:K", "every EVERY seconds, K hearts leave and K join"),
        ("flap", "N:DOWN:UP", "N hearts answer for UP seconds, then go silent for DOWN"),
    ]:
        fleet.add_argument(
            f"--{kind}", type=event(kind), action="append", default=[], metavar=syntax, help=text
        )
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
        help="answer every ping queued, not only the newest (as the seed's thread device does)",
    )
    fleet.add_argument("--seed", type=int, default=0, help="same seed, same run")
    fleet.add_argument("--prefix", help="identities are PREFIX-N (default: fleet-<random>)")
    fleet.add_argument("--status-every", type=positive_float, default=5.0, metavar="SECONDS")
    fleet.add_argument("--json", action="store_true", help="print status as JSON lines")
    add_client_arguments(fleet)
    fleet.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    slow_fraction, slow_delay = args.slow or (0.0, None)
    behaviour = Behaviour(
        seed=args.seed,
        delay=args.delay,
        loss=args.loss,
        slow_fraction=slow_fraction,
        slow_delay=slow_delay,
    )
    scenario = [*args.die, *args.revive, *args.churn, *args.flap]
    fleet = HeartFleet(
        args.ping,
        args.pong,
        size=args.size,
        behaviour=behaviour,
        scenario=scenario,
        curve=client_curve(args),
        reconnect=Reconnect(max_ms=args.reconnect_max or 0, jitter=args.reconnect_jitter),
        answer_every_ping=args.every_ping,
        **({"prefix": args.prefix} if args.prefix else {}),
    )
    with fleet:
        print(
            f"greenheart fleet {fleet.prefix}: {args.size} hearts answering {args.ping} on"
            f" {args.pong}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        reporter = gevent.spawn(_report, fleet, args.status_every, args.json)
        try:
            stopped = wait_for_signal(fleet)
        finally:
            reporter.kill()
    return exit_status("fleet", stopped)


def status_line(status: FleetStatus, as_json: bool) -> str:
    if as_json:
        return json.dumps({"event": "status", "time": now_text(), **attrs.asdict(status)})
    return (
        f"{now_text()} {status.alive} alive ({status.silent} silent,"
        f" {status.hearts - status.alive} dead), {status.fleet_pings} pings"
        f" ({status.skipped_pings} skipped),"
        f" {status.pongs} pongs, {status.dropped} dropped, {status.delayed} delayed,"
        f" {status.unsent} unsent"
    )


def _report(fleet: HeartFleet, every: float, as_json: bool) -> None:
    while True:
        gevent.sleep(every)
        print(status_line(fleet.status(), as_json), flush=True)
