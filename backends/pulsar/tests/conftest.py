"""Pulsar tests run against the real standalone broker on 127.0.0.1:6650 (admin :8080).

A test that needs the broker fails with the command that starts it when nothing listens
there; it is never skipped. Topics the tests used are deleted when the session ends.
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


@pytest.fixture(scope="session", autouse=True)
def _delete_created_topics() -> Iterator[None]:
    yield
    if not pulsar_support.CREATED or not _reachable():
        return
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
            if any(short == t or short.startswith(t + "-") for t in pulsar_support.CREATED):
                quoted = urllib.parse.quote(short, safe="")
                with contextlib.suppress(httpx.HTTPError):
                    http.delete(f"{base}/{quoted}/partitions", params={"force": "true"})
                    http.delete(f"{base}/{quoted}", params={"force": "true"})
