"""The unibus contract suite against a real nats-server with JetStream."""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import AsyncIterator

import pytest_asyncio

from unibus.testing import ContractSuite

NATS_URL = os.environ.get("UNIBUS_NATS_URL", "nats://127.0.0.1:4222")


class TestNATSJetStreamContract(ContractSuite):
    url = NATS_URL
    options = {}
    broker = "nats"

    @pytest_asyncio.fixture(autouse=True)
    async def _delete_topic_afterwards(self, bus_url: str, topic: str) -> AsyncIterator[None]:
        yield
        async with self.open_bus(bus_url) as admin:
            await admin.delete_topic(topic)

    async def restart_broker(self) -> None:
        # The launcher drops its Popen handle of the restarted (still running) server;
        # its ResourceWarning is about the launcher, not the backend under test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            await super().restart_broker()
            gc.collect()
