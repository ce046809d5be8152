"""HeartFleet's targets, measured side by side in one run (issue 3).

Every monitor, fleet and set of hearts runs in its own process, on loopback (ipc):

- density: one fleet of 9,000 hearts against a greenheart monitor at a 1 s period for
  60 s; every beat must hear every heart (no probation, no late pong, no failure);
- ipyparallel's thread Heart for comparison: hearts added 250 at a time to one process
  until the monitor stops hearing all of them (or creating one fails);
- descriptors: a fleet of 1,000 against 1,000 greenheart.Heart objects;
- memory: fleet RSS per heart at 1,000 and 9,000 hearts;
- round completion: 5,000 hearts, time from ping sent to last pong, p99 over beats;
- fidelity: 10,000 pongs with exp:20 ms delays and 5% loss, measured on the wire.

Run it with scripts/bench-fleet; --quick shrinks every step for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from greenheart.bench.proc import cpu_seconds, proc_status, rss_kib

PY = sys.executable


def fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- children ------------------------------------------------------------------------------------


def child_fleet(ping: str, pong: str, size: int, prefix: str) -> None:
    import gevent
    import gevent.event

    from greenheart import HeartFleet

    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    before = {"rss_before_kib": rss_kib(), "fds_before": fds()}
    with HeartFleet(ping, pong, size=size, prefix=prefix) as fleet:
        while not stop.wait(2):
            status = fleet.status()
            report = {"rss_kib": rss_kib(), "fds": fds(), "alive": status.alive}
            print(json.dumps({**before, **report, "pongs": status.pongs}), flush=True)


def child_hearts(ping: str, pong: str, size: int, prefix: str) -> None:
    import gevent
    import gevent.event
    import zmq.green

    from greenheart import Heart
    from greenheart.green.limits import raise_open_file_limit

    raise_open_file_limit()
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    before = {"rss_before_kib": rss_kib(), "fds_before": fds()}
    context = zmq.green.Context()
    context.set(zmq.MAX_SOCKETS, context.get(zmq.SOCKET_LIMIT))  # the default is 1,023
    hearts = [Heart(ping, pong, heart_id=f"{prefix}-{n}", context=context) for n in range(size)]
    for heart in hearts:
        heart.start()
    while not stop.wait(2):
        print(json.dumps({**before, "rss_kib": rss_kib(), "fds": fds()}), flush=True)
    for heart in hearts:
        heart.stop()


def child_ipyparallel(ping: str, pong: str, step: int, limit: int) -> None:
    """Add ipyparallel hearts ``step`` at a time, each time the parent says "more"."""
    from ipyparallel.controller.heartmonitor import Heart

    rss_before, hearts = rss_kib(), []
    while len(hearts) < limit:
        try:
            for _ in range(step):
                heart = Heart(ping, pong, heart_id=f"ipp-{len(hearts)}".encode())
                heart.start()
                hearts.append(heart)
        except Exception as error:  # running out of descriptors or threads is the measurement
            print(json.dumps({"error": repr(error), "count": len(hearts)}), flush=True)
            break
        try:
            report = {"count": len(hearts), "rss_kib": rss_kib(), "rss_before_kib": rss_before}
            report.update(fds=fds(), threads=proc_status("Threads"))
        except OSError as error:  # the device threads ran the process out of descriptors
            print(json.dumps({"error": repr(error), "count": len(hearts)}), flush=True)
            break
        print(json.dumps(report), flush=True)
        if sys.stdin.readline().strip() != "more":
            break
    os._exit(0)  # daemon device threads cannot be stopped; leave at once


# -- the parent's view of a child ----------------------------------------------------------------


class Child:
    def __init__(self, args: list[str], name: str, stdin: bool = False):
        self.name = name
        self.proc = subprocess.Popen(
            [PY, *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put({"exited": self.proc.wait()})

    def next(self, timeout: float, wanted: Callable[[dict], bool] = lambda line: True) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{self.name}: nothing wanted within {timeout} s") from None
            if "exited" in line:
                raise RuntimeError(f"{self.name} exited with {line['exited']}")
            if wanted(line):
                return line

    def latest(self) -> dict | None:
        line = None
        while not self.lines.empty():
            candidate = self.lines.get()
            if "exited" not in candidate:
                line = candidate
        return line

    def say(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        from greenheart.bench.runner import terminate

        terminate(self.proc)


class Monitor(Child):
    """A greenheart monitor in its own process, printing a JSON summary of every beat."""

    def __init__(self, workdir: str, period_ms: float, max_misses: int = 10):
        self.ping, self.pong = f"ipc://{workdir}/ping", f"ipc://{workdir}/pong"
        super().__init__(
            ["-m", "greenheart", "monitor", "--ping", self.ping, "--pong", self.pong,
             "--period", str(period_ms), "--max-misses", str(max_misses), "--json", "--summary"],
            "monitor",
        )  # fmt: skip
        self.failures = 0
        self.late = 0

    def beat(self, timeout: float) -> dict:
        while True:
            line = self.next(timeout)
            if line["event"] == "failed_heart":
                self.failures += 1
            elif line["event"] == "late_heart":
                self.late += 1
            elif line["event"] == "beat":
                return line

    def until_all_heard(self, hearts: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            beat = self.beat(max(0.1, deadline - time.monotonic()))
            if beat["hearts"] == hearts and beat["responded"] == hearts:
                return beat
            if time.monotonic() > deadline:
                raise TimeoutError(f"monitor heard {beat['responded']} of {hearts} hearts")

    def hold(self, seconds: float) -> dict:
        """Beats for ``seconds``: misses, late pongs, failures, round completion, monitor CPU."""
        self.failures = self.late = 0
        cpu, started = cpu_seconds(self.proc.pid), time.monotonic()
        beats = []
        while time.monotonic() - started < seconds:
            beats.append(self.beat(30))
        elapsed = time.monotonic() - started
        rounds = [beat["max_rtt_ms"] for beat in beats if beat["max_rtt_ms"] is not None]
        return {
            "beats": len(beats),
            "hearts": beats[-1]["hearts"],
            "min_responded": min(beat["responded"] for beat in beats),
            "max_on_probation": max(beat["on_probation"] for beat in beats),
            "late_pongs": sum(beat["late_pongs"] for beat in beats),
            "bad_pongs": sum(beat["bad_pongs"] for beat in beats),
            "failures": self.failures,
            "round_p50_ms": percentile(rounds, 0.5),
            "round_p99_ms": percentile(rounds, 0.99),
            "round_max_ms": max(rounds, default=float("nan")),
            "monitor_cpu_percent": 100 * (cpu_seconds(self.proc.pid) - cpu) / elapsed,
        }


def own(args: list[str]) -> list[str]:
    return [__file__, "--child", *args]


# -- the measurements ----------------------------------------------------------------------


def fleet_run(size: int, period_ms: float, hold: float, startup: float = 90) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        monitor = Monitor(workdir, period_ms)
        fleet = Child(own(["fleet", monitor.ping, monitor.pong, str(size), f"f{size}"]), "fleet")
        try:
            monitor.until_all_heard(size, startup)
            result = monitor.hold(hold)
            fleet.next(10)
            report = fleet.latest() or fleet.next(10)
            result["fleet_rss_per_heart_kib"] = (
                report["rss_kib"] - report["rss_before_kib"]
            ) / size
            result["fleet_fds_per_heart"] = (report["fds"] - report["fds_before"]) / size
            result["zero_misses"] = (
                result["min_responded"] == size
                and result["max_on_probation"] == 0
                and result["late_pongs"] == 0
                and result["failures"] == 0
            )
            return result
        finally:
            fleet.stop()
            monitor.stop()


def heart_objects_run(size: int) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        monitor = Monitor(workdir, 500)
        hearts = Child(own(["hearts", monitor.ping, monitor.pong, str(size), "h"]), "hearts")
        try:
            monitor.until_all_heard(size, 60)
            report = hearts.next(10)
            return {
                "hearts": size,
                "fds_per_heart": (report["fds"] - report["fds_before"]) / size,
                "rss_per_heart_kib": (report["rss_kib"] - report["rss_before_kib"]) / size,
            }
        finally:
            hearts.stop()
            monitor.stop()


def ipyparallel_ramp(step: int, limit: int, period_ms: float = 1000) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        monitor = Monitor(workdir, period_ms)
        child = Child(
            own(["ipyparallel", monitor.ping, monitor.pong, str(step), str(limit)]),
            "ipyparallel hearts",
            stdin=True,
        )
        held, last, why = 0, None, f"reached the script's limit of {limit}"
        try:
            while True:
                try:
                    report = child.next(120)
                except RuntimeError as error:
                    why = f"the process died adding hearts past {held}: {error}"
                    break
                if "error" in report:
                    why = f"creating heart {report['count'] + 1} failed: {report['error']}"
                    break
                try:
                    monitor.until_all_heard(report["count"], 30)
                    steady = monitor.hold(3 * period_ms / 1000)
                except (TimeoutError, RuntimeError) as error:
                    why = f"at {report['count']} hearts: {error}"
                    break
                if steady["min_responded"] < report["count"] or steady["max_on_probation"]:
                    why = f"at {report['count']} hearts the monitor missed some"
                    break
                held, last = report["count"], report
                if held >= limit:
                    break
                child.say("more")
        finally:
            child.stop()
            monitor.stop()
        per_heart = (last["rss_kib"] - last["rss_before_kib"]) / held if last else float("nan")
        return {
            "held": held,
            "stopped_because": why,
            "rss_per_heart_kib": per_heart,
            "threads_per_heart": (last["threads"] - 1) / held if last else float("nan"),
            "fds_per_heart": last["fds"] / held if last else float("nan"),
        }


def fidelity_run(pings: int, hearts: int, delay: str, loss: float) -> dict:
    """Ping a fleet from a bare PUB, time every pong at a bare ROUTER: what arrived, when."""
    import zmq

    context = zmq.Context()
    pub, router = context.socket(zmq.XPUB), context.socket(zmq.ROUTER)
    with tempfile.TemporaryDirectory() as workdir:
        pub.bind(f"ipc://{workdir}/ping")
        router.bind(f"ipc://{workdir}/pong")
        args = [f"ipc://{workdir}/ping", f"ipc://{workdir}/pong", str(hearts)]
        fleet = subprocess.Popen(
            [PY, "-m", "greenheart", "fleet", "--ping", args[0], "--pong", args[1],
             "--size", args[2], "--delay", delay, "--loss", str(loss), "--seed", "1",
             "--status-every", "3600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            pub.recv()  # the fleet subscribed
            seen: set[bytes] = set()
            while len(seen) < hearts:  # warm up until every heart's connection is up
                pub.send(b"warm-up")
                while router.poll(20):
                    seen.add(router.recv_multipart()[0])
            while router.poll(500):
                router.recv_multipart()
            sent_at, delays = {}, []
            for n in range(pings):
                payload = b"%d" % n
                sent_at[payload] = time.monotonic()
                pub.send(payload)
                deadline = time.monotonic() + 0.05
                while (wait := deadline - time.monotonic()) > 0 and router.poll(wait * 1000):
                    _, echoed = router.recv_multipart()
                    delays.append(time.monotonic() - sent_at[echoed])
            while router.poll(2000):  # the long tail of delayed pongs
                _, echoed = router.recv_multipart()
                delays.append(time.monotonic() - sent_at[echoed])
        finally:
            fleet.terminate()
            fleet.wait()
            pub.close(0)
            router.close(0)
            context.term()
    expected = pings * hearts
    delays_ms = [seconds * 1000 for seconds in delays]
    return {
        "pongs_expected": expected,
        "pongs_received": len(delays),
        "loss": 1 - len(delays) / expected,
        "delay_mean_ms": statistics.fmean(delays_ms),
        "delay_p50_ms": percentile(delays_ms, 0.5),
        "delay_p90_ms": percentile(delays_ms, 0.9),
    }


# -- the report ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and short holds")
    parser.add_argument("--json", metavar="FILE", help="write every figure here")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        role, *rest = args.child
        if role == "ipyparallel":
            child_ipyparallel(rest[0], rest[1], int(rest[2]), int(rest[3]))
        else:
            {"fleet": child_fleet, "hearts": child_hearts}[role](
                rest[0], rest[1], int(rest[2]), rest[3]
            )
        return 0

    from greenheart.green.limits import raise_open_file_limit

    limit = raise_open_file_limit()
    quick = args.quick
    density_size, density_hold = (1000, 5) if quick else (9000, 60)
    results: dict[str, object] = {"open_file_limit": limit, "cores": os.cpu_count()}

    def step(name: str, run: Callable[[], dict]) -> dict:
        print(f"-- {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        results[name] = run()
        print(f"   {json.dumps(results[name])} ({time.monotonic() - started:.0f} s)", flush=True)
        return results[name]

    density = step(f"density_{density_size}", lambda: fleet_run(density_size, 1000, density_hold))
    small = step("fleet_1000", lambda: fleet_run(1000, 1000, 5))
    objects = step("heart_objects_1000", lambda: heart_objects_run(200 if quick else 1000))
    completion = step(
        "round_completion_5000", lambda: fleet_run(500 if quick else 5000, 500, 5 if quick else 30)
    )
    fidelity = step("fidelity", lambda: fidelity_run(20 if quick else 100, 100, "exp:20", 0.05))
    ipp = step(
        "ipyparallel_thread_hearts",
        lambda: ipyparallel_ramp(50 if quick else 250, 100 if quick else 3000),
    )

    rows = [
        ("density: hearts in one fleet, 1 s period, zero misses",
         f"{density_size} for {density_hold} s: {'yes' if density['zero_misses'] else 'NO'}",
         ">= 9,000"),
        ("ipyparallel thread Hearts held by one process",
         f"{ipp['held']} ({ipp['stopped_because']})", "< 2,000"),
        ("descriptors a heart: fleet / Heart objects",
         f"{small['fleet_fds_per_heart']:.2f} / {objects['fds_per_heart']:.2f}", "2 / 4"),
        ("fleet RSS a heart at 1,000 / at 9,000",
         f"{small['fleet_rss_per_heart_kib']:.1f} / {density['fleet_rss_per_heart_kib']:.1f} KiB",
         "<= 40 KiB"),
        ("ipyparallel thread Heart RSS a heart", f"{ipp['rss_per_heart_kib']:.0f} KiB", "~200 KiB"),
        ("round completion p99 (ping to last pong), 5,000 hearts",
         f"{completion['round_p99_ms']:.1f} ms (p50 {completion['round_p50_ms']:.1f})",
         "<= 150 ms"),
        ("loss asked 5%: observed over "
         f"{fidelity['pongs_expected']:,} pongs", f"{100 * fidelity['loss']:.2f}%", "within 2 pp"),
        ("delay asked exp mean 20 ms: observed mean (p50, p90)",
         f"{fidelity['delay_mean_ms']:.1f} ms ({fidelity['delay_p50_ms']:.1f}, "
         f"{fidelity['delay_p90_ms']:.1f}; ideal 13.9, 46.1)", "within 10%"),
    ]  # fmt: skip
    width = max(len(row[0]) for row in rows)
    print()
    for name, value, target in rows:
        print(f"{name:<{width}}  {value}   [target {target}]")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
