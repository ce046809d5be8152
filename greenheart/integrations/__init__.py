"""Where greenheart meets other software, each behind its own optional extra.

- :mod:`~greenheart.integrations.wsgi`: ``GET /hearts`` for a gevent web server
- :mod:`~greenheart.integrations.metrics`: Prometheus metrics (``greenheart-zmq[metrics]``)
- :mod:`~greenheart.integrations.events`: new-heart and heart-failure events on a ZeroMQ PUB
- :mod:`~greenheart.integrations.locust_user`: a Locust user that is a heart
  (``greenheart-zmq[locust]``)
- :mod:`~greenheart.integrations.ipyparallel`: greenheart's monitor as a real ipyparallel
  controller's heart monitor, and simulated engines to load-test a controller
  (``greenheart-zmq[ipyparallel]``)
"""
