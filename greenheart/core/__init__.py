"""The pure core: every decision greenheart makes, and no I/O.

Nothing here imports gevent or ZeroMQ, reads a clock or touches a socket (a test fails if
anything does). The drivers in :mod:`greenheart.green` hand these modules bytes, counts and
the time, and act on the values they return, as h11's connection is driven.

- :mod:`~greenheart.core.ledger`: hearts, rounds, probation, failures, round trips, key bindings
- :mod:`~greenheart.core.schedule`: the beat grid, and when a late beat is a stall
- :mod:`~greenheart.core.judging`: whether a beat has read enough to judge the hearts
- :mod:`~greenheart.core.silence`: the mass-silence rule: suspects held, not failed
- :mod:`~greenheart.core.failures`: failure certificates and false failures
- :mod:`~greenheart.core.connections`: which connection each heart answers on
- :mod:`~greenheart.core.refusal`: when to refuse connections at the open-file limit
- :mod:`~greenheart.core.phi`: phi-accrual suspicion
- :mod:`~greenheart.core.wire`: ipyparallel's wire format
- :mod:`~greenheart.core.behaviour`, :mod:`~greenheart.core.timeline`: how simulated hearts
  answer, and what happens to a fleet over time
- :mod:`~greenheart.core.zap`: whether a CURVE peer is let in
- :mod:`~greenheart.core.registrations`: simulated ipyparallel engines' registrations
- :mod:`~greenheart.core.errors`, :mod:`~greenheart.core.checks`,
  :mod:`~greenheart.core.ratelimit`: greenheart's errors, input validators, and logging that
  cannot storm
"""
