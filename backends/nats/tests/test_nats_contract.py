"""The unibus contract suite against a real nats-server with JetStream."""

from __future__ import annotations

import gc
import os
import warnings

from unibus.testing import ContractSuite

NATS_URL = os.environ.get("UNIBUS_NATS_URL", "nats://127.0.0.1:4222")


class TestNATSJetStreamContract(ContractSuite):
    url = NATS_URL
    options = {}
    broker = "nats"

    async def restart_broker(self) -> None:
        # The launcher drops its Popen handle of the restarted (still running) server;
        # its ResourceWarning is about the launcher, not the backend under test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            await super().restart_broker()
            gc.collect()
