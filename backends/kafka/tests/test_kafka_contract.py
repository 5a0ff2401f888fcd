"""The unibus contract suite against a real Kafka broker (KRaft, single node)."""

from __future__ import annotations

import re
import uuid

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


class TestKafkaExactlyOnceContract(TestKafkaContract):
    """The same suite with transactions on: read_committed consumers, transactional commits."""

    options = {"exactly_once": True}
