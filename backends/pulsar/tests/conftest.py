"""Pulsar tests run against the real standalone broker on 127.0.0.1:6650 (admin :8080).

A test that needs the broker fails with the command that starts it when nothing listens
there; it is never skipped. Topics a test used are deleted when it ends.
"""

from __future__ import annotations

import contextlib
import socket
import urllib.parse
from collections.abc import Iterator

import httpx
import pulsar_support
import pytest

_OFFLINE_MODULES = ("test_pulsar_units",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rsplit(".", 1)[-1] if module is not None else ""
        if name.startswith("test_pulsar") and name not in _OFFLINE_MODULES:
            item.add_marker(pytest.mark.broker("pulsar"))


def _reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(pulsar_support.ADDRESS, 2):
        return True
    return False


@pytest.fixture(autouse=True)
def _pulsar_is_up(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("broker") is None:
        return
    if not _reachable():
        pytest.fail(
            f"Pulsar is not reachable on {pulsar_support.URL}; start it with "
            "`uv run python -m unibus.devstack up pulsar`"
        )


@pytest.fixture(autouse=True)
def _delete_the_test_s_topics() -> Iterator[None]:
    """Each test's topics go when it ends (after its buses closed): a broker that restarts
    loads every topic of its namespace before it serves again, so leftovers would slow the
    restarts later tests do."""
    first = len(pulsar_support.CREATED)
    yield
    used = pulsar_support.CREATED[first:]
    if used and _reachable():
        _delete_topics(used)


@pytest.fixture(scope="session", autouse=True)
def _delete_created_topics() -> Iterator[None]:
    """What a test's clean-up missed (a client that reconnected after it recreates a topic)."""
    yield
    if pulsar_support.CREATED and _reachable():
        _delete_topics(pulsar_support.CREATED)


def _delete_topics(names: list[str]) -> None:
    """Delete ``names`` and every topic named after them (retry, DLQ, partitions)."""
    base = f"{pulsar_support.ADMIN}/admin/v2/persistent/{pulsar_support.NAMESPACE}"
    with httpx.Client(timeout=30) as http:
        try:
            existing = set(http.get(base).json()) | set(http.get(f"{base}/partitioned").json())
        except (httpx.HTTPError, ValueError):
            return
        prefix = f"persistent://{pulsar_support.NAMESPACE}/"
        for full in sorted(existing):
            short = full.removeprefix(prefix)
            if "-partition-" in short:
                continue
            if any(short == t or short.startswith(t + "-") for t in names):
                quoted = urllib.parse.quote(short, safe="")
                with contextlib.suppress(httpx.HTTPError):
                    http.delete(f"{base}/{quoted}/partitions", params={"force": "true"})
                    http.delete(f"{base}/{quoted}", params={"force": "true"})
