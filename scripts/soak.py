"""Soak a monitor: thousands of hearts for minutes, with churn and garbage, and check it never lies.

The monitor runs in this process (so its memory is this process's); the hearts run in a
child process as one HeartFleet, which also kills a share of its hearts every few seconds
(and grows as many new ones), and sends garbage to the monitor's pong socket. Every kill
is reported on the child's stdout with its time on the shared monotonic clock.

Checked at the end:
* no false failures: every heart the monitor failed had been killed before;
* every killed heart was failed within (max_misses + 2) periods, plus slack for the beat;
* the monitor's RSS grew by less than 5 MiB after the warm-up.

    python scripts/soak.py                   # 5,000 hearts at 200 ms for 10 minutes
    python scripts/soak.py --quick           # 1,000 hearts for 2 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import sys
import time

import gevent
import zmq
from gevent import subprocess

from greenheart import HeartFleet, HeartMonitor
from greenheart.bench.proc import rss_kib
from greenheart.green.limits import raise_open_file_limit

#: seconds between churn rounds in the fleet
CHURN_EVERY = 6.0

#: extra seconds a detection may take beyond the bound: a beat on a busy machine runs late
SLACK = 0.1

log = logging.getLogger("greenheart.soak")


def fleet_child(
    ping: str, pong: str, size: int, churn_per_minute: float, garbage_rate: float, seed: int
) -> None:
    """The child: a fleet that churns, and a garbage sender."""
    raise_open_file_limit()
    chooser = random.Random(seed)
    per_round = max(1, round(size * churn_per_minute * CHURN_EVERY / 60))

    def say(**fields: object) -> None:
        print(json.dumps({"t": time.monotonic(), **fields}), flush=True)

    with HeartFleet(ping, pong, size=size, prefix="soak") as fleet:
        say(event="started", hearts=len(fleet.alive))
        gevent.spawn(send_garbage, pong, garbage_rate, seed)
        while True:
            gevent.sleep(CHURN_EVERY)
            # only hearts old enough to have registered, so each kill must show as a failure
            settled = list(fleet.alive)[: -4 * per_round]
            victims = chooser.sample(settled, min(per_round, len(settled)))
            fleet.kill(victims)
            say(event="killed", hearts=[heart.decode() for heart in victims])
            fleet.grow(len(victims))


def send_garbage(pong: str, rate: float, seed: int) -> None:
    """About ``rate`` messages a second of random shape, from a few peers."""
    chooser = random.Random(seed + 1)
    context = zmq.Context.instance()
    peers = []
    for n in range(4):
        peer = context.socket(zmq.DEALER)
        peer.linger = 0
        peer.setsockopt(zmq.IDENTITY, f"garbage-{n}".encode())
        peer.connect(pong)
        peers.append(peer)
    batch = max(1, int(rate / 10))
    while True:
        for _ in range(batch):
            frames = [
                os.urandom(chooser.choice([0, 1, 8, 30, 64, 65, 500]))
                for _ in range(chooser.randint(1, 3))
            ]
            with contextlib.suppress(zmq.Again):  # the monitor's queue for this peer is full
                chooser.choice(peers).send_multipart(frames, zmq.NOBLOCK)
        gevent.sleep(0.1)


def soak(args: argparse.Namespace) -> int:
    raise_open_file_limit()
    period = args.period / 1000
    bound = (args.max_misses + 2) * period + SLACK
    monitor = HeartMonitor.bind(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", period=args.period, max_misses=args.max_misses
    )
    failed: dict[str, float] = {}
    registered: dict[str, int] = {}
    killed: dict[str, float] = {}
    monitor.add_new_heart_handler(
        lambda heart: registered.__setitem__(heart.decode(), registered.get(heart.decode(), 0) + 1)
    )
    monitor.add_heart_failure_handler(
        lambda heart: failed.setdefault(heart.decode(), time.monotonic())
    )
    garbage_rate = args.hearts / period * args.garbage
    with monitor:
        child = subprocess.Popen(
            [sys.executable, __file__, "--fleet-child", monitor.ping_addr, monitor.pong_addr,
             str(args.hearts), str(args.churn), str(garbage_rate), str(args.seed)],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            started = time.monotonic()
            end = started + args.minutes * 60
            reader = gevent.spawn(read_kills, child, killed)
            samples: list[tuple[float, int]] = []
            while time.monotonic() < end:
                gevent.sleep(5)
                if child.poll() is not None:
                    raise SystemExit("the fleet process died")
                samples.append((time.monotonic() - started, rss_kib()))
                print(
                    f"{samples[-1][0]:6.0f} s: {len(monitor.hearts)} hearts, {len(killed)} killed,"
                    f" {len(failed)} failed, bad pongs {monitor.counters.bad_pongs},"
                    f" stalls {monitor.stalls}, RSS {samples[-1][1] / 1024:.1f} MiB",
                    flush=True,
                )
            reader.kill()
            # kills of the last moments cannot have been detected yet
            killed = {heart: at for heart, at in killed.items() if at < end - bound}
        finally:
            child.kill()
            child.wait()
    return report(args, monitor, killed, failed, registered, samples, bound)


def read_kills(child: subprocess.Popen, killed: dict[str, float]) -> None:
    for line in child.stdout:
        event = json.loads(line)
        if event["event"] == "killed":
            for heart in event["hearts"]:
                killed[heart] = event["t"]


def report(args, monitor, killed, failed, registered, samples, bound) -> int:
    false_failures = [heart for heart, at in failed.items() if killed.get(heart, at + 1) > at]
    detections = sorted(failed[heart] - at for heart, at in killed.items() if heart in failed)
    undetected = [heart for heart in killed if heart not in failed]
    late = [latency for latency in detections if latency > bound]
    warm = [rss for at, rss in samples if at >= args.warmup]
    growth_mib = (max(warm) - warm[0]) / 1024 if len(warm) > 1 else 0.0
    counters = monitor.counters
    result = {
        "hearts": args.hearts,
        "period_ms": args.period,
        "minutes": args.minutes,
        "max_misses": args.max_misses,
        "killed": len(killed),
        "failed": len(failed),
        "false_failures": len(false_failures),
        "undetected": len(undetected),
        "detection_bound_s": round(bound, 3),
        "detection_max_s": round(detections[-1], 3) if detections else None,
        "detection_p50_s": round(detections[len(detections) // 2], 3) if detections else None,
        "late_detections": len(late),
        "bad_pongs": counters.bad_pongs,
        "beats": counters.beats,
        "unjudged_beats": counters.unjudged_beats,
        "rss_after_warmup_mib": round(warm[0] / 1024, 1) if warm else None,
        "rss_growth_mib": round(growth_mib, 2),
        "new_hearts": sum(registered.values()),
    }
    print(json.dumps(result, indent=2))
    problems = []
    if false_failures:
        problems.append(f"{len(false_failures)} false failures, e.g. {false_failures[:3]}")
    if undetected or late:
        problems.append(f"{len(undetected)} kills undetected, {len(late)} detected late")
    if growth_mib >= 5:
        problems.append(f"RSS grew {growth_mib:.1f} MiB after warm-up")
    for problem in problems:
        print("FAIL:", problem)
    if not problems:
        print("OK: no false failures, every kill detected in time, memory flat")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return 1 if problems else 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--fleet-child":
        ping, pong, size, churn, garbage, seed = sys.argv[2:]
        fleet_child(ping, pong, int(size), float(churn), float(garbage), int(seed))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hearts", type=int, default=5000)
    parser.add_argument("--period", type=float, default=200.0, metavar="MS")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--max-misses", type=int, default=2)
    parser.add_argument("--churn", type=float, default=0.01, help="share of hearts killed a minute")
    parser.add_argument("--garbage", type=float, default=0.01, help="garbage per pong")
    parser.add_argument(
        "--warmup",
        type=float,
        default=150.0,
        metavar="SECONDS",
        help="ZeroMQ grows each connection's queue in chunks of 256 messages: the monitor's"
        " memory rises for the first 500 or so beats, then stays flat",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the result here")
    parser.add_argument("--quick", action="store_true", help="1,000 hearts for 2 minutes")
    args = parser.parse_args()
    if args.quick:
        args.hearts, args.minutes, args.warmup = 1000, 2.0, 110.0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
