"""The unibus contract suite against a real nats-server with JetStream."""

from __future__ import annotations

import os

from unibus.testing import ContractSuite

NATS_URL = os.environ.get("UNIBUS_NATS_URL", "nats://127.0.0.1:4222")


class TestNATSJetStreamContract(ContractSuite):
    url = NATS_URL
    options = {}
    broker = "nats"
