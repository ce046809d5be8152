"""greenheart in a real ipyparallel cluster (``greenheart-zmq[ipyparallel]``).

- :mod:`~greenheart.integrations.ipyparallel.heartmonitor`: ``start_heartmonitor``, with
  ipyparallel's signature, runs greenheart's monitor as the controller's heart monitor and
  tells the hub of new and stopped hearts as ipyparallel's own monitor does
- :mod:`~greenheart.integrations.ipyparallel.controller`: ``ipcontroller`` with that monitor
  installed (the ``greenheart ipcontroller`` command)
- :mod:`~greenheart.integrations.ipyparallel.connection`: what an ``ipcontroller-*.json``
  connection file says
- :mod:`~greenheart.integrations.ipyparallel.engines`: simulated engines that register with a
  real controller and then beat, to load-test it (the ``greenheart engines`` command)
"""
