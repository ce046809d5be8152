from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent.subprocess
import pytest
from hypothesis import settings

from greenheart import HeartMonitor

# pytest-timeout bounds every test; a per-example deadline would only turn a loaded CI
# machine's pause into a "flaky" failure
settings.register_profile("suite", deadline=None)
# GREENHEART_HYPOTHESIS=stress searches a hundred times harder, to shake out edge cases (the
# tests that set their own max_examples scale it by as much: tests/pure.py's examples())
settings.register_profile("stress", parent=settings.get_profile("suite"), max_examples=10_000)
PROFILE = os.environ.get("GREENHEART_HYPOTHESIS", "suite")
settings.load_profile(PROFILE)
#: how many times longer a test may run under the loaded profile than pytest-timeout's limit
TIMEOUT_SCALE = 100 if PROFILE == "stress" else 1


@pytest.fixture
def make_monitor() -> Iterator[Callable[..., HeartMonitor]]:
    """Makes started monitors bound to free loopback ports, and stops them after the test."""
    monitors: list[HeartMonitor] = []

    def make(cls: type[HeartMonitor] = HeartMonitor, **kwargs: object) -> HeartMonitor:
        monitor = cls.bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", **kwargs)
        monitors.append(monitor)
        monitor.start()
        return monitor

    yield make
    for monitor in monitors:
        monitor.stop()


#: the tiers, by module: the pure core's properties and tests (no sockets, no processes:
#: ``scripts/test --fast`` runs them in seconds), and the tests against the real ipyparallel
PURE = {
    "test_behaviour", "test_connections", "test_fanout", "test_judging", "test_ledger",
    "test_live_core", "test_registrations", "test_replay", "test_schedule", "test_silence",
    "test_tune",
    "test_timeline",
}  # fmt: skip
INTEROP = {
    "test_interop", "test_ipyparallel_cluster", "test_ipyparallel_monitor",
    "test_simulated_engines",
}  # fmt: skip


#: which tests start processes and which are slow, by node id: ``scripts/test --tiers`` writes
#: it from a run of the whole suite (a test that starts a process unlisted fails, saying so)
TIERS = Path(__file__).with_name("tiers.txt")
#: a test that takes longer than this, in seconds, is ``slow``
SLOW_SECONDS = 5.0
RECORDING = os.environ.get("GREENHEART_TIERS") == "record"


def _tiers() -> dict[str, set[str]]:
    tiers: dict[str, set[str]] = {}
    if TIERS.exists():
        for line in TIERS.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                marks, nodeid = line.split(" ", 1)
                tiers[nodeid] = set(marks.split(","))
    return tiers


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tiers = _tiers()
    limit = float(config.getini("timeout") or 0) * TIMEOUT_SCALE
    for item in items:
        if TIMEOUT_SCALE > 1 and limit and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(limit))
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in PURE:
            item.add_marker(pytest.mark.pure)
        if module in INTEROP:
            item.add_marker(pytest.mark.interop)
        for mark in sorted(tiers.get(item.nodeid, ())):
            item.add_marker(getattr(pytest.mark, mark))


#: what is running now, innermost last: a test's node id, or "fixture:NAME" while one is set up
_running: list[str] = []
#: the tests and fixtures that started a process
_spawners: set[str] = set()
_recorded: dict[str, set[str]] = {}
_unmarked: list[str] = []


def _noting(original: Callable[..., object]) -> Callable[..., object]:
    def execute(self: object, *args: object, **kwargs: object) -> object:
        _spawners.update(_running[-1:])
        return original(self, *args, **kwargs)

    return execute


for _popen in (subprocess.Popen, gevent.subprocess.Popen):
    _popen._execute_child = _noting(_popen._execute_child)  # type: ignore[method-assign]


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    _running.append(f"fixture:{fixturedef.argname}")
    try:
        yield
    finally:
        _running.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # type: ignore[no-untyped-def]
    """Notes whether a test started a process (itself, or through a fixture it uses) and how
    long it took; one that started a process unmarked fails the session, so that
    ``-m "not subprocess"`` means what it says."""
    _running.append(item.nodeid)
    began = time.monotonic()
    try:
        yield
    finally:
        _running.pop()
    fixtures = getattr(item, "fixturenames", ())
    spawned = item.nodeid in _spawners or any(f"fixture:{name}" in _spawners for name in fixtures)
    marks = {"subprocess"} if spawned else set()
    if time.monotonic() - began > SLOW_SECONDS:
        marks.add("slow")
    if RECORDING:
        _recorded[item.nodeid] = marks
    elif spawned and item.get_closest_marker("subprocess") is None:
        _unmarked.append(item.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _unmarked:
        listed = "\n  ".join(_unmarked)
        print(
            f"\nthese tests start processes but are not in tests/tiers.txt"
            f" (scripts/test --tiers rewrites it):\n  {listed}"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if not RECORDING or not _recorded:
        return
    tiers = _tiers()  # a partial run keeps what it did not run
    tiers.update(_recorded)
    lines = [
        f"{','.join(sorted(marks))} {nodeid}" for nodeid, marks in sorted(tiers.items()) if marks
    ]
    header = (
        "# written by scripts/test --tiers: which tests start processes (subprocess) and take\n"
    )
    header += f"# more than {SLOW_SECONDS:g} s (slow); tests/conftest.py applies them\n"
    TIERS.write_text(header + "\n".join(lines) + "\n")
