"""``greenheart engines``: simulated ipyparallel engines that register with a real controller."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

import attrs

from greenheart.cli.args import add_behaviour_arguments, behaviour_from, scenario_from
from greenheart.cli.printer import now_text
from greenheart.cli.signals import serve
from greenheart.core.checks import count, non_negative_float, positive_float
from greenheart.core.errors import require_extra

if TYPE_CHECKING:
    from greenheart.integrations.ipyparallel.engines import SimulatedEngines


def add_command(commands: argparse._SubParsersAction) -> None:
    engines = commands.add_parser(
        "engines",
        help="simulated ipyparallel engines: register with a controller, then beat",
        description="N engines that register with a real ipyparallel controller and then"
        " only beat: they never accept work. For load-testing a controller.",
    )
    where = engines.add_mutually_exclusive_group(required=True)
    where.add_argument("--profile-dir", metavar="DIR", help="the controller's profile directory")
    where.add_argument(
        "--connection-file", metavar="FILE", help="its security/ipcontroller-engine.json"
    )
    engines.add_argument("-n", "--engines", type=count, required=True, metavar="N")
    engines.add_argument(
        "--own-registrar",
        action="store_true",
        help="one registration DEALER per engine (closed once answered), not one shared",
    )
    engines.add_argument(
        "--rate", type=positive_float, metavar="PER_SECOND", help="registrations a second at most"
    )
    engines.add_argument(
        "--spread",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="each engine first waits a random delay up to this (engines slow to boot)",
    )
    engines.add_argument(
        "--ping-per-heart",
        action="store_true",
        help="a ping SUB per engine, loading the controller's PUB as real engines do",
    )
    # the name it had before it took HeartFleet's, kept so that scripts go on working
    engines.add_argument(
        "--sub-per-engine", dest="ping_per_heart", action="store_true", help=argparse.SUPPRESS
    )
    engines.add_argument("--reply-timeout", type=positive_float, default=30.0, metavar="SECONDS")
    engines.add_argument(
        "--max-heartbeat-misses",
        type=count,
        default=50,
        metavar="N",
        help="as ipengine's: an engine that heard no ping in N checks in a row (one a period"
        " + 500 ms) asks to be unregistered and dies; 0 never gives up (default: 50)",
    )
    engines.add_argument(
        "--wait",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for the connection file to appear",
    )
    add_behaviour_arguments(engines, who="engines")
    engines.add_argument("--prefix", help="uuids are PREFIX-N (default: sim-<random>)")
    engines.add_argument("--status-every", type=positive_float, default=5.0, metavar="SECONDS")
    engines.add_argument("--json", action="store_true", help="print status as JSON lines")
    engines.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    require_extra("ipyparallel", "ipyparallel")
    from greenheart.integrations.ipyparallel.connection import ControllerConnection
    from greenheart.integrations.ipyparallel.engines import SimulatedEngines

    if args.profile_dir:
        connection = ControllerConnection.from_profile_dir(args.profile_dir, wait=args.wait)
    else:
        connection = ControllerConnection.load(args.connection_file, wait=args.wait)
    engines = SimulatedEngines(
        connection,
        size=args.engines,
        behaviour=behaviour_from(args),
        scenario=scenario_from(args),
        shared_registrar=not args.own_registrar,
        rate=args.rate,
        spread=args.spread,
        ping_per_heart=args.ping_per_heart,
        reply_timeout=args.reply_timeout,
        max_heartbeat_misses=args.max_heartbeat_misses,
        **({"prefix": args.prefix} if args.prefix else {}),
    )
    banner = (
        f"greenheart engines {engines.prefix}: {args.engines} engines registering at"
        f" {connection.registration_url}; Ctrl-C stops"
    )

    def status() -> str:
        return _status_line(engines, args.json)

    return serve("engines", engines, banner, status, args.status_every, last_status=True)


def _status_line(engines: SimulatedEngines, as_json: bool) -> str:
    status = engines.status()
    if as_json:
        return json.dumps({"event": "status", "time": now_text(), **attrs.asdict(status)})
    text = (
        f"{now_text()} {status.engines} engines: {status.asked} asked, {status.accepted}"
        f" accepted, {status.registered_now} registered, {status.refused} refused,"
        f" {status.unanswered} unanswered, {status.purged} purged, {status.unregistered}"
        f" unregistered ({status.lost} alive, {status.killed_unregistered} of"
        f" {status.killed} killed)"
    )
    if status.left:
        text += f"; {status.left} left, hearing no pings from the controller"
    if status.unreadable:
        text += f"; {status.unreadable} unreadable messages from the hub skipped"
    if status.last_error:
        text += f"; last refusal: {status.last_error}"
    return text
