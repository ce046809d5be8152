"""greenheart: a gevent-native multi-heart heartbeat system, wire-compatible with ipyparallel.

The package is built in layers, each importing only from the layers above it in this list:

- :mod:`greenheart.core`: the pure core. Every decision (the ledger of hearts and rounds,
  the beat grid and its late rule, whether a beat may judge, phi accrual, the wire codec,
  behaviours and the scenario timeline, the ZAP rule) as plain state machines and
  functions, fed with bytes, counts and times. No gevent, no ZeroMQ.
- :mod:`greenheart.green`: the gevent drivers. :class:`HeartMonitor`, :class:`Heart`,
  :class:`HeartFleet` and the ZAP authenticator move bytes, time and events between
  ``zmq.green`` sockets and the core, and share one life cycle.
- :mod:`greenheart.integrations`: a WSGI ``/hearts`` view, Prometheus metrics, an event
  stream, Locust users.
- :mod:`greenheart.bench`: the load tests, on one harness.
- :mod:`greenheart.cli`: the ``greenheart`` command.

The top level holds what most users touch: the monitor, the heart, a beat and its counters,
failures and their certificates, the settings a monitor takes, the errors, and the life cycle
they share. The simulator is :mod:`greenheart.fleet`, CURVE :mod:`greenheart.curve`. Names are
imported on first use, so ``import greenheart`` is cheap and loads no gevent.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: every public name, and the module that defines it
_EXPORTS = {
    "HeartMonitor": "greenheart.green.monitor",
    "MonitorStatus": "greenheart.green.monitor",
    "Heart": "greenheart.green.heart",
    "Service": "greenheart.green.lifecycle",
    "Beat": "greenheart.core.values",
    "Counters": "greenheart.core.values",
    "HeartState": "greenheart.core.values",
    "Rules": "greenheart.core.rules",
    "PhiAccrual": "greenheart.core.phi",
    "MassSilence": "greenheart.core.silence",
    "Cause": "greenheart.core.failures",
    "Failure": "greenheart.core.failures",
    "FalseFailure": "greenheart.core.failures",
    "GreenheartError": "greenheart.core.errors",
    "SocketClosed": "greenheart.core.errors",
    "TooManyHearts": "greenheart.core.errors",
    "UsageError": "greenheart.core.errors",
}

#: names this module once exported, and where they live now: still found, with a warning
_MOVED = {
    **dict.fromkeys(
        ("Behaviour", "Churn", "Delay", "Die", "Flap", "FleetStatus", "HeartCounters"),
        "greenheart.fleet",
    ),
    **dict.fromkeys(("HeartFleet", "Reconnect", "Revive"), "greenheart.fleet"),
    **dict.fromkeys(("ClientCurve", "KeyPair", "ServerCurve"), "greenheart.curve"),
    **dict.fromkeys(("Pong", "PongKind", "RoundTrips"), "greenheart.core.values"),
    "Ledger": "greenheart.core.ledger",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None and name in _MOVED:
        module = _MOVED[name]
        warnings.warn(f"greenheart.{name} is {module}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    if module is None:
        raise AttributeError(f"module 'greenheart' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from greenheart.core.errors import GreenheartError, SocketClosed, TooManyHearts, UsageError
    from greenheart.core.failures import Cause, Failure, FalseFailure
    from greenheart.core.phi import PhiAccrual
    from greenheart.core.rules import Rules
    from greenheart.core.silence import MassSilence
    from greenheart.core.values import Beat, Counters, HeartState
    from greenheart.green.heart import Heart
    from greenheart.green.lifecycle import Service
    from greenheart.green.monitor import HeartMonitor, MonitorStatus
