"""greenheart: a gevent-native multi-heart heartbeat system, wire-compatible with ipyparallel.

The top level holds what most users touch: the monitor, the heart, a beat and its counters,
failures and their certificates, the settings a monitor takes, the pure ledger beneath it,
the errors, and the life cycle they share. Beside it, three namespaces: the simulator
(:mod:`greenheart.fleet`), CURVE (:mod:`greenheart.curve`) and recordings
(:mod:`greenheart.recording`). Names are imported on first use, so ``import greenheart`` is
cheap and loads no gevent.

Underneath, the package is built in layers, each importing only from the layers before it:
:mod:`greenheart.core` (every decision, pure: no gevent, no ZeroMQ), :mod:`greenheart.green`
(the gevent drivers), :mod:`greenheart.integrations`, :mod:`greenheart.bench` and
:mod:`greenheart.cli`. docs/architecture.md has the map of every module.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: every public name, and the module that defines it
_EXPORTS = {
    "HeartMonitor": "greenheart.green.monitor",
    "MonitorStatus": "greenheart.green.monitor",
    "Heart": "greenheart.green.heart",
    "Service": "greenheart.green.lifecycle",
    "Beat": "greenheart.core.values",
    "Counters": "greenheart.core.values",
    "HeartState": "greenheart.core.values",
    "Pong": "greenheart.core.values",
    "PongKind": "greenheart.core.values",
    "RoundTrips": "greenheart.core.values",
    "Ledger": "greenheart.core.ledger",
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

__all__ = ["__version__", *_EXPORTS]

# The greenheart.* loggers say nothing until the program configures logging, as Python asks
# of libraries: else the last-resort handler would print every warning (a heart failed) on
# stderr. The greenheart command configures it.
logging.getLogger("greenheart").addHandler(logging.NullHandler())


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
    from greenheart.core.errors import GreenheartError, SocketClosed, TooManyHearts, UsageError
    from greenheart.core.failures import Cause, Failure, FalseFailure
    from greenheart.core.ledger import Ledger
    from greenheart.core.phi import PhiAccrual
    from greenheart.core.rules import Rules
    from greenheart.core.silence import MassSilence
    from greenheart.core.values import Beat, Counters, HeartState, Pong, PongKind, RoundTrips
    from greenheart.green.heart import Heart
    from greenheart.green.lifecycle import Service
    from greenheart.green.monitor import HeartMonitor, MonitorStatus
