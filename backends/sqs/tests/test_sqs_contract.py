"""The unibus contract suite against real SQS-compatible servers, one class per mode."""

from __future__ import annotations

from typing import Any, ClassVar

from sqs_support import ELASTICMQ_FIFO_URL, ELASTICMQ_URL, MOTO_SNS_URL, TEST_OPTIONS

from unibus.testing import ContractSuite


class TestSQSStandardElasticMQContract(ContractSuite):
    """Standard queues on ElasticMQ (no SNS): one queue per topic, one group per topic."""

    url = ELASTICMQ_URL
    options: ClassVar[dict[str, Any]] = TEST_OPTIONS
    broker = "elasticmq"


class TestSQSFifoElasticMQContract(ContractSuite):
    """FIFO queues on ElasticMQ: per-key order and deduplication by message id."""

    url = ELASTICMQ_FIFO_URL
    options: ClassVar[dict[str, Any]] = TEST_OPTIONS
    broker = "elasticmq"


class TestSQSSNSMotoContract(ContractSuite):
    """Standard queues with consumer groups and fan-out through SNS, on moto."""

    url = MOTO_SNS_URL
    options: ClassVar[dict[str, Any]] = TEST_OPTIONS
    broker = "moto"
