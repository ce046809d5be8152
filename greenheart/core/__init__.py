"""The pure core: every decision greenheart makes, and no I/O.

Nothing here imports gevent or ZeroMQ or touches a socket (a test fails if anything does),
and every decision is handed the time by its caller (the one default clock is the rate
limiter's, for log lines). The drivers in :mod:`greenheart.green` hand these modules bytes,
counts and the time, and act on the values they return, as h11's connection is driven. The
map of the modules is docs/architecture.md's.
"""
