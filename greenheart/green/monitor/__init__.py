"""The heart monitor, one idea a module:

- :mod:`~greenheart.green.monitor.monitor`: :class:`HeartMonitor`, the ledger driven by two
  greenlets, its life cycle and what it knows;
- :mod:`~greenheart.green.monitor.pongs`: the pong greenlet, reading the ROUTER into the ledger;
- :mod:`~greenheart.green.monitor.sockets`: its two sockets, made, tuned and checked;
- :mod:`~greenheart.green.monitor.handlers`: who hears of its verdicts;
- :mod:`~greenheart.green.monitor.logs`: what it logs.
"""

from __future__ import annotations

from greenheart.green.monitor.monitor import HeartMonitor, MonitorStatus

__all__ = ["HeartMonitor", "MonitorStatus"]
