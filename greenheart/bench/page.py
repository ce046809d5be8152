"""The live page under a large fleet: what one update weighs, and what it costs either side.

A monitor in this process serves its page (:class:`~greenheart.integrations.live.LiveServer`);
a fleet of ``--hearts`` in a child process answers it; headless Chromium
(:mod:`greenheart.bench.browser`) keeps the page open. Once every heart is registered, it
reads, over ``--updates`` updates, the bytes of ``/live.json``, the browser's time to parse and
draw each, and the monitor's time to write one. ``--screenshot FILE`` saves the page as a PNG
once ``--kill`` hearts have been killed, so that it shows failures too.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gevent

from greenheart.bench.browser import Browser, find_chromium
from greenheart.bench.child import STARTUP_SECONDS, Child, children
from greenheart.bench.lines import Killed, Started
from greenheart.core.checks import count, output_file, positive_count, positive_float
from greenheart.core.errors import UsageError
from greenheart.core.stats import percentile

HELP = "the live page under a large fleet: JSON per update, browser and monitor time"
DESCRIPTION = __doc__.split("\n\n")[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hearts",
        type=positive_count,
        default=9_900,
        help="fleet hearts (9,900: a fleet process fits 9,966 at 20,000 descriptors)",
    )
    parser.add_argument("--period", type=positive_float, default=1000.0, help="ms (1000)")
    parser.add_argument("--updates", type=positive_count, default=10, help="updates measured (10)")
    parser.add_argument("--kill", type=count, default=0, help="hearts killed before a screenshot")
    parser.add_argument(
        "--screenshot", type=output_file, metavar="FILE", help="save the page as a PNG"
    )
    parser.add_argument("--json", type=output_file, metavar="FILE", help="write the figures here")


def run(args: argparse.Namespace) -> int:
    from greenheart.green.limits import raise_open_file_limit
    from greenheart.green.monitor import HeartMonitor
    from greenheart.integrations.live import LiveServer

    if find_chromium() is None:
        raise UsageError("greenheart bench page needs Chromium: apt-get install chromium")
    raise_open_file_limit()
    monitor = HeartMonitor.bind(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=args.period, max_misses=2
    )
    with monitor, LiveServer(monitor) as page, children() as started:
        fleet = Child.program(
            "fleet", "kill-fleet", f"--ping={monitor.ping_addr}", f"--pong={monitor.pong_addr}",
            f"--size={args.hearts}", stdin=True,
        )  # fmt: skip
        started.append(fleet)
        fleet.expect(Started, STARTUP_SECONDS)
        _wait(lambda: len(monitor.hearts) >= args.hearts, STARTUP_SECONDS, "every heart")
        browser = Browser(height=1700 if args.screenshot else 900)
        try:
            browser.open(page.url)
            browser.wait_for("window.greenheart && window.greenheart.updates >= 2", timeout=60)
            samples: list[dict[str, float]] = []
            while len(samples) < args.updates:
                seen = browser.evaluate("window.greenheart.updates")
                stats = browser.wait_for(
                    f"window.greenheart.updates > {seen} && window.greenheart", timeout=60
                )
                samples.append(stats)
            writes = []
            for _ in range(5):
                began = time.process_time()
                page.view.updates.version = 0  # every row anew: a full update's cost
                sum(len(chunk) for chunk in page.view.update())
                writes.append(1000 * (time.process_time() - began))
            if args.screenshot:
                for _ in range(args.kill):
                    fleet.say("kill")
                    fleet.expect(Killed, 10)
                # failed after max_misses + 1 beats, then a redraw
                gevent.sleep(4 * args.period / 1000 + 2)
                browser.screenshot(Path(args.screenshot))
        finally:
            browser.stop()
    result = {
        "hearts": args.hearts,
        "period_ms": args.period,
        "updates": len(samples),
        "bytes_per_update": max(s["lastBytes"] for s in samples),
        "parse_ms_p50": round(percentile([s["lastParseMs"] for s in samples], 0.5) or 0.0, 1),
        "render_ms_p50": round(percentile([s["lastRenderMs"] for s in samples], 0.5) or 0.0, 1),
        "render_ms_max": round(max(s["lastRenderMs"] for s in samples), 1),
        "monitor_cpu_ms_per_update_p50": round(percentile(writes, 0.5) or 0.0, 1),
    }
    print(
        f"{result['hearts']} hearts: {result['bytes_per_update'] / 1024:.0f} KiB an update;"
        f" the browser parses it in {result['parse_ms_p50']:.1f} ms and draws it in"
        f" {result['render_ms_p50']:.1f} ms (p50; at most {result['render_ms_max']:.1f});"
        f" the monitor writes it in {result['monitor_cpu_ms_per_update_p50']} ms of CPU"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f} s")
        gevent.sleep(0.2)
