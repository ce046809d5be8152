"""greenheart: a gevent-native multi-heart heartbeat system, wire-compatible with ipyparallel."""

from greenheart.heart import Heart
from greenheart.ledger import Beat, Counters, Ledger, Pong, PongKind
from greenheart.monitor import HeartMonitor

__version__ = "0.1.0"

__all__ = ["Beat", "Counters", "Heart", "HeartMonitor", "Ledger", "Pong", "PongKind", "__version__"]
