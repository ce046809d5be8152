"""The gevent drivers: sockets and greenlets that move bytes, time and events in and out of
the core.

Each long-lived class here (:class:`~greenheart.green.monitor.HeartMonitor`,
:class:`~greenheart.green.heart.Heart`, :class:`~greenheart.green.fleet.HeartFleet`, the ZAP
:class:`~greenheart.green.zap.Authenticator`) lives the one life of
:mod:`~greenheart.green.lifecycle`. This package's ``__init__`` imports nothing, so that
:mod:`~greenheart.green.curve` (key files and CURVE settings, plain pyzmq) can be used
without gevent.
"""
