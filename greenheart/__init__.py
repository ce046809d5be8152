"""greenheart: a gevent-native multi-heart heartbeat system, wire-compatible with ipyparallel."""

from greenheart.behaviour import Behaviour, Churn, Delay, Die, Flap, Revive
from greenheart.curve import ClientCurve, KeyPair, ServerCurve
from greenheart.fleet import FleetStatus, HeartCounters, HeartFleet
from greenheart.heart import Heart
from greenheart.ledger import Beat, Counters, HeartState, Ledger, Pong, PongKind, RoundTrips
from greenheart.limits import TooManyHearts
from greenheart.monitor import HeartMonitor
from greenheart.phi import PhiAccrual

__version__ = "0.1.0"

__all__ = [
    "Beat",
    "Behaviour",
    "Churn",
    "ClientCurve",
    "Counters",
    "Delay",
    "Die",
    "Flap",
    "FleetStatus",
    "Heart",
    "HeartCounters",
    "HeartFleet",
    "HeartMonitor",
    "HeartState",
    "KeyPair",
    "Ledger",
    "PhiAccrual",
    "Pong",
    "PongKind",
    "Revive",
    "RoundTrips",
    "ServerCurve",
    "TooManyHearts",
    "__version__",
]
