"""``greenheart bench ipyparallel``: a real ipyparallel controller under a storm of engines.

For each controller (the stock ``ipcontroller``, and ``greenheart ipcontroller
--fail-on-disconnect``), period and number of engines, a fresh controller in a profile
directory of its own and, in another process, that many simulated engines
(:class:`~greenheart.integrations.ipyparallel.engines.SimulatedEngines`) registering all at
once. Measured, from the hub's own notifications:

- registration: how many registered, the time from the requests until the last registered
  (the hub's CPU meanwhile), how many the hub purged
  (accepted, but it never heard their hearts within its registration timeout);
- a hold of steady beating: healthy engines unregistered (there should be none), and the CPU
  of the hub's process and of the heart monitor's (found as the controller's child process
  listening on the heartbeat port), as a percentage of one core;
- crashes: some registered engines are killed (their connections close, as a dead process's
  do), and the time from the kill to the hub's unregistration of each.

The controllers run at ipyparallel's defaults but for the period (10 misses allowed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from greenheart.bench.child import STARTUP_SECONDS, Child, ChildFailed, children
from greenheart.bench.lines import EngineStatus, Line, Unregistered
from greenheart.bench.proc import cpu_seconds, listening_descendant
from greenheart.bench.report import aligned, cell_text, save_png, two_panels
from greenheart.core.checks import count, listed, output_file, positive_count, positive_float
from greenheart.core.errors import UsageError, require_extra
from greenheart.core.stats import percentile

HELP = "a real ipyparallel controller (stock or greenheart's) under a storm of engines"
DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else None

CONTROLLERS = ("stock", "greenheart")

#: ipyparallel's default misses, kept: the bench compares controllers as users run them
MAX_MISSES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engines",
        type=listed(positive_count),
        default="500,1000,2000,4000",
        help="engines a step (500,1000,2000,4000)",
    )
    parser.add_argument(
        "--periods",
        type=listed(positive_float),
        default="1000,3000",
        help="heart periods, ms (1000,3000)",
    )
    parser.add_argument(
        "--controllers",
        default=",".join(CONTROLLERS),
        help="stock (ipcontroller) and/or greenheart (greenheart ipcontroller"
        " --fail-on-disconnect)",
    )
    parser.add_argument("--kills", type=count, default=10, help="engines killed a step")
    parser.add_argument(
        "--hold",
        type=positive_float,
        default=15.0,
        help="seconds of steady beating (3 periods at least)",
    )
    parser.add_argument(
        "--ping-per-heart",
        action="store_true",
        help="a ping SUB per engine, loading the PUB as real engines do",
    )
    parser.add_argument(
        "--sub-per-engine", dest="ping_per_heart", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=output_file, metavar="FILE", help="write the results here")
    parser.add_argument(
        "--plot", type=output_file, metavar="FILE", help="plot them here (PNG; needs matplotlib)"
    )


@attrs.frozen
class ControllerStep:
    """One step of the bench: a fresh controller of one kind, at one period, under so many
    engines."""

    controller: str
    period_ms: float
    engines: int


def steps(args: argparse.Namespace) -> list[ControllerStep]:
    sizes, periods = args.engines, args.periods
    controllers = [name.strip() for name in args.controllers.split(",") if name.strip()]
    unknown = sorted(set(controllers) - set(CONTROLLERS))
    if unknown:
        raise UsageError(f"unknown controllers {unknown}: choose from {', '.join(CONTROLLERS)}")
    if any(size < max(1, args.kills) for size in sizes):
        raise UsageError("every step needs more engines than --kills")
    # controllers alternate within a period and size, so that they meet the same machine
    return [ControllerStep(c, p, n) for p in periods for n in sizes for c in controllers]


def run(args: argparse.Namespace) -> int:
    require_extra("ipyparallel", "ipyparallel")
    results = []
    for step in steps(args):
        print(
            f"-- {step.controller} @ {step.period_ms:g} ms, {step.engines} engines ...",
            file=sys.stderr,
            flush=True,
        )
        results.append(measure(step, args))
        print(table(results[-1:], header=False), file=sys.stderr, flush=True)
    print(table(results))
    print(summary(results))
    config = {key: getattr(args, key) for key in ("engines", "periods", "controllers", "kills")}
    config.update(hold=args.hold, ping_per_heart=args.ping_per_heart, max_misses=MAX_MISSES)
    if args.json:
        Path(args.json).write_text(json.dumps({"config": config, "rows": results}, indent=2) + "\n")
    if args.plot:
        plot(args.plot, results)
    return 0


def measure(step: ControllerStep, args: argparse.Namespace) -> dict[str, Any]:
    """One step, from a fresh controller to its crashes; a row of the table."""
    period = step.period_ms / 1000
    row: dict[str, Any] = {**attrs.asdict(step), "max_misses": MAX_MISSES}
    with tempfile.TemporaryDirectory(prefix="greenheart-bench-") as root, children() as started:
        profile = Path(root) / "profile"
        controller = _start_controller(step, profile)
        started.append(controller)
        security = profile / "security"
        _wait_for(lambda: (security / "ipcontroller-client.json").exists(), controller)
        engine_file = json.loads((security / "ipcontroller-engine.json").read_text())
        extra = ["--ping-per-heart"] if args.ping_per_heart else []
        engines = Child.program(
            "engines",
            "engines",
            f"--profile-dir={profile}",
            f"--size={step.engines}",
            f"--seed={args.seed}",
            *extra,
            stdin=True,
        )
        started.append(engines)
        hub = controller.pid
        monitor = _listener(hub, int(engine_file["hb_pong"]))
        # registration: until every engine registered, or no progress for a purge timeout
        began = time.monotonic()
        cpu = {"hub": cpu_seconds(hub), "monitor": _cpu(monitor)}
        stall = max(30.0, 10 * period) + 10
        line, progressed = _status(engines, STARTUP_SECONDS), time.monotonic()
        status = line.registrations
        while status.registered_now + status.refused < step.engines:
            seen = status.registered
            line = _status(engines, stall)
            status = line.registrations
            if status.registered > seen:
                progressed = time.monotonic()
            elif time.monotonic() - progressed > stall:
                break
        registered_at = time.monotonic()
        row.update(
            registered=status.registered_now,
            refused=status.refused,
            # from the first request to the last engine registered (they all ask at once)
            registration_s=line.registration_max_s,
            registration_wall_s=round(registered_at - began, 2),
            registration_hub_cpu_s=round(cpu_seconds(hub) - cpu["hub"], 2),
            registration_monitor_cpu_s=round(_cpu(monitor) - cpu["monitor"], 2),
            monitor_found=monitor is not None,
        )
        # the hold: steady beating
        hold = max(args.hold, 3 * period)
        lost_before = status.lost
        cpu = {"hub": cpu_seconds(hub), "monitor": _cpu(monitor)}
        held = time.monotonic()
        while time.monotonic() - held < hold:
            status = _status(engines, 10).registrations
        elapsed = time.monotonic() - held
        row.update(
            hold_s=round(elapsed, 1),
            lost_in_hold=status.lost - lost_before,
            hub_cpu_percent=round(100 * (cpu_seconds(hub) - cpu["hub"]) / elapsed, 1),
            monitor_cpu_percent=round(100 * (_cpu(monitor) - cpu["monitor"]) / elapsed, 1),
        )
        # crashes
        engines.say(f"kill {args.kills}")
        bound = (MAX_MISSES + 2) * period + 10
        deadline = time.monotonic() + bound
        detections: list[float] = []
        while len(detections) < args.kills and time.monotonic() < deadline:
            for said in _lines(engines, deadline):
                if isinstance(said, Unregistered) and said.after_kill is not None:
                    detections.append(said.after_kill)
                elif isinstance(said, EngineStatus):
                    status = said.registrations
        ms = [seconds * 1000 for seconds in detections]
        row.update(
            killed=args.kills,
            detected=len(ms),
            detect_p50_ms=_round(percentile(ms, 0.5)),
            detect_max_ms=_round(max(ms, default=None)),
            purged=status.purged,
            lost=status.lost,
            # engines that heard no ping for ipengine's 50 checks and left: a stalled monitor
            left=status.left,
        )
    return row


def _start_controller(step: ControllerStep, profile: Path) -> Child:
    args = [
        f"--profile-dir={profile}",
        "--ip=127.0.0.1",
        f"--HeartMonitor.period={step.period_ms:g}",
        f"--HeartMonitor.max_heartmonitor_misses={MAX_MISSES}",
    ]
    if step.controller == "greenheart":
        return Child.command("controller", "ipcontroller", "--fail-on-disconnect", *args)
    return Child("controller", ["ipcontroller", *args])


def _wait_for(ready: Any, controller: Child) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not ready():
        if controller.proc.poll() is not None:
            raise ChildFailed(f"the controller exited: {controller.last_words()}")
        if time.monotonic() > deadline:
            raise TimeoutError("the controller did not write its connection files")
        time.sleep(0.1)


def _status(engines: Child, timeout: float) -> EngineStatus:
    """The engines' next status line."""
    deadline = time.monotonic() + timeout
    while True:
        line = engines.next(deadline - time.monotonic())
        if isinstance(line, EngineStatus):
            return line


def _lines(engines: Child, deadline: float) -> list[Line]:
    try:
        return [engines.next(min(1.0, max(0.0, deadline - time.monotonic())))]
    except TimeoutError:
        return []


def _cpu(pid: int | None) -> float:
    return cpu_seconds(pid) if pid is not None else 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _listener(root: int, port: int, timeout: float = 30.0) -> int | None:
    """The process among ``root``'s descendants that listens on TCP ``port`` (the heart
    monitor, a child process of the controller); None if none does in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = listening_descendant(root, port)
        if pid is not None:
            return pid
        time.sleep(0.2)
    return None


COLUMNS = [
    ("controller", "controller", "{}"),
    ("period", "period_ms", "{:g}"),
    ("engines", "engines", "{}"),
    ("registered", "registered", "{}"),
    ("reg s", "registration_s", "{:.1f}"),
    ("reg hub cpu s", "registration_hub_cpu_s", "{:.1f}"),
    ("purged", "purged", "{}"),
    ("lost", "lost", "{}"),
    ("hub cpu %", "hub_cpu_percent", "{:.1f}"),
    ("monitor cpu %", "monitor_cpu_percent", "{:.1f}"),
    ("detected", "detected", "{}"),
    ("detect p50 ms", "detect_p50_ms", "{:.0f}"),
    ("detect max ms", "detect_max_ms", "{:.0f}"),
]


def table(rows: Sequence[dict[str, Any]], header: bool = True) -> str:
    """The rows as a text table; without ``header``, aligned as if it were there (a step's
    row printed as it comes)."""
    titles = [title for title, _, _ in COLUMNS]
    lines = [titles] + [
        [cell_text(template, row.get(key)) for _, key, template in COLUMNS] for row in rows
    ]
    text = aligned(lines)
    return text if header else text.split("\n", 1)[1]


def summary(rows: Sequence[dict[str, Any]]) -> str:
    """The monitors' CPU and detection side by side, for each period and size both ran."""
    by = {(r["controller"], r["period_ms"], r["engines"]): r for r in rows}
    lines = []
    for (controller, period, size), row in by.items():
        stock = by.get(("stock", period, size))
        if controller != "greenheart" or stock is None:
            continue
        ours, theirs = row["monitor_cpu_percent"], stock["monitor_cpu_percent"]
        cpu = f"{ours / theirs:.2f}x" if theirs else "-"
        lines.append(
            f"{size} engines @ {period:g} ms: heart monitor CPU greenheart/stock {cpu};"
            f" crash detection max {_text(row['detect_max_ms'])} vs {_text(stock['detect_max_ms'])}"
        )
    for row in rows:
        if row.get("left"):
            lines.append(
                f"{row['controller']} @ {row['period_ms']:g} ms, {row['engines']} engines:"
                f" {row['left']} engines left, hearing no pings: the heart monitor stalled"
            )
    return "\n".join(lines)


def _text(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f} s"


def plot(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Registration time and heart-monitor CPU against engines, a line a controller and period."""
    figure, registration, cpu = two_panels()
    keys = sorted({(r["controller"], r["period_ms"]) for r in rows})
    for number, (controller, period) in enumerate(keys):
        line = sorted(
            (r for r in rows if (r["controller"], r["period_ms"]) == (controller, period)),
            key=lambda r: r["engines"],
        )
        label, color = f"{controller} @ {period:g} ms", f"C{number}"
        sizes = [r["engines"] for r in line]
        registration.plot(
            sizes, [r["registration_s"] for r in line], marker="o", color=color, label=label
        )
        monitor_cpu = [r["monitor_cpu_percent"] for r in line]
        cpu.plot(sizes, monitor_cpu, marker="o", color=color, label=f"{label}: heart monitor")
        hub_cpu = [r["hub_cpu_percent"] for r in line]
        cpu.plot(sizes, hub_cpu, marker="x", ls="--", color=color, label=f"{label}: hub")
    registration.set_ylabel("seconds until all registered")
    registration.set_title("greenheart bench ipyparallel: a controller under a storm of engines")
    registration.legend(fontsize="small")
    cpu.set_ylabel("CPU while beating, % of a core")
    cpu.set_xlabel("engines")
    cpu.legend(fontsize="small")
    save_png(figure, path)
