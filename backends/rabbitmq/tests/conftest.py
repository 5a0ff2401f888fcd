"""RabbitMQ tests run against the real broker on 127.0.0.1:5672 (guest/guest).

A test that needs the broker fails with the command that starts it when nothing listens
there; it is never skipped. Queues and exchanges the tests declare are deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest
import rabbitmq_support

_BROKER_MODULES = ("test_rabbitmq_contract", "test_rabbitmq_broker")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rsplit(".", 1)[-1] in _BROKER_MODULES:
            item.add_marker(pytest.mark.broker("rabbitmq"))


def _reachable() -> bool:
    with contextlib.suppress(OSError), socket.create_connection(rabbitmq_support.ADDRESS, 2):
        return True
    return False


@pytest.fixture(autouse=True)
def _rabbitmq_is_up(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("broker") is None:
        return
    if not _reachable():
        pytest.fail(
            f"RabbitMQ is not reachable on {rabbitmq_support.URL}; start it with "
            "`uv run python -m unibus.devstack up rabbitmq`"
        )


@pytest.fixture(scope="session", autouse=True)
def _delete_declared_topology() -> Iterator[None]:
    yield
    if rabbitmq_support.DECLARED and _reachable():
        asyncio.run(rabbitmq_support.delete_declared())
