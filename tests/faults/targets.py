"""The real brokers the fault tests and benchmarks run against, as the launcher serves them."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    url: str  # "{tmp}" is replaced by a temporary directory
    broker: str | None  # unibus dev name, None for the embedded engine
    options: tuple[tuple[str, object], ...] = ()
    partitions: int = 1  # where the broker partitions topics, spread the load


TARGETS = [
    Target("sqlite", "sqlite:///{tmp}/bus.db", None, (("lease_timeout", 5.0),)),
    Target("rabbitmq", "amqp://guest:guest@127.0.0.1:5672/", "rabbitmq"),
    Target("nats", "nats://127.0.0.1:4222", "nats"),
    Target("kafka", "kafka://127.0.0.1:9092", "kafka", partitions=4),
    Target("pulsar", "pulsar://127.0.0.1:6650", "pulsar"),
    Target("sqs", "sqs://us-east-1?endpoint_url=http://127.0.0.1:9324", "elasticmq"),
]
