"""Hosts for the tests (greenheart/bench/hosts.py), and the mark that skips a test without
them, saying what is missing."""

from __future__ import annotations

import pytest

from greenheart.bench.hosts import Host, hosts, missing

needs_hosts = pytest.mark.skipif(missing() is not None, reason=missing() or "")

__all__ = ["Host", "hosts", "needs_hosts"]
