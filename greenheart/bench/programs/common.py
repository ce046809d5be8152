"""What the benchmark's programs share: where they bind, the CURVE key files, a footprint."""

from __future__ import annotations

import os

from greenheart.bench.lines import Footprint
from greenheart.bench.proc import rss_kib
from greenheart.green.limits import open_descriptors

LOOPBACK = "tcp://127.0.0.1:0"

#: in a ``--curve`` directory: the monitor's key pair, and the fleets' (the one allowed in)
SERVER_KEYS = "server.key_secret"
SERVER_PUBLIC_KEY = "server.key"
FLEET_KEYS = "allowed/fleet.key_secret"


def footprint() -> Footprint:
    return Footprint(rss_kib=rss_kib(), fds=open_descriptors(), pid=os.getpid())
