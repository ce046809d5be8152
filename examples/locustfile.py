"""Locust drives a heart fleet: every user is a heart answering the monitor named by --host.

    greenheart monitor --ping tcp://127.0.0.1:5555 --pong tcp://127.0.0.1:5556 --period 1000 &
    locust -f examples/locustfile.py --headless -u 5000 -r 500 -t 1m \\
        --host "tcp://127.0.0.1:5555 tcp://127.0.0.1:5556" --csv hearts

Beyond one machine: ``--master`` here and ``--worker --master-host ...`` on each worker
machine, or ``--processes N`` for all the cores of this one. This file comes with the
repository and the sdist, not the installed package: there, any ``locustfile.py`` holding the
import below does the same (docs/integrations.md).
"""

from greenheart.integrations.locust_user import HeartUser

__all__ = ["HeartUser"]
