"""greenheart: a gevent-native multi-heart heartbeat system, wire-compatible with ipyparallel."""

from greenheart.behaviour import Behaviour, Churn, Delay, Die, Flap, Revive
from greenheart.fleet import FleetStatus, HeartCounters, HeartFleet
from greenheart.heart import Heart
from greenheart.ledger import Beat, Counters, Ledger, Pong, PongKind
from greenheart.limits import TooManyHearts
from greenheart.monitor import HeartMonitor

__version__ = "0.1.0"

__all__ = [
    "Beat",
    "Behaviour",
    "Churn",
    "Counters",
    "Delay",
    "Die",
    "Flap",
    "FleetStatus",
    "Heart",
    "HeartCounters",
    "HeartFleet",
    "HeartMonitor",
    "Ledger",
    "Pong",
    "PongKind",
    "Revive",
    "TooManyHearts",
    "__version__",
]
