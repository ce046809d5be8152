"""The simulator: many hearts in one process, and how each of them answers.

:class:`HeartFleet` holds the hearts; :class:`Behaviour` says how they answer (delays, loss,
slow hearts), and :class:`Die`, :class:`Revive`, :class:`Churn`, :class:`Flap` and
:class:`Reconnect` script what happens to them; a :class:`Timeline` turns that scenario into
who does what, when (seeded). Simulated ipyparallel engines, built on a fleet, are
:mod:`greenheart.integrations.ipyparallel.engines`.
"""

from __future__ import annotations

from greenheart.core.behaviour import Behaviour, Churn, Delay, Die, Flap, Reconnect, Revive
from greenheart.core.timeline import Timeline
from greenheart.green.fleet import FleetStatus, HeartCounters, HeartFleet

__all__ = [
    "Behaviour",
    "Churn",
    "Delay",
    "Die",
    "Flap",
    "FleetStatus",
    "HeartCounters",
    "HeartFleet",
    "Reconnect",
    "Revive",
    "Timeline",
]
