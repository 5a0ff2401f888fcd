"""The unibus contract suite against the real RabbitMQ, in each mode whose capabilities
differ: quorum queues (default), and classic priority queues with a single active consumer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rabbitmq_support import URL, remember

import unibus
from unibus.testing import ContractSuite

# DevStack.restart (the reconnect test's hook) leaves its broker's Popen object to the
# garbage collector, whose ResourceWarning is not about this backend.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:subprocess \d+ is still running:ResourceWarning"
)


class _Cleaning(ContractSuite):
    @contextlib.asynccontextmanager
    async def open_bus(self, url: str, **options: Any) -> AsyncIterator[unibus.Bus]:
        async with super().open_bus(url, **options) as bus:
            try:
                yield bus
            finally:
                remember(bus.backend)


class TestRabbitMQContract(_Cleaning):
    url = URL
    options: dict[str, Any] = {}
    broker = "rabbitmq"


class TestRabbitMQClassicOrderedContract(_Cleaning):
    url = URL
    options: dict[str, Any] = {
        "queue_type": "classic", "single_active_consumer": True, "max_priority": 5,
    }
    broker = "rabbitmq"
