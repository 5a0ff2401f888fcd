"""One module per broker or store; each exposes ``PORTS`` and ``spec(ports) -> BrokerSpec``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from unibus.devstack._spec import BrokerSpec

__all__ = ["ALIASES", "BROKERS", "ORDER", "STORES", "default_ports", "spec"]

#: Start order: quick ones first, so a failure of a slow one does not hide them.
BROKERS = ("rabbitmq", "nats", "elasticmq", "moto", "kafka", "pulsar")
#: Databases for the idempotency stores and the outbox (not brokers; listed after them).
STORES = ("redis", "postgres")
ORDER = (*BROKERS, *STORES)


#: ``sqs`` names both SQS-compatible servers (ElasticMQ for throughput, moto for SNS).
ALIASES = {"sqs": ("elasticmq", "moto"), "brokers": BROKERS, "stores": STORES}


def default_ports(name: str) -> dict[str, int]:
    """The fixed ports of ``name`` (the compose stacks publish the same ones)."""
    ports: dict[str, int] = importlib.import_module(f"unibus.devstack.brokers.{name}").PORTS
    return dict(ports)


def spec(name: str, ports: Mapping[str, int] | None = None) -> BrokerSpec:
    """The broker's spec; ``ports`` overrides some of its default ports (by port name)."""
    module = importlib.import_module(f"unibus.devstack.brokers.{name}")
    unknown = set(ports or {}) - set(module.PORTS)
    if unknown:
        raise ValueError(f"{name} has no port(s) {sorted(unknown)}; it has {sorted(module.PORTS)}")
    found: BrokerSpec = module.spec({**module.PORTS, **(ports or {})})
    return found
