"""The unibus contract suite against a real Pulsar standalone broker, per subscription type."""

from __future__ import annotations

import pulsar_support
import pytest

from unibus.testing import ContractSuite


class TestPulsarContract(ContractSuite):
    """Shared subscriptions (the default): competing members, no ordering claim."""

    url = pulsar_support.URL
    options = dict(pulsar_support.OPTIONS)
    broker = "pulsar"
    #: Pulsar standalone restarts slowly (bookie + broker + metadata store).
    redelivery_timeout = 120.0

    @pytest.fixture
    def topic(self, request: pytest.FixtureRequest) -> str:
        return pulsar_support.unique_topic(request, "ct")


class TestPulsarKeySharedContract(TestPulsarContract):
    """Key_Shared subscriptions: competing members, order per key."""

    options = {**pulsar_support.OPTIONS, "subscription_type": "key_shared"}


class TestPulsarFailoverContract(TestPulsarContract):
    """Failover subscriptions: one active member, order kept, no delayed delivery."""

    options = {**pulsar_support.OPTIONS, "subscription_type": "failover"}
