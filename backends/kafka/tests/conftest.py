"""Kafka tests run against the real broker on 127.0.0.1:9092.

A test that needs the broker fails with the command that starts it when nothing listens
there; it is never skipped. Topics the tests create are deleted when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import kafka_support
import pytest

_OFFLINE_MODULES = ("test_kafka_units", "test_kafka_offsets")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rsplit(".", 1)[-1] if module is not None else ""
        if name.startswith("test_kafka") and name not in _OFFLINE_MODULES:
            item.add_marker(pytest.mark.broker("kafka"))


def _reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(kafka_support.ADDRESS, 2):
        return True
    return False


@pytest.fixture(autouse=True)
def _kafka_is_up(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("broker") is None:
        return
    if not _reachable():
        pytest.fail(
            f"Kafka is not reachable on {kafka_support.BOOTSTRAP}; start it with "
            "`uv run python -m unibus.devstack up kafka`"
        )


@pytest.fixture(scope="session", autouse=True)
def _delete_created_topics() -> Iterator[None]:
    yield
    if kafka_support.CREATED and _reachable():
        asyncio.run(kafka_support.delete_topics(kafka_support.CREATED))
