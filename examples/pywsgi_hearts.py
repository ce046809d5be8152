"""A gevent pywsgi server that embeds a HeartMonitor and serves /hearts and /metrics.

    python examples/pywsgi_hearts.py --http 8080 --ping tcp://0.0.0.0:5555 --pong tcp://0.0.0.0:5556
    curl localhost:8080/hearts

The monitor and the server share one gevent hub: the monitor's two greenlets never block,
and /hearts is written in chunks that yield between them. /metrics needs the ``metrics``
extra (prometheus-client); without it only /hearts is served.
"""

from __future__ import annotations

import argparse
import logging

from gevent.pywsgi import WSGIServer

from greenheart import HeartMonitor
from greenheart.integrations.wsgi import hearts_app


def make_app(monitor: HeartMonitor):
    """/hearts from greenheart.integrations.wsgi; /metrics from prometheus-client, if installed."""
    hearts = hearts_app(monitor)
    try:
        from prometheus_client import make_wsgi_app

        from greenheart.integrations.metrics import register
    except ImportError:
        return hearts
    metrics = make_wsgi_app(register(monitor))

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/metrics":
            return metrics(environ, start_response)
        return hearts(environ, start_response)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--http", type=int, default=8080, help="HTTP port")
    parser.add_argument("--ping", default="tcp://127.0.0.1:5555")
    parser.add_argument("--pong", default="tcp://127.0.0.1:5556")
    parser.add_argument("--period", type=float, default=1000.0, help="milliseconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with HeartMonitor.bind(args.ping, args.pong, period=args.period) as monitor:
        WSGIServer(("0.0.0.0", args.http), make_app(monitor)).serve_forever()


if __name__ == "__main__":
    main()
