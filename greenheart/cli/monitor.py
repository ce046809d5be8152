"""``greenheart monitor``: bind a heart monitor and print its events."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING, Any

import attrs

from greenheart.cli.args import (
    add_address_arguments,
    add_mass_silence_arguments,
    mass_silence_from,
    mass_silence_options,
)
from greenheart.cli.keys import add_server_arguments, server_curve
from greenheart.cli.printer import EventPrinter
from greenheart.cli.signals import exit_status, wait_for_signal
from greenheart.core.checks import (
    at_least_two,
    bind_address,
    count,
    non_negative_float,
    number,
    output_file,
    port,
    positive_count,
    positive_float,
)
from greenheart.core.errors import UsageError
from greenheart.core.phi import PhiAccrual
from greenheart.core.refusal import CAP_LEAST, CAP_MOST, CAP_SHARE, IDLE_SECONDS, REQUEST_SECONDS
from greenheart.core.rules import Rules
from greenheart.core.transport import DEFAULT_TRANSPORT_TIMEOUT, MIN_TRANSPORT_TIMEOUT
from greenheart.green.lifecycle import Service
from greenheart.green.limits import raise_open_file_limit
from greenheart.green.monitor import HeartMonitor
from greenheart.green.recording import KEEP, MAX_BYTES, RecordingFile
from greenheart.integrations.events import EventStream
from greenheart.integrations.live import LiveServer

if TYPE_CHECKING:
    from greenheart.integrations.metrics import MetricsServer

#: phi's settings, where an option leaves them alone
PHI_DEFAULTS = PhiAccrual()


def add_command(commands: argparse._SubParsersAction) -> None:
    monitor = commands.add_parser("monitor", help="bind a heart monitor and print its events")
    add_address_arguments(monitor, bind=True)
    monitor.add_argument("--period", type=positive_float, default=3000.0, metavar="MS")
    monitor.add_argument(
        "--max-misses", type=count, default=1, metavar="N", help="misses before a heart fails"
    )
    monitor.add_argument(
        "--max-hearts", type=count, metavar="N", help="refuse new hearts beyond N (no limit)"
    )
    monitor.add_argument(
        "--phi",
        type=positive_float,
        metavar="THRESHOLD",
        help="fail hearts by phi-accrual suspicion (8 is usual) instead of --max-misses",
    )
    monitor.add_argument(
        "--phi-pause",
        type=non_negative_float,
        default=0.0,
        metavar="MS",
        help="with --phi: a pause of this long is expected, not suspicious",
    )
    monitor.add_argument(
        "--phi-min-std",
        type=positive_float,
        default=PHI_DEFAULTS.min_std_deviation * 1000,
        metavar="MS",
        help="with --phi: the least spread of a heart's intervals"
        f" (default {PHI_DEFAULTS.min_std_deviation * 1000:g})",
    )
    monitor.add_argument(
        "--phi-window",
        type=at_least_two,
        default=PHI_DEFAULTS.window,
        metavar="N",
        help=f"with --phi: a heart's latest intervals it rests on (default {PHI_DEFAULTS.window})",
    )
    monitor.add_argument(
        "--fail-on-disconnect",
        action="store_true",
        help="fail a heart at once when its connection closes (its process died), not after"
        " its missed beats",
    )
    monitor.add_argument(
        "--transport-timeout",
        type=transport_timeout,
        default=DEFAULT_TRANSPORT_TIMEOUT,
        metavar="S",
        help="close a connection whose host says nothing, not even its kernel, for this long,"
        " and call its hearts unreachable (TCP keepalive; default"
        f" {DEFAULT_TRANSPORT_TIMEOUT:g}; 0 for never)",
    )
    monitor.add_argument(
        "--state",
        type=output_file,
        metavar="FILE",
        help="keep the hearts known in FILE (SQLite), and after a restart await them there:"
        " those not back within the grace fail",
    )
    monitor.add_argument(
        "--restart-grace",
        type=positive_float,
        metavar="S",
        help="with --state: how long a restart awaits the hearts it knew (default: three"
        " periods, at least 10 s)",
    )
    add_mass_silence_arguments(monitor)
    add_server_arguments(monitor)
    monitor.add_argument(
        "--events",
        type=bind_address,
        metavar="ADDR",
        help="publish the monitor's events here (PUB), and answer snapshots on the next port"
        " (greenheart events ADDR follows them)",
    )
    monitor.add_argument(
        "--metrics-port", type=port, metavar="PORT", help="serve Prometheus metrics on this port"
    )
    monitor.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="HOST", help="(default 127.0.0.1)"
    )
    add_http_arguments(monitor)
    add_record_arguments(monitor)
    monitor.add_argument("--summary", action="store_true", help="print a line for every beat")
    monitor.add_argument("--json", action="store_true", help="print JSON lines")
    monitor.set_defaults(run=run)


def transport_timeout(text: str) -> float | None:
    """``--transport-timeout``: seconds, at least the shortest keepalive allows; 0 for none."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if seconds == 0:
        return None
    if not MIN_TRANSPORT_TIMEOUT <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(
            f"at least {MIN_TRANSPORT_TIMEOUT:g} s (or 0 for never), not {text}"
        )
    return seconds


def rules_from(args: argparse.Namespace) -> Rules:
    """The judging settings the options ask for."""
    phi = None
    if args.phi:
        phi = PhiAccrual(
            args.phi,
            min_std_deviation=args.phi_min_std / 1000,
            acceptable_pause=args.phi_pause / 1000,
            window=args.phi_window,
        )
    return Rules(
        max_misses=args.max_misses,
        max_hearts=args.max_hearts,
        phi=phi,
        mass_silence=mass_silence_from(args),
        fail_on_disconnect=args.fail_on_disconnect,
        transport_timeout=args.transport_timeout,
    )


def options(period: float, rules: Rules) -> list[str]:
    """The ``greenheart monitor`` options that ask for ``period`` (ms) and ``rules``, every
    setting that is not the default (:func:`rules_from` reads them back)."""
    words = [f"--period={number(period)}"]
    if rules.phi is None or rules.max_misses != Rules().max_misses:
        words.append(f"--max-misses={rules.max_misses}")
    if rules.phi is not None:
        phi = rules.phi
        words.append(f"--phi={number(phi.threshold)}")
        if phi.acceptable_pause != PHI_DEFAULTS.acceptable_pause:
            words.append(f"--phi-pause={number(phi.acceptable_pause * 1000)}")
        if phi.min_std_deviation != PHI_DEFAULTS.min_std_deviation:
            words.append(f"--phi-min-std={number(phi.min_std_deviation * 1000)}")
        if phi.window != PHI_DEFAULTS.window:
            words.append(f"--phi-window={phi.window}")
    if rules.max_hearts is not None:
        words.append(f"--max-hearts={rules.max_hearts}")
    if rules.fail_on_disconnect:
        words.append("--fail-on-disconnect")
    if rules.transport_timeout != DEFAULT_TRANSPORT_TIMEOUT:
        words.append(f"--transport-timeout={number(rules.transport_timeout or 0)}")
    words += mass_silence_options(rules.mass_silence)
    return words


def run(args: argparse.Namespace) -> int:
    raise_open_file_limit()  # every heart's connection costs the monitor a descriptor
    monitor = HeartMonitor.bind(
        args.ping,
        args.pong,
        period=args.period,
        curve=server_curve(args),
        **attrs.asdict(rules_from(args), recurse=False),
        record=recording_from(args),
        state=args.state,
        restart_grace=args.restart_grace,
    )
    EventPrinter(sys.stdout, as_json=args.json, summary=args.summary).attach(monitor)
    with monitor, contextlib.ExitStack() as extras:
        services: list[Service] = [monitor]
        if args.events:
            stream = extras.enter_context(EventStream(monitor, args.events))
            services.append(stream)
            print(
                f"greenheart monitor: events on {stream.address}, snapshots on"
                f" {stream.snapshot_address}",
                file=sys.stderr,
            )
        limits, pages = http_limits(args), []
        if args.http_port is not None:
            page = extras.enter_context(
                LiveServer(monitor, args.http_port, args.http_host, **limits)
            )
            services.append(page)
            pages.append(page)
            print(f"greenheart monitor: the live page on {page.url}", file=sys.stderr)
        if args.metrics_port is not None:
            server = extras.enter_context(
                _metrics_server(
                    monitor, args.metrics_port, args.metrics_host, servers=pages, **limits
                )
            )
            services.append(server)
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
        stopped = wait_for_signal(*services)
    return exit_status("monitor", stopped)


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record",
        type=output_file,
        metavar="FILE",
        help="record what the monitor's verdicts depend on, for greenheart tune",
    )
    parser.add_argument(
        "--record-max-mib",
        type=positive_float,
        default=MAX_BYTES / 2**20,
        metavar="MIB",
        help=f"rotate the recording past this size (default {MAX_BYTES // 2**20})",
    )
    parser.add_argument(
        "--record-keep",
        type=count,
        default=KEEP,
        metavar="N",
        help=f"rotated files kept, FILE.1 to FILE.N (default {KEEP})",
    )


def recording_from(args: argparse.Namespace) -> RecordingFile | None:
    if not args.record:
        return None
    return RecordingFile(
        args.record, max_bytes=int(args.record_max_mib * 2**20), keep=args.record_keep
    )


def add_http_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--http-port",
        type=port,
        metavar="PORT",
        help="serve the live page (and /live.json, /hearts, /metrics) on this port; 0 picks one",
    )
    parser.add_argument(
        "--http-host", default="127.0.0.1", metavar="HOST", help="(default 127.0.0.1)"
    )
    parser.add_argument(
        "--http-connections",
        type=positive_count,
        metavar="N",
        help="connections the page and the metrics each hold at most; more are answered 503"
        f" (default {CAP_SHARE * 100:g}%% of the open-file limit, {CAP_LEAST} to {CAP_MOST})",
    )
    parser.add_argument(
        "--http-timeout",
        type=positive_float,
        default=REQUEST_SECONDS,
        metavar="S",
        help="close an HTTP connection whose request has not come whole within S seconds"
        f" (default {REQUEST_SECONDS:g})",
    )
    parser.add_argument(
        "--http-idle",
        type=positive_float,
        default=IDLE_SECONDS,
        metavar="S",
        help=f"close a kept-alive HTTP connection idle for S seconds (default {IDLE_SECONDS:g})",
    )


def http_limits(args: argparse.Namespace) -> dict[str, Any]:
    """The HTTP servers' settings the options ask for."""
    return {
        "connections": args.http_connections,
        "request_timeout": args.http_timeout,
        "idle_timeout": args.http_idle,
    }


def _metrics_server(monitor: HeartMonitor, port: int, host: str, **limits: Any) -> MetricsServer:
    try:
        from greenheart.integrations.metrics import MetricsServer
    except ImportError:
        raise UsageError(
            "--metrics-port needs prometheus-client: pip install 'greenheart-zmq[metrics]'"
        ) from None
    return MetricsServer(monitor, port, host, **limits)
