"""``greenheart ipcontroller``: ipyparallel's controller, with greenheart's heart monitor.

Every argument but ``--fail-on-disconnect`` (and ``--enable-curve``, a shorthand for
``--IPController.enable_curve=True``) is ``ipcontroller``'s own, passed on untouched
(argparse would take ``--profile-dir=...`` for one of ours), so this command is parsed here,
not by the ``greenheart`` parser.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from greenheart.core.checks import output_file, port
from greenheart.core.errors import UsageError, require_extra

T = TypeVar("T")

NAME = "ipcontroller"
FAIL_ON_DISCONNECT = "--fail-on-disconnect"
#: ipcontroller has only the trait; the shorthand is ours
ENABLE_CURVE = "--enable-curve"
HTTP_PORT = "--http-port"
HTTP_HOST = "--http-host"
RECORD = "--record"

USAGE = f"""\
usage: greenheart ipcontroller [{FAIL_ON_DISCONNECT}] [{ENABLE_CURVE}] [{HTTP_PORT}=PORT]
                               [{HTTP_HOST}=HOST] [{RECORD}=FILE] [ipcontroller's arguments]

ipyparallel's controller, with greenheart's heart monitor in place of its own.

  {FAIL_ON_DISCONNECT}  an engine whose connection closes (its process died) leaves the
                        cluster at once, instead of after its missed beats
  {ENABLE_CURVE}        CurveZMQ for the whole cluster: --IPController.enable_curve=True
  {HTTP_PORT}=PORT      serve the heart monitor's live page (and /live.json, /hearts,
                        /metrics) on this port, on {HTTP_HOST} (127.0.0.1 unless given)
  {RECORD}=FILE         record what the heart monitor's verdicts depend on, for
                        greenheart tune

ipcontroller's options follow (its --HeartMonitor.period and
--HeartMonitor.max_heartmonitor_misses set greenheart's monitor too). greenheart's
mass-silence rule is set in the same section: --HeartMonitor.mass_silence=False turns it
off, --HeartMonitor.mass_silence_share, --HeartMonitor.mass_silence_min_hearts and
--HeartMonitor.mass_silence_hold set it (see greenheart monitor --help), and
--HeartMonitor.transport_timeout=S how soon a vanished host's connections close, and
--HeartMonitor.state_file=FILE where its hearts are kept across restarts (with --restore,
which it needs: the engines the hub reloads are awaited for --HeartMonitor.restart_grace=S).
"""


def add_command(commands: argparse._SubParsersAction) -> None:
    """Listed in ``greenheart --help``; :func:`main` parses it (see the module's docstring)."""
    commands.add_parser(
        NAME,
        help="ipyparallel's ipcontroller with greenheart's heart monitor",
        add_help=False,
    )


def main(argv: Sequence[str]) -> int:
    require_extra("ipyparallel", "ipyparallel")
    from greenheart.integrations.ipyparallel.controller import launch

    argv = list(argv)
    http_port, argv = _take(argv, HTTP_PORT)
    http_host, argv = _take(argv, HTTP_HOST)
    record, argv = _take(argv, RECORD)
    fail_on_disconnect = FAIL_ON_DISCONNECT in argv
    argv = [arg for arg in argv if arg != FAIL_ON_DISCONNECT]
    argv = ["--IPController.enable_curve=True" if arg == ENABLE_CURVE else arg for arg in argv]
    if any(arg in ("-h", "--help", "--help-all") for arg in argv):
        sys.stdout.write(USAGE + "\n")
        sys.stdout.flush()
    launch(
        argv,
        fail_on_disconnect=fail_on_disconnect,
        http_port=None if http_port is None else _checked(HTTP_PORT, port, http_port),
        http_host=http_host or "127.0.0.1",
        record=None if record is None else _checked(RECORD, output_file, record),
    )
    # The controller has stopped; the process exits next, and CPython's last collections
    # would walk every object of the ~780 modules loaded (gevent's and greenheart's on top
    # of ipyparallel's): 80-250 ms, most of the time from SIGINT to exit. Nothing left
    # needs collecting (children are joined by atexit, files flushed by logging's):
    # frozen, the heap is skipped.
    gc.freeze()
    return 0


def _checked(option: str, kind: Callable[[str], T], text: str) -> T:
    """``text`` as ``kind`` (an argparse type) takes it, or a :class:`UsageError` naming
    ``option``."""
    try:
        return kind(text)
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"argument {option}: {error}") from None


def _take(argv: list[str], option: str) -> tuple[str | None, list[str]]:
    """The value of ``option`` (``--option=V`` or ``--option V``), and the rest of argv."""
    rest, value = [], None
    args = iter(argv)
    for arg in args:
        if arg == option:
            value = next(args, None)
            if value is None:
                raise UsageError(f"{option} needs a value")
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return value, rest
