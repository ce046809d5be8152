"""``ipcontroller`` with greenheart's heart monitor.

ipyparallel has no setting for its heart monitor: ``IPController`` starts the function
``ipyparallel.controller.app.start_heartmonitor`` in a process of its own. :func:`install` puts
greenheart's :func:`~greenheart.integrations.ipyparallel.heartmonitor.start_heartmonitor` in
its place before the app starts; everything else (profile, config files, command-line traits,
CURVE, the hub, the schedulers) is ipyparallel's own.

:func:`launch` refuses a ``HeartMonitor.state_file`` without ``--restore``: the hub would forget
its engines while the monitor awaits their hearts; ipyparallel's restore keeps the two agreed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

from greenheart.core.errors import UsageError
from greenheart.green.orphans import die_with_parent
from greenheart.integrations.ipyparallel.heartmonitor import start_heartmonitor


def install(*, fail_on_disconnect: bool = False, http_port: int | None = None,
            http_host: str = "127.0.0.1", record: str | None = None) -> None:  # fmt: skip
    """Make every ``IPController`` started in this process use greenheart's heart monitor.

    The function installed is a module-level function (in a :func:`functools.partial`), so
    it is pickled by name: the controller's heart-monitor process can be started by fork,
    spawn or forkserver.
    """
    import ipyparallel.controller.app as app

    from greenheart.integrations.ipyparallel.traits import GreenheartHeartMonitor

    # the controller reads the HeartMonitor section itself (the period): with greenheart's
    # traits known, it does not warn of them
    app.HeartMonitor = GreenheartHeartMonitor
    app.start_heartmonitor = functools.partial(
        start_heartmonitor,
        fail_on_disconnect=fail_on_disconnect,
        http_port=http_port,
        http_host=http_host,
        record=record,
    )


def launch(
    argv: Sequence[str],
    *,
    fail_on_disconnect: bool = False,
    http_port: int | None = None,
    http_host: str = "127.0.0.1",
    record: str | None = None,
) -> None:
    """Run ``ipcontroller argv...`` with greenheart's heart monitor, until it exits; with
    ``http_port``, the monitor's live page is served there; with ``record``, the monitor
    records to that file (for ``greenheart tune``).

    Every process the controller forks (its schedulers, its heart monitor: ipyparallel starts
    them with multiprocessing, by fork on Linux) dies with it, however it dies: a SIGKILLed
    stock controller leaves them running, holding its ports."""
    os.register_at_fork(after_in_child=die_with_parent)
    install(
        fail_on_disconnect=fail_on_disconnect,
        http_port=http_port,
        http_host=http_host,
        record=record,
    )
    from ipyparallel.controller.app import IPController

    app = IPController.instance()  # launch_instance(), checked before the hub binds
    init_hub = app.init_hub

    def checked_init_hub() -> None:
        require_restore_for_state(app)
        init_hub()

    app.init_hub = checked_init_hub
    app.initialize(list(argv))
    app.start()


def require_restore_for_state(app: Any) -> None:
    """Refuse a state file to a controller ``app`` that does not restore its engines: its hub
    starts with none, so the hearts the monitor would await are of engines it does not know
    (and the failures of those are logged for nothing)."""
    from greenheart.integrations.ipyparallel.traits import GreenheartHeartMonitor

    state_file = GreenheartHeartMonitor(config=app.config).state_file
    if state_file and not app.restore_engines:
        raise UsageError(
            f"--HeartMonitor.state_file={state_file} needs --restore"
            " (IPController.restore_engines): the heart monitor awaits the engines the hub"
            " restores, and without it the hub restores none"
        )
