from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from greenheart import HeartMonitor

# pytest-timeout bounds every test; a per-example deadline would only turn a loaded CI
# machine's pause into a "flaky" failure
settings.register_profile("suite", deadline=None)
# GREENHEART_HYPOTHESIS=stress searches a hundred times harder, to shake out edge cases
settings.register_profile("stress", parent=settings.get_profile("suite"), max_examples=10_000)
settings.load_profile(os.environ.get("GREENHEART_HYPOTHESIS", "suite"))


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
    "test_registrations", "test_schedule", "test_silence", "test_timeline",
}  # fmt: skip
INTEROP = {
    "test_interop", "test_ipyparallel_cluster", "test_ipyparallel_monitor",
    "test_simulated_engines",
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in PURE:
            item.add_marker(pytest.mark.pure)
        if module in INTEROP:
            item.add_marker(pytest.mark.interop)
