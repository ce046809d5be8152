"""Which option closes the connections of a host that vanished, and when: none, TCP keepalive
(what greenheart sets) or ZeroMQ's heartbeats. Root and ip(8) needed.

    .venv/bin/python scripts/liveness.py none keepalive zmtp

A PUB and a ROUTER bound in this namespace, a heart (SUB in, DEALER out) in a namespace of its
own joined by a veth pair (10.231.9.0/30, nothing leaves the machine); once it answers, our end
of the link goes down, and the seconds until each socket's connection closes are printed.
"""

import subprocess
import sys
import time

import zmq
import zmq.utils.monitor as zm

NS = "ghexp"


def sh(*a, check=True):
    return subprocess.run(a, check=check, capture_output=True, text=True)


HEART = r"""
import zmq, sys, time
c = zmq.Context(); s = c.socket(zmq.SUB); s.connect(sys.argv[1]); s.subscribe(b"")
d = c.socket(zmq.DEALER); d.identity = b"h"; d.connect(sys.argv[2])
while True:
    m = s.recv(); d.send(m)
"""


def run(mode, secs):
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "link", "add", "ghx0", "type", "veth", "peer", "name", "ghx1", "netns", NS)
        sh("ip", "addr", "add", "10.231.9.1/30", "dev", "ghx0")
        sh("ip", "link", "set", "ghx0", "up")
        sh("ip", "-n", NS, "addr", "add", "10.231.9.2/30", "dev", "ghx1")
        sh("ip", "-n", NS, "link", "set", "ghx1", "up")
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        router = ctx.socket(zmq.ROUTER)
        for s in (pub, router):
            s.linger = 0
            if mode == "keepalive":
                s.setsockopt(zmq.TCP_KEEPALIVE, 1)
                s.setsockopt(zmq.TCP_KEEPALIVE_IDLE, secs // 3)
                s.setsockopt(zmq.TCP_KEEPALIVE_INTVL, max(1, secs // 9))
                s.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
                s.setsockopt(zmq.TCP_MAXRT, secs * 1000)
            elif mode == "zmtp":
                s.setsockopt(zmq.HEARTBEAT_IVL, secs * 1000 // 3)
                s.setsockopt(zmq.HEARTBEAT_TIMEOUT, secs * 1000)
        pub.bind("tcp://10.231.9.1:5701")
        router.bind("tcp://10.231.9.1:5702")
        mons = [pub.get_monitor_socket(), router.get_monitor_socket()]
        p = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                NS,
                sys.executable,
                "-c",
                HEART,
                "tcp://10.231.9.1:5701",
                "tcp://10.231.9.1:5702",
            ]
        )
        t0 = time.monotonic()
        got = 0
        while time.monotonic() - t0 < 10:
            pub.send(b"ping")
            if router.poll(100):
                router.recv_multipart()
                got += 1
            if got > 3:
                break
        assert got > 3, "no echo"
        sh("ip", "link", "set", "ghx0", "down")
        cut = time.monotonic()
        closed = {}
        while time.monotonic() - cut < secs * 3 and len(closed) < 2:
            pub.send(b"ping")
            for name, m in zip(("pub", "router"), mons, strict=True):
                while m.poll(0):
                    ev = zm.recv_monitor_message(m)
                    if ev["event"] == zmq.EVENT_DISCONNECTED and name not in closed:
                        closed[name] = round(time.monotonic() - cut, 2)
            time.sleep(0.1)
        print(mode, secs, closed, flush=True)
        p.kill()
        p.wait()
        for m in mons:
            m.close(0)
        pub.close()
        router.close()
        ctx.term()
    finally:
        sh("ip", "netns", "del", NS, check=False)
        sh("ip", "link", "del", "ghx0", check=False)
        time.sleep(0.5)


for mode in sys.argv[1:]:
    run(mode, 9)
