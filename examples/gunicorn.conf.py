"""gunicorn's gevent workers, each with a greenheart Heart answering one monitor.

    greenheart monitor --ping tcp://127.0.0.1:5555 --pong tcp://127.0.0.1:5556 \\
        --period 1000 --fail-on-disconnect --http-port 8080 &
    gunicorn -c examples/gunicorn.conf.py -k gevent -w 3 yourapp:app

The heart is made in ``post_worker_init``: in the worker, after the fork (a ZeroMQ context or
a greenlet made in the master, by this file or by an app loaded with ``--preload``, is of no
use in a child), after the gevent worker has monkey-patched and reinitialised its hub, and
once the app has loaded. It beats while the worker's hub runs, so a stuck worker stops
answering too. Its identity is ``gunicorn-<host>-<pid>``, the pid gunicorn logs as "Booting
worker with pid": a killed worker's replacement is a new heart. ``worker_exit`` stops it;
a heart that dies of an error stops its worker, so that gunicorn starts one with a new heart.

With ``--fail-on-disconnect`` the monitor fails a killed worker's heart as ``crashed`` within
milliseconds, when its connection closes. A heart stopped with its worker (SIGTERM, a reload)
says it leaves before it closes: failed at once too, but as ``left``, diagnosed ``stopped``.

GREENHEART_PING and GREENHEART_PONG name the monitor.
"""

import os
import socket

worker_class = "gevent"

PING = os.environ.get("GREENHEART_PING", "tcp://127.0.0.1:5555")
PONG = os.environ.get("GREENHEART_PONG", "tcp://127.0.0.1:5556")


def post_worker_init(worker):
    from greenheart import Heart  # here, in the worker: not loaded in the master

    heart = Heart(PING, PONG, heart_id=f"gunicorn-{socket.gethostname()}-{worker.pid}")

    def stopped(heart, error):
        if error is not None:  # greenheart has logged why; a new worker brings a new heart
            worker.alive = False

    heart.add_stop_handler(stopped)
    worker.greenheart = heart.start()
    worker.log.info("greenheart: heart %s answers %s", heart.heart_id, PING)


def worker_exit(server, worker):
    heart = getattr(worker, "greenheart", None)  # None in the master, for a worker gone
    if heart is not None:
        heart.stop()
        worker.log.info("greenheart: heart %s stopped", heart.heart_id)
