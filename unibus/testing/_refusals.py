"""Bad input gets a typed error; what a backend cannot do is refused, with the reason."""

from __future__ import annotations

import pytest

import unibus
from unibus.capabilities import DeliveryGuarantee
from unibus.testing._base import ContractBase

# requirement -> how to ask for it; the declaration says which ones must be refused.
_ASKS = {
    "replay": ("replay", True),
    "consumer_groups": ("consumer_groups", True),
    "fan_out": ("fan_out", True),
    "ttl": ("ttl", True),
    "priority": ("priority", True),
    "transactions": ("transactions", True),
    "wildcard_subscriptions": ("wildcard_subscriptions", True),
}


class RefusalContract(ContractBase):
    async def test_oversized_message_is_refused_and_nothing_is_sent(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        huge = unibus.Message(body=b"x" * (caps.max_message_size + 1))
        with pytest.raises(unibus.MessageTooLargeError) as info:
            await bus.publish(topic, huge)
        assert str(caps.max_message_size) in str(info.value)
        with pytest.raises(unibus.MessageTooLargeError):
            await bus.publish_many(topic, [unibus.Message(body=b"ok"), huge])
        fine = unibus.Message(body=b"fine")
        await bus.publish(topic, fine)
        got = await self.collect(consumer, 1)
        assert self.ids(got) == [fine.id], "a refused message is never delivered"
        await self.assert_quiet(consumer)

    def test_unknown_option_is_a_config_error(self, bus_url: str) -> None:
        with pytest.raises(unibus.ConfigError, match="no_such_option"):
            unibus.connect(bus_url, no_such_option=1, **self.options)

    def test_invalid_option_value_is_a_config_error(self, bus_url: str) -> None:
        with pytest.raises(unibus.ConfigError, match="connect_timeout"):
            unibus.connect(bus_url, **{**self.options, "connect_timeout": -5})

    def test_invalid_requirement_is_a_config_error(self, bus_url: str) -> None:
        with pytest.raises(unibus.ConfigError):
            unibus.connect(bus_url, requirements={"delivery": "twice"}, **self.options)
        with pytest.raises(unibus.ConfigError):
            unibus.connect(bus_url, requirements={"retention": "forever-ish"}, **self.options)

    async def test_unknown_topic_without_auto_create(self, bus_url: str, topic: str) -> None:
        async with self.open_bus(bus_url, auto_create=False) as bus:
            with pytest.raises(unibus.TopicNotFoundError, match=topic):
                await bus.publish(topic, unibus.Message(body=b"nowhere"))

    async def test_bad_consumer_arguments(self, bus: unibus.Bus, topic: str) -> None:
        with pytest.raises(unibus.ConfigError):
            await bus.consumer(topic, prefetch=0)
        with pytest.raises(unibus.ConfigError):
            await bus.consumer([], group="g")
        with pytest.raises(unibus.ConfigError):
            await bus.consumer(topic, max_attempts=0)

    def test_every_missing_capability_is_refused_with_its_reason(
        self, bus_url: str, caps: unibus.Capabilities
    ) -> None:
        refused = 0
        for dimension, (field, value) in _ASKS.items():
            if getattr(caps, dimension):
                unibus.connect(bus_url, requirements={field: value}, **self.options)
                continue
            with pytest.raises(unibus.CapabilityError) as info:
                unibus.connect(bus_url, requirements={field: value}, **self.options)
            assert caps.reason(dimension) in str(info.value)
            assert dimension in caps.reasons, f"declare why {dimension} is unavailable"
            refused += 1
        for guarantee in DeliveryGuarantee:
            asked = {"delivery": guarantee.value}
            if guarantee in caps.delivery:
                unibus.connect(bus_url, requirements=asked, **self.options)
            else:
                with pytest.raises(unibus.CapabilityError, match=guarantee.value):
                    unibus.connect(bus_url, requirements=asked, **self.options)
                assert "delivery" in caps.reasons
                refused += 1
        if caps.max_delay is None:
            with pytest.raises(unibus.CapabilityError):
                unibus.connect(bus_url, requirements={"delayed_delivery": "1s"}, **self.options)
        too_big = {"max_message_size": caps.max_message_size + 1}
        with pytest.raises(unibus.CapabilityError, match="max_message_size"):
            unibus.connect(bus_url, requirements=too_big, **self.options)
        print(f"refusals asserted: {refused + 1 + (caps.max_delay is None)}")
