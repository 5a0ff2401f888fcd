"""The unibus contract suite against real SQS-compatible servers, one class per mode."""

from __future__ import annotations

import contextlib
import time
from typing import Any, ClassVar

import pytest
from sqs_support import (
    ELASTICMQ_FIFO_URL,
    ELASTICMQ_URL,
    MOTO_SNS_URL,
    TEST_OPTIONS,
    DeletesTopics,
)

import unibus
from unibus.testing import ContractSuite


class TestSQSStandardElasticMQContract(DeletesTopics, ContractSuite):
    """Standard queues on ElasticMQ (no SNS): one queue per topic, one group per topic."""

    url = ELASTICMQ_URL
    options: ClassVar[dict[str, Any]] = TEST_OPTIONS
    broker = "elasticmq"


class TestSQSFifoElasticMQContract(DeletesTopics, ContractSuite):
    """FIFO queues on ElasticMQ: per-key order and deduplication by message id."""

    url = ELASTICMQ_FIFO_URL
    options: ClassVar[dict[str, Any]] = TEST_OPTIONS
    broker = "elasticmq"


class TestSQSSNSMotoContract(DeletesTopics, ContractSuite):
    """Standard queues with consumer groups and fan-out through SNS, on moto."""

    url = MOTO_SNS_URL
    options: ClassVar[dict[str, Any]] = TEST_OPTIONS
    broker = "moto"

    async def test_reconnect_after_broker_restart_loses_nothing(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        """moto keeps everything in memory: a restart loses every topic, queue and message,
        so "nothing acknowledged is lost" cannot hold on it (the ElasticMQ classes run the
        suite's own test against a server that persists). What must hold here: consumer
        and producer recover by themselves (the consumer rebuilds its SNS topic, queue and
        subscription) and everything published after that arrives."""
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        await bus.publish_many(topic, [unibus.Message(body=f"b{i}".encode()) for i in range(5)])
        await self.collect(consumer, 5)
        await self.restart_broker()
        deadline = time.monotonic() + self.redelivery_timeout
        while True:  # publish probes until one published now reaches the rebuilt queue
            assert time.monotonic() < deadline, "the consumer did not recover after the restart"
            await self.publish_retrying(bus, topic, unibus.Message(body=b"probe"))
            try:
                delivery = await consumer.receive(timeout=2.0)
            except unibus.OperationTimeoutError:
                continue
            with contextlib.suppress(unibus.SettlementError):
                await delivery.ack()
            if delivery.message.body == b"probe":
                break
        after = [unibus.Message(body=f"a{i}".encode()) for i in range(10)]
        for message in after:
            await self.publish_retrying(bus, topic, message)
        wanted = {m.id for m in after}
        seen: set[str] = set()
        while not wanted <= seen:
            if time.monotonic() > deadline + self.redelivery_timeout:
                pytest.fail(f"lost {len(wanted - seen)} messages published after recovery")
            try:
                batch = await consumer.receive_batch(10, timeout=1.0)
            except unibus.OperationTimeoutError:
                continue
            for delivery in batch:
                seen.add(delivery.message.id)
                await delivery.ack()
