"""The benchmark's programs, each run in a child process of its own by
:class:`~greenheart.bench.child.Child`: ``python -m greenheart.bench.programs KIND ...``.

The monitors under test are in :mod:`~greenheart.bench.programs.monitors`, the loads that
drive them in :mod:`~greenheart.bench.programs.loads`; every line they say to the benchmark
is a value of :mod:`greenheart.bench.lines`. ``--open-files N`` lowers a program's open-file
limit to N, soft and hard, so that a benchmark can take a monitor past it; ``--cpus`` pins it.
``cli ARGS...`` execs the ``greenheart`` command and ``ipcontroller ARGS...`` ipyparallel's
controller, each keeping the parent-death signal.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from collections.abc import Sequence

from greenheart.core.rules import Rules
from greenheart.green.orphans import die_with_parent

MONITORS = (
    "greenheart",
    "greenheart-sockets",
    "greenheart-curve",
    "greenheart-unwatched",
    "greenheart-zmtp",
    "ipyparallel",
    "raw",
)
LOADS = ("fleet", "hearts", "ipyparallel-hearts", "soak-fleet", "kill-fleet", "engines", "storm")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m greenheart.bench.programs")
    parser.add_argument("kind", choices=(*MONITORS, *LOADS))
    parser.add_argument("--period", type=float, default=1000.0, help="milliseconds")
    parser.add_argument("--max-misses", type=int, default=1)
    parser.add_argument("--events", action="store_true", help="a line per heart event")
    parser.add_argument("--fail-on-disconnect", action="store_true", help="greenheart: so")
    parser.add_argument(
        "--rules", metavar="JSON", help="greenheart: every judging setting (Rules.as_json)"
    )
    parser.add_argument("--record", metavar="FILE", help="greenheart: record to FILE")
    parser.add_argument(
        "--host", default="127.0.0.1", help="greenheart: bind here (a bench host's gateway)"
    )
    parser.add_argument("--curve", metavar="DIR", help="CURVE keys, for greenheart-curve")
    parser.add_argument("--ping", help="for a load: the monitor's ping address")
    parser.add_argument("--pong", help="for a load: the monitor's pong address")
    parser.add_argument("--size", type=int, default=1, help="for a load: how many hearts")
    parser.add_argument("--limit", type=int, default=0, help="ipyparallel-hearts: at most")
    parser.add_argument("--prefix", default="bench", help="for a load: identity prefix")
    parser.add_argument("--churn", type=float, default=0.01, help="soak-fleet: killed a minute")
    parser.add_argument("--every", type=float, default=6.0, help="soak-fleet: seconds a round")
    parser.add_argument("--garbage", type=float, default=0.0, help="soak-fleet: messages/s")
    parser.add_argument("--revive", action="store_true", help="soak-fleet: revive the dead")
    parser.add_argument("--profile-dir", help="engines: the controller's profile directory")
    parser.add_argument(
        "--ping-per-heart", action="store_true", help="engines: a SUB socket per heart"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="storm: connections a second")
    parser.add_argument("--hold", type=float, default=10.0, help="storm: seconds held")
    parser.add_argument("--open-files", type=int, help="lower the open-file limit to this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", help="run on these CPUs only (a comma list), threads included")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    die_with_parent()
    if argv[:1] == ["cli"]:
        # the greenheart command itself, as a child of a benchmark: the parent-death signal
        # is kept across exec
        os.execv(sys.executable, [sys.executable, "-m", "greenheart", *argv[1:]])
    if argv[:1] == ["ipcontroller"]:
        # ipyparallel's own controller, likewise
        os.execv(sys.executable, [sys.executable, "-m", "ipyparallel.controller", *argv[1:]])
    args = _parser().parse_args(argv)
    if args.cpus:  # first, so that ZeroMQ's I/O threads, started later, inherit it
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    if args.open_files:  # soft and hard, so that raising the limit later leaves it
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.open_files, args.open_files))
    if args.kind in MONITORS:
        from greenheart.bench.programs import monitors

        if args.kind == "ipyparallel":
            return monitors.run_ipyparallel(args.period, args.max_misses, args.events)
        if args.kind == "raw":
            return monitors.run_raw(args.period)
        rules = Rules(max_misses=args.max_misses, fail_on_disconnect=args.fail_on_disconnect)
        if args.rules:
            rules = Rules.from_json(json.loads(args.rules))
        return monitors.run_greenheart(
            args.period,
            rules,
            args.curve,
            args.events,
            own_sockets=args.kind == "greenheart-sockets",
            record=args.record,
            host=args.host,
            liveness=args.kind.removeprefix("greenheart-")
            if args.kind in ("greenheart-unwatched", "greenheart-zmtp")
            else "keepalive",
        )
    from greenheart.bench.programs import loads

    if args.kind == "fleet":
        return loads.run_fleet(args.ping, args.pong, args.size, args.prefix, args.curve)
    if args.kind == "hearts":
        return loads.run_hearts(args.ping, args.pong, args.size, args.prefix)
    if args.kind == "ipyparallel-hearts":
        return loads.run_ipyparallel_hearts(args.ping, args.pong, args.size, args.limit)
    if args.kind == "engines":
        return loads.run_engines(args.profile_dir, args.size, args.seed, args.ping_per_heart)
    if args.kind == "storm":
        return loads.run_storm(args.pong, args.size, args.rate, args.hold)
    if args.kind == "kill-fleet":
        return loads.run_kill_fleet(args.ping, args.pong, args.size, args.seed)
    return loads.run_soak_fleet(
        args.ping,
        args.pong,
        args.size,
        args.churn,
        args.garbage,
        args.every,
        args.seed,
        args.revive,
    )
