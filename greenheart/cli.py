"""The ``greenheart`` command."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

import attrs
import gevent
import gevent.event
import zmq

from greenheart import __version__
from greenheart.behaviour import Behaviour, Delay, Event, parse_event
from greenheart.bench.command import add_arguments as add_bench_arguments
from greenheart.bench.command import run as run_bench
from greenheart.curve import (
    ClientCurve,
    KeyPair,
    ServerCurve,
    load_allowed_keys,
    load_public_key,
    write_key_pair,
)
from greenheart.demo import run_demo
from greenheart.events import EventStream
from greenheart.fleet import HeartFleet
from greenheart.heart import Heart
from greenheart.ledger import Beat
from greenheart.limits import raise_open_file_limit
from greenheart.monitor import HeartMonitor
from greenheart.phi import PhiAccrual
from greenheart.wire import display_id, parse_id


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


@attrs.define
class EventPrinter:
    """Prints what each beat meant: one line per event, and a summary line when asked."""

    out: TextIO
    as_json: bool = False
    summary: bool = False

    def __call__(self, beat: Beat) -> None:
        for heart in beat.new_hearts:
            self._emit("new_heart", beat, heart=display_id(heart))
        for heart, late in sorted(beat.late_hearts.items()):
            self._emit("late_heart", beat, heart=display_id(heart), late_ms=_ms(late))
        for heart in beat.failed_hearts:
            self._emit("failed_heart", beat, heart=display_id(heart))
        if self.summary:
            self._emit(
                "beat",
                beat,
                hearts=beat.hearts,
                responded=beat.responded,
                on_probation=beat.on_probation,
                on_time_pongs=beat.on_time_pongs,
                late_pongs=beat.late_pongs,
                bad_pongs=beat.bad_pongs,
                max_rtt_ms=_ms(beat.max_rtt),
            )

    def _emit(self, event: str, beat: Beat, **fields: object) -> None:
        if self.as_json:
            line = json.dumps({"event": event, "time": _now(), "beat": beat.number, **fields})
        else:
            details = " ".join(f"{key}={value}" for key, value in fields.items())
            line = f"{_now()} beat {beat.number} {event.replace('_', ' ')} {details}"
        print(line, file=self.out, flush=True)


def _wait_for_signal() -> None:
    stop = gevent.event.Event()
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGINT, signal.SIGTERM)]
    try:
        stop.wait()
    finally:
        for handler in handlers:
            handler.cancel()


def _server_curve(args: argparse.Namespace) -> ServerCurve | None:
    if args.curve_secret is None:
        if args.allow or args.allow_any:
            raise ValueError("--allow and --allow-any need --curve-secret")
        return None
    if bool(args.allow) == args.allow_any:
        raise ValueError("with --curve-secret, say who may connect: --allow DIR or --allow-any")
    allowed = None if args.allow_any else load_allowed_keys(args.allow)
    return ServerCurve(KeyPair.load(args.curve_secret), allowed)


def _client_curve(args: argparse.Namespace) -> ClientCurve | None:
    if (args.server_key is None) != (args.curve_secret is None):
        raise ValueError("CURVE needs both --server-key and --curve-secret")
    if args.server_key is None:
        return None
    return ClientCurve(load_public_key(args.server_key), KeyPair.load(args.curve_secret))


def _monitor(args: argparse.Namespace) -> int:
    raise_open_file_limit()  # every heart's connection costs the monitor a descriptor
    phi = PhiAccrual(args.phi, acceptable_pause=args.phi_pause / 1000) if args.phi else None
    monitor = HeartMonitor.bind(
        args.ping,
        args.pong,
        period=args.period,
        max_misses=args.max_misses,
        max_hearts=args.max_hearts,
        phi=phi,
        curve=_server_curve(args),
    )
    monitor.add_beat_handler(EventPrinter(sys.stdout, as_json=args.json, summary=args.summary))
    with monitor, contextlib.ExitStack() as extras:
        if args.events:
            stream = extras.enter_context(EventStream(monitor, args.events))
            print(f"greenheart monitor: events on {stream.address}", file=sys.stderr)
        if args.metrics_port is not None:
            server = _serve_metrics(monitor, args.metrics_port, args.metrics_host)
            extras.callback(server.stop)
            print(
                f"greenheart monitor: metrics on"
                f" http://{args.metrics_host}:{server.server_port}/metrics",
                file=sys.stderr,
            )
        print(
            f"greenheart monitor: pinging on {monitor.ping_addr} every {args.period:g} ms,"
            f" pongs on {monitor.pong_addr}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        _wait_for_signal()
    return 0


def _serve_metrics(monitor: HeartMonitor, port: int, host: str):
    try:
        from greenheart.metrics import serve_metrics
    except ImportError:
        raise ValueError(
            "--metrics-port needs prometheus-client: pip install 'greenheart[metrics]'"
        ) from None
    return serve_metrics(monitor, port, host)


def _heart(args: argparse.Namespace) -> int:
    heart = Heart(
        args.ping,
        args.pong,
        heart_id=parse_id(args.id) if args.id else None,
        curve=_client_curve(args),
    )
    with heart:
        print(
            f"greenheart heart {display_id(heart.id)}: answering {args.ping} on {args.pong};"
            " Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        _wait_for_signal()
    return 0


def _slow(text: str) -> tuple[float, Delay]:
    fraction, _, delay = text.partition(":")
    try:
        return float(fraction), Delay.parse(delay)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--slow takes FRACTION:DELAY, as in 0.1:fixed:500, not {text!r}"
        ) from None


def _event(kind: str):
    def parse(text: str) -> Event:
        try:
            return parse_event(kind, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _delay(text: str) -> Delay:
    try:
        return Delay.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _fleet(args: argparse.Namespace) -> int:
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
        args.ping, args.pong, size=args.size, behaviour=behaviour, scenario=scenario,
        curve=_client_curve(args), **({"prefix": args.prefix} if args.prefix else {}),
    )  # fmt: skip
    with fleet:
        print(
            f"greenheart fleet {fleet.prefix}: {args.size} hearts answering {args.ping} on"
            f" {args.pong}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        reporter = gevent.spawn(_report_fleet, fleet, args.status_every, args.json)
        try:
            _wait_for_signal()
        finally:
            reporter.kill()
    return 0


def _report_fleet(fleet: HeartFleet, every: float, as_json: bool) -> None:
    while True:
        gevent.sleep(every)
        status = fleet.status()
        if as_json:
            line = json.dumps({"event": "status", "time": _now(), **attrs.asdict(status)})
        else:
            line = (
                f"{_now()} {status.alive} alive ({status.silent} silent,"
                f" {status.hearts - status.alive} dead), {status.fleet_pings} pings,"
                f" {status.pongs} pongs, {status.dropped} dropped, {status.delayed} delayed,"
                f" {status.unsent} unsent"
            )
        print(line, flush=True)


def _keys(args: argparse.Namespace) -> int:
    public, secret = write_key_pair(args.directory, args.name)
    print(f"public key: {public}\nkey pair:   {secret} (keep it secret)")
    return 0


def _add_client_curve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-key", metavar="FILE", help="CURVE: the monitor's .key file")
    parser.add_argument("--curve-secret", metavar="FILE", help="CURVE: this side's .key_secret")


def _demo(args: argparse.Namespace) -> int:
    return run_demo(
        hearts=args.hearts, period=args.period, max_misses=args.max_misses, out=sys.stdout
    )


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenheart",
        description="A gevent heartbeat monitor and hearts, ipyparallel-compatible.",
    )
    parser.add_argument("--version", action="version", version=f"greenheart {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeatable)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    monitor = commands.add_parser("monitor", help="bind a heart monitor and print its events")
    monitor.add_argument("--ping", required=True, metavar="ADDR", help="bind pings (PUB) here")
    monitor.add_argument("--pong", required=True, metavar="ADDR", help="bind pongs (ROUTER) here")
    monitor.add_argument("--period", type=_positive_float, default=3000.0, metavar="MS")
    monitor.add_argument(
        "--max-misses", type=_count, default=1, metavar="N", help="misses before a heart fails"
    )
    monitor.add_argument(
        "--max-hearts", type=_count, metavar="N", help="refuse new hearts beyond N (no limit)"
    )
    monitor.add_argument(
        "--phi",
        type=_positive_float,
        metavar="THRESHOLD",
        help="fail hearts by phi-accrual suspicion (8 is usual) instead of --max-misses",
    )
    monitor.add_argument(
        "--phi-pause",
        type=_non_negative_float,
        default=0.0,
        metavar="MS",
        help="with --phi: a pause of this long is expected, not suspicious",
    )
    monitor.add_argument(
        "--curve-secret", metavar="FILE", help="CURVE: the monitor's .key_secret file"
    )
    monitor.add_argument(
        "--allow", metavar="DIR", help="CURVE: let in only hearts whose .key files are in DIR"
    )
    monitor.add_argument(
        "--allow-any", action="store_true", help="CURVE: let in any key (encryption only)"
    )
    monitor.add_argument(
        "--events", metavar="ADDR", help="publish new_heart and heart_failure events (XPUB) here"
    )
    monitor.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on this port"
    )
    monitor.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="HOST", help="(default 127.0.0.1)"
    )
    monitor.add_argument("--summary", action="store_true", help="print a line for every beat")
    monitor.add_argument("--json", action="store_true", help="print JSON lines")
    monitor.set_defaults(run=_monitor)

    heart = commands.add_parser("heart", help="run one heart answering a monitor")
    heart.add_argument("--ping", required=True, metavar="ADDR", help="the monitor's ping address")
    heart.add_argument("--pong", required=True, metavar="ADDR", help="the monitor's pong address")
    heart.add_argument("--id", metavar="NAME", help="identity (0x... for hex); random if omitted")
    _add_client_curve_arguments(heart)
    heart.set_defaults(run=_heart)

    fleet = commands.add_parser("fleet", help="run many simulated hearts against a monitor")
    fleet.add_argument("--ping", required=True, metavar="ADDR", help="the monitor's ping address")
    fleet.add_argument("--pong", required=True, metavar="ADDR", help="the monitor's pong address")
    fleet.add_argument("--size", type=_count, required=True, metavar="N", help="hearts to run")
    fleet.add_argument(
        "--delay",
        type=_delay,
        metavar="SPEC",
        help="reply delay: fixed:MS, uniform:LO:HI, exp:MEAN",
    )
    fleet.add_argument("--loss", type=float, default=0.0, metavar="P", help="pongs lost, 0 to 1")
    fleet.add_argument(
        "--slow",
        type=_slow,
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
            f"--{kind}", type=_event(kind), action="append", default=[], metavar=syntax, help=text
        )
    fleet.add_argument("--seed", type=int, default=0, help="same seed, same run")
    fleet.add_argument("--prefix", help="identities are PREFIX-N (default: fleet-<random>)")
    fleet.add_argument("--status-every", type=_positive_float, default=5.0, metavar="SECONDS")
    fleet.add_argument("--json", action="store_true", help="print status as JSON lines")
    _add_client_curve_arguments(fleet)
    fleet.set_defaults(run=_fleet)

    keys = commands.add_parser(
        "keys", help="write a CURVE key pair: NAME.key (public) and NAME.key_secret"
    )
    keys.add_argument("directory", metavar="DIR")
    keys.add_argument("--name", default="greenheart", help="file name (default: greenheart)")
    keys.set_defaults(run=_keys)

    demo = commands.add_parser(
        "demo", help="on loopback: a monitor and a few hearts; stop one and watch it detected"
    )
    demo.add_argument("--hearts", type=int, default=3, metavar="N")
    demo.add_argument("--period", type=_positive_float, default=100.0, metavar="MS")
    demo.add_argument("--max-misses", type=_count, default=2, metavar="N")
    demo.set_defaults(run=_demo)

    bench = commands.add_parser(
        "bench",
        help="on loopback: ramp the load on a monitor and report its capacity",
        description="Ramp hearts, then shorten the period, holding each step; report"
        " per step and name the last good step (every heart on time >= 99%%, none"
        " wrongly failed) as the capacity.",
    )
    add_bench_arguments(bench)
    bench.set_defaults(run=_bench)
    return parser


def _bench(args: argparse.Namespace) -> int:
    try:
        return run_bench(args)
    except KeyboardInterrupt:
        print("greenheart bench: interrupted; every child process stopped", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.run(args)
    except (ValueError, OSError, zmq.ZMQError) as error:
        print(f"greenheart {args.command}: error: {error}", file=sys.stderr)
        return 2
