"""greenheart: a gevent-native multi-heart heartbeat system, wire-compatible with ipyparallel.

The package is built in layers, each importing only from the layers above it in this list:

- :mod:`greenheart.core`: the pure core. Every decision (the ledger of hearts and rounds,
  the beat grid and its stall rule, whether a beat may judge, phi accrual, the wire codec,
  behaviours and the scenario timeline, the ZAP rule) as plain state machines and
  functions, fed with bytes, counts and times. No gevent, no ZeroMQ.
- :mod:`greenheart.green`: the gevent drivers. :class:`HeartMonitor`, :class:`Heart`,
  :class:`HeartFleet` and the ZAP authenticator move bytes, time and events between
  ``zmq.green`` sockets and the core, and share one life cycle.
- :mod:`greenheart.integrations`: a WSGI ``/hearts`` view, Prometheus metrics, an event
  stream, Locust users.
- :mod:`greenheart.bench`: the load tests, on one harness.
- :mod:`greenheart.cli`: the ``greenheart`` command.

The names below are imported on first use, so ``import greenheart`` is cheap and the key
helpers (:class:`KeyPair`) do not load gevent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: every public name, and the module that defines it
_EXPORTS = {
    "Beat": "greenheart.core.ledger",
    "Counters": "greenheart.core.ledger",
    "HeartState": "greenheart.core.ledger",
    "Ledger": "greenheart.core.ledger",
    "Pong": "greenheart.core.ledger",
    "PongKind": "greenheart.core.ledger",
    "RoundTrips": "greenheart.core.ledger",
    "PhiAccrual": "greenheart.core.phi",
    "MassSilence": "greenheart.core.silence",
    "Cause": "greenheart.core.failures",
    "Failure": "greenheart.core.failures",
    "FalseFailure": "greenheart.core.failures",
    "Behaviour": "greenheart.core.behaviour",
    "Churn": "greenheart.core.behaviour",
    "Delay": "greenheart.core.behaviour",
    "Die": "greenheart.core.behaviour",
    "Flap": "greenheart.core.behaviour",
    "Reconnect": "greenheart.core.behaviour",
    "Revive": "greenheart.core.behaviour",
    "GreenheartError": "greenheart.core.errors",
    "TooManyHearts": "greenheart.core.errors",
    "UsageError": "greenheart.core.errors",
    "ClientCurve": "greenheart.green.curve",
    "KeyPair": "greenheart.green.curve",
    "ServerCurve": "greenheart.green.curve",
    "HeartMonitor": "greenheart.green.monitor",
    "Heart": "greenheart.green.heart",
    "FleetStatus": "greenheart.green.fleet",
    "HeartCounters": "greenheart.green.fleet",
    "HeartFleet": "greenheart.green.fleet",
}

__all__ = [
    "Beat",
    "Behaviour",
    "Cause",
    "Churn",
    "ClientCurve",
    "Counters",
    "Delay",
    "Die",
    "Failure",
    "FalseFailure",
    "Flap",
    "FleetStatus",
    "GreenheartError",
    "Heart",
    "HeartCounters",
    "HeartFleet",
    "HeartMonitor",
    "HeartState",
    "KeyPair",
    "Ledger",
    "MassSilence",
    "PhiAccrual",
    "Pong",
    "PongKind",
    "Reconnect",
    "Revive",
    "RoundTrips",
    "ServerCurve",
    "TooManyHearts",
    "UsageError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'greenheart' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from greenheart.core.behaviour import Behaviour, Churn, Delay, Die, Flap, Reconnect, Revive
    from greenheart.core.errors import GreenheartError, TooManyHearts, UsageError
    from greenheart.core.failures import Cause, Failure, FalseFailure
    from greenheart.core.ledger import (
        Beat,
        Counters,
        HeartState,
        Ledger,
        Pong,
        PongKind,
        RoundTrips,
    )
    from greenheart.core.phi import PhiAccrual
    from greenheart.core.silence import MassSilence
    from greenheart.green.curve import ClientCurve, KeyPair, ServerCurve
    from greenheart.green.fleet import FleetStatus, HeartCounters, HeartFleet
    from greenheart.green.heart import Heart
    from greenheart.green.monitor import HeartMonitor
