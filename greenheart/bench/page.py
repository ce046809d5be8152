"""The live page under a large fleet: what one update weighs, and what it costs either side.

A monitor in this process serves its page (:class:`~greenheart.integrations.live.LiveServer`);
a fleet of ``--hearts`` in a child process answers it; headless Chromium
(:mod:`greenheart.bench.browser`) keeps the page open. Once every heart is registered, it
reads this process's CPU per beat with no viewer, one and five (tabs polling as a person's
does), the bytes of a full and of a quiet update (``/live.json``), the browser's time to apply
and draw one, and the monitor's to make a full one from nothing. ``--screenshot FILE`` saves
the page as a PNG once ``--kill`` hearts have been killed, so that it shows failures too.
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

HELP = "the live page under a large fleet: the monitor's CPU per viewer, update sizes, times"
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
    parser.add_argument("--beats", type=positive_count, default=10, help="beats per CPU figure")
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

        def cpu_per_beat(beats: int = args.beats) -> float:
            """This process's CPU (the monitor and its page's server) per beat, in ms."""
            first, began = monitor.ledger.counters.beats, time.process_time()
            _wait(lambda: monitor.ledger.counters.beats >= first + beats, 60, "the beats")
            made = monitor.ledger.counters.beats - first
            return round(1000 * (time.process_time() - began) / made, 1)

        cpu = {"0": cpu_per_beat()}
        browser = Browser(height=1700 if args.screenshot else 900)
        try:
            browser.open(page.url)
            browser.wait_for("window.greenheart && window.greenheart.updates >= 2", timeout=60)
            cpu["1"] = cpu_per_beat()
            # four more viewers, tabs of their own: pushed to (server-sent events), then polling
            for url in (page.url, page.url + "?poll"):
                tabs = [browser.call("Target.createTarget", url=url)["targetId"] for _ in range(4)]
                gevent.sleep(3 * args.period / 1000)  # the new tabs' first (full) updates
                cpu["5" if url == page.url else "5 polling"] = cpu_per_beat()
                for tab in tabs:
                    browser.call("Target.closeTarget", targetId=tab)
            samples: list[dict[str, float]] = []
            while len(samples) < args.updates:
                seen = browser.evaluate("window.greenheart.updates")
                stats = browser.wait_for(
                    f"window.greenheart.updates > {seen} && window.greenheart", timeout=60
                )
                samples.append(stats)
            full_bytes = browser.evaluate("window.greenheart.fullBytes")
            full_apply = browser.evaluate("window.greenheart.fullApplyMs")
            writes = []  # a full update made from nothing: every row, encoded
            for _ in range(5):
                began = time.process_time()
                page.view.full()
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
    quiet = [s["lastBytes"] for s in samples if not s["lastFull"]]
    result = {
        "hearts": args.hearts,
        "period_ms": args.period,
        "updates": len(samples),
        "monitor_cpu_ms_per_beat": cpu,
        "cpu_ratio_5_viewers": round(cpu["5"] / cpu["0"], 2),
        "cpu_ratio_5_viewers_polling": round(cpu["5 polling"] / cpu["0"], 2),
        "full_update_bytes": full_bytes,
        "quiet_update_bytes_max": max(quiet) if quiet else None,
        "full_update_cpu_ms_p50": round(percentile(writes, 0.5) or 0.0, 1),
        "full_apply_ms": round(full_apply, 1),
        "apply_ms_p50": round(percentile([s["lastParseMs"] for s in samples], 0.5) or 0.0, 2),
        "render_ms_p50": round(percentile([s["lastRenderMs"] for s in samples], 0.5) or 0.0, 1),
        "render_ms_max": round(max(s["lastRenderMs"] for s in samples), 1),
    }
    print(
        f"{result['hearts']} hearts, the monitor's CPU per beat (ms) with 0, 1 and 5 viewers:"
        f" {cpu['0']}, {cpu['1']}, {cpu['5']} ({result['cpu_ratio_5_viewers']}x with 5;"
        f" {result['cpu_ratio_5_viewers_polling']}x with 5 polling);"
        f" a full update {full_bytes / 1024:.0f} KiB made in {result['full_update_cpu_ms_p50']}"
        f" ms, a quiet one {result['quiet_update_bytes_max']} bytes; the browser applies a full"
        f" one in {result['full_apply_ms']} ms, a quiet one in {result['apply_ms_p50']} ms, and"
        f" draws in {result['render_ms_p50']} ms (p50)"
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
