"""The unibus contract suite against a real Kafka broker (KRaft, single node)."""

from __future__ import annotations

import gc
import re
import uuid
import warnings

import kafka_support
import pytest

from unibus.testing import ContractSuite


class TestKafkaContract(ContractSuite):
    url = kafka_support.URL
    options = {}
    broker = "kafka"

    @pytest.fixture
    def topic(self, request: pytest.FixtureRequest) -> str:
        name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
        name = name.removeprefix("test-")[:24].strip("-")
        topic = f"ct-{name}-{uuid.uuid4().hex[:8]}"
        kafka_support.CREATED.append(topic)
        return topic

    async def restart_broker(self) -> None:
        # The launcher drops the Popen of the broker it starts while it runs, which warns
        # (ResourceWarning) and fails the test under filterwarnings=error; not ours to fix.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            await super().restart_broker()
            gc.collect()


class TestKafkaExactlyOnceContract(TestKafkaContract):
    """The same suite with transactions on: read_committed consumers, transactional commits."""

    options = {"exactly_once": True}
