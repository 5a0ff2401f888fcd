"""Where the test brokers listen, and a clear failure when one is not running."""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.parse
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from unibus_sqs import SQSBackend

import unibus

ELASTICMQ = os.environ.get("UNIBUS_ELASTICMQ_ENDPOINT", "http://127.0.0.1:9324")
MOTO = os.environ.get("UNIBUS_MOTO_ENDPOINT", "http://127.0.0.1:4566")

ELASTICMQ_URL = f"sqs://us-east-1?endpoint_url={ELASTICMQ}"
ELASTICMQ_FIFO_URL = f"sqs+fifo://us-east-1?endpoint_url={ELASTICMQ}"
MOTO_SNS_URL = f"sqs://us-east-1?endpoint_url={MOTO}&groups=sns"


def require_server(endpoint: str, broker: str) -> None:
    """Fail (never skip) when the broker the test needs does not answer."""
    parts = urllib.parse.urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 2):
            return
    except OSError as exc:
        pytest.fail(
            f"{broker} is not running at {endpoint} ({exc}); start it with "
            f"`uv run python -m unibus.devstack up {broker}`", pytrace=False)

#: Short long polls: closing a consumer waits for its polls to end, and tests close many.
TEST_OPTIONS = {"wait_time": 2}


class DeletesTopics:
    """Mixin for contract classes: delete each test's queues, DLQs and SNS topic after it
    (the launcher's ElasticMQ persists queues; moto slows down as it fills)."""

    @pytest_asyncio.fixture(autouse=True)
    async def _delete_topic_afterwards(self, topic: str, bus_url: str,
                                       ) -> AsyncIterator[None]:
        yield
        bus = await unibus.connect(bus_url, **TEST_OPTIONS)
        try:
            backend = bus.backend
            assert isinstance(backend, SQSBackend)
            with contextlib.suppress(unibus.UnibusError):
                await backend.delete_topic(topic)
        finally:
            await bus.close()
