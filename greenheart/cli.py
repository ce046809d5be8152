"""The ``greenheart`` command."""

from __future__ import annotations

import argparse
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
from greenheart.demo import run_demo
from greenheart.heart import Heart
from greenheart.ledger import Beat
from greenheart.monitor import HeartMonitor
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


def _monitor(args: argparse.Namespace) -> int:
    monitor = HeartMonitor.bind(
        args.ping, args.pong, period=args.period, max_misses=args.max_misses
    )
    monitor.add_beat_handler(EventPrinter(sys.stdout, as_json=args.json, summary=args.summary))
    with monitor:
        print(
            f"greenheart monitor: pinging on {monitor.ping_addr} every {args.period:g} ms,"
            f" pongs on {monitor.pong_addr}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        _wait_for_signal()
    return 0


def _heart(args: argparse.Namespace) -> int:
    heart = Heart(args.ping, args.pong, heart_id=parse_id(args.id) if args.id else None)
    with heart:
        print(
            f"greenheart heart {display_id(heart.id)}: answering {args.ping} on {args.pong};"
            " Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        _wait_for_signal()
    return 0


def _demo(args: argparse.Namespace) -> int:
    return run_demo(
        hearts=args.hearts, period=args.period, max_misses=args.max_misses, out=sys.stdout
    )


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
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
    monitor.add_argument("--summary", action="store_true", help="print a line for every beat")
    monitor.add_argument("--json", action="store_true", help="print JSON lines")
    monitor.set_defaults(run=_monitor)

    heart = commands.add_parser("heart", help="run one heart answering a monitor")
    heart.add_argument("--ping", required=True, metavar="ADDR", help="the monitor's ping address")
    heart.add_argument("--pong", required=True, metavar="ADDR", help="the monitor's pong address")
    heart.add_argument("--id", metavar="NAME", help="identity (0x... for hex); random if omitted")
    heart.set_defaults(run=_heart)

    demo = commands.add_parser(
        "demo", help="on loopback: a monitor and a few hearts; stop one and watch it detected"
    )
    demo.add_argument("--hearts", type=int, default=3, metavar="N")
    demo.add_argument("--period", type=_positive_float, default=100.0, metavar="MS")
    demo.add_argument("--max-misses", type=_count, default=2, metavar="N")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.run(args)
    except (ValueError, zmq.ZMQError) as error:
        print(f"greenheart {args.command}: error: {error}", file=sys.stderr)
        return 2
