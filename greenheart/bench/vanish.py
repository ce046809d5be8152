"""``greenheart bench vanish``: hosts that join a monitor and vanish without a FIN, one after
another, and what the monitor is left holding.

The hosts are network namespaces on a bridge (:mod:`greenheart.bench.hosts`; root and ``ip``
needed, nothing leaves the machine). Each cycle makes a host, runs ``greenheart heart`` in it,
waits until the monitor (a process of its own, bound on the bridge) registers the heart, then
sets the host's link down and deletes it, its process killed: its connections' FIN can never
arrive, as when a machine loses power. Run once with transport liveness (TCP keepalive,
``--transport-timeout``) and once without, side by side.

Reported: the monitor's descriptors and established connections before the cycles, at their
end, and ``--settle`` seconds after (once the timeout has passed); the most it held; how long
the last host's connections took to close.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from greenheart.bench.hosts import Network, missing
from greenheart.bench.proc import established
from greenheart.bench.report import aligned
from greenheart.bench.runner import MonitorChild
from greenheart.core.checks import output_file, positive_count, positive_float
from greenheart.core.rules import Rules
from greenheart.core.transport import Keepalive
from greenheart.green.limits import open_descriptors

HELP = "hosts that join and vanish without a FIN: what the monitor is left holding"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else None

#: seconds a heart in a new host may take to be registered
JOIN_SECONDS = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cycles", type=positive_count, default=200, help="hosts, one after another"
    )
    parser.add_argument("--period", type=positive_float, default=100.0, metavar="MS")
    parser.add_argument(
        "--transport-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="the monitor's, for the run with keepalive (default 5: the default 30 only"
        " makes the bench wait longer)",
    )
    parser.add_argument("--json", type=output_file, metavar="FILE", help="write the results here")


def run(args: argparse.Namespace) -> int:
    lacking = missing()
    if lacking is not None:
        print(f"greenheart bench vanish: {lacking}", file=sys.stderr)
        return 2
    rows = [
        _cycles(args.cycles, args.period, timeout) for timeout in (args.transport_timeout, None)
    ]
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"cycles": args.cycles, "runs": rows}, indent=1))
    return 0


def _cycles(cycles: int, period: float, timeout: float | None) -> dict[str, Any]:
    rules = json.dumps(Rules(transport_timeout=timeout).as_json())
    with Network() as network:
        monitor = MonitorChild(
            "greenheart", period, f"--rules={rules}", f"--host={network.gateway}"
        )
        try:
            ports = {int(addr.rsplit(":", 1)[1]) for addr in (monitor.ping, monitor.pong)}
            monitor.beat()
            before = _holding(monitor.pid, ports)
            most = before
            joined = 0
            for cycle in range(cycles):
                host = network.add()
                host.python(
                    "-m", "greenheart", "heart", "--ping", monitor.ping, "--pong",
                    monitor.pong, "--id", f"vanish-{cycle}",
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                deadline = time.monotonic() + JOIN_SECONDS
                while joined <= cycle:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"host {cycle}'s heart was not registered")
                    joined += monitor.beat().new
                host.vanish()
                network.remove(host)
                now = _holding(monitor.pid, ports)
                most = (max(most[0], now[0]), max(most[1], now[1]))
            ended = time.monotonic()
            after_cycles = _holding(monitor.pid, ports)
            settle = Keepalive(timeout).bound + 2 if timeout else 10.0
            closed_in = None
            while time.monotonic() - ended < settle:
                monitor.beat()
                if closed_in is None and _holding(monitor.pid, ports)[1] == before[1]:
                    closed_in = time.monotonic() - ended
            after = _holding(monitor.pid, ports)
        finally:
            monitor.stop()
    return {
        "transport_timeout_s": timeout,
        "descriptors": {"before": before[0], "end": after_cycles[0], "after": after[0],
                        "most": most[0]},
        "established": {"before": before[1], "end": after_cycles[1], "after": after[1],
                        "most": most[1]},
        "settle_s": round(settle, 1),
        "last_closed_after_s": None if closed_in is None else round(closed_in, 1),
    }  # fmt: skip


def _holding(pid: int, ports: set[int]) -> tuple[int, int]:
    """The monitor's open descriptors, and the TCP connections established on its ports."""
    return open_descriptors(pid), established(ports)


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        ["transport timeout", "descriptors: before", "end", "after", "most",
         "established: before", "end", "after", "last closed"],
    ]  # fmt: skip
    for row in rows:
        timeout = row["transport_timeout_s"]
        fds, est = row["descriptors"], row["established"]
        closed = row["last_closed_after_s"]
        lines.append(
            [
                f"{timeout:g} s" if timeout else "none",
                str(fds["before"]), str(fds["end"]), f"{fds['after']} (+{row['settle_s']:g} s)",
                str(fds["most"]), str(est["before"]), str(est["end"]), str(est["after"]),
                f"{closed:g} s after" if closed is not None else "never",
            ]
        )  # fmt: skip
    return aligned(lines)
