"""One module per broker; each exposes ``spec() -> BrokerSpec``."""

from __future__ import annotations

import importlib

from unibus.devstack._spec import BrokerSpec

__all__ = ["ORDER", "spec"]

#: Start order: quick ones first, so a failure of a slow one does not hide them.
ORDER = ("rabbitmq", "nats", "elasticmq", "moto", "kafka", "pulsar")


def spec(name: str) -> BrokerSpec:
    module = importlib.import_module(f"unibus.devstack.brokers.{name}")
    found: BrokerSpec = module.spec()
    return found
