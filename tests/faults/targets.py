"""The real brokers the fault tests run against, as the launcher serves them.

URLs come from the launcher's specs, so ``UNIBUS_DEV_HOME`` and ``UNIBUS_DEV_PORTS`` point the
fault tests (and the broker kills they make) at a second stack without touching the first.
"""

from __future__ import annotations

import dataclasses

from unibus.devstack import DevStack


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    broker: str | None  # unibus dev name, None for the embedded engine
    options: tuple[tuple[str, object], ...] = ()
    partitions: int = 1  # where the broker partitions topics, spread the load

    def url(self, tmp: str) -> str:
        if self.broker is None:
            return f"sqlite:///{tmp}/bus.db"
        return DevStack().spec(self.broker).url


TARGETS = [
    Target("sqlite", None, (("lease_timeout", 5.0),)),
    Target("rabbitmq", "rabbitmq"),
    Target("nats", "nats"),
    Target("kafka", "kafka", partitions=4),
    Target("pulsar", "pulsar"),
    Target("sqs", "elasticmq"),
]
