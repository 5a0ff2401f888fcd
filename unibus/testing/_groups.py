"""Consumer groups, fan-out and per-key ordering."""

from __future__ import annotations

import pytest

import unibus
from unibus.capabilities import Ordering
from unibus.testing._base import ContractBase


class GroupContract(ContractBase):
    async def test_group_members_share_the_messages(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        if not caps.consumer_groups:
            with pytest.raises(unibus.CapabilityError):
                await bus.consumer(topic, group=f"{topic}-g")
            return
        group = f"{topic}-g"
        a = await bus.consumer(topic, group=group, prefetch=5)
        b = await bus.consumer(topic, group=group, prefetch=5)
        messages = [unibus.Message(body=f"m{i}".encode(), key=f"k{i}") for i in range(40)]
        await bus.publish_many(topic, messages)
        got_a: list[str] = []
        got_b: list[str] = []
        while len(got_a) + len(got_b) < 40:
            for consumer, sink in ((a, got_a), (b, got_b)):
                try:
                    batch = await consumer.receive_batch(5, timeout=0.2)
                except unibus.OperationTimeoutError:
                    continue
                for delivery in batch:
                    sink.append(delivery.message.id)
                    await delivery.ack()
        assert not set(got_a) & set(got_b), "no message went to two members of one group"
        assert sorted(got_a + got_b) == sorted(m.id for m in messages)
        await self.assert_quiet(a)
        await self.assert_quiet(b, 0.2)

    async def test_fan_out_every_group_gets_every_message(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        if not caps.fan_out:
            with pytest.raises(unibus.CapabilityError):
                unibus.connect(bus.backend.url, requirements={"fan_out": True}, **self.options)
            return
        billing = await bus.consumer(topic, group=f"{topic}-billing")
        audit = await bus.consumer(topic, group=f"{topic}-audit")
        messages = [unibus.Message(body=f"m{i}".encode()) for i in range(20)]
        await bus.publish_many(topic, messages)
        for consumer in (billing, audit):
            got = await self.collect(consumer, 20)
            assert sorted(self.ids(got)) == sorted(m.id for m in messages)

    async def test_ungrouped_consumers_each_get_every_message(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        if not caps.fan_out:
            with pytest.raises(unibus.CapabilityError):
                unibus.connect(bus.backend.url, requirements={"fan_out": True}, **self.options)
            return
        first = await bus.consumer(topic)
        second = await bus.consumer(topic)
        messages = [unibus.Message(body=f"m{i}".encode()) for i in range(10)]
        await bus.publish_many(topic, messages)
        for consumer in (first, second):
            got = await self.collect(consumer, 10)
            assert sorted(self.ids(got)) == sorted(m.id for m in messages)

    async def test_per_key_order_is_kept(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        if caps.ordering is Ordering.NONE:
            with pytest.raises(unibus.CapabilityError, match="ordering"):
                unibus.connect(
                    bus.backend.url, requirements={"ordering": "partition"}, **self.options
                )
            return
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        keys = ["alpha", "beta", "gamma"]
        messages = [
            unibus.Message(body=f"{key}:{seq}".encode(), key=key)
            for seq in range(30) for key in keys
        ]
        for start in range(0, len(messages), 10):
            await bus.publish_many(topic, messages[start:start + 10])
        got = await self.collect(consumer, len(messages))
        for key in keys:
            seqs = [int(d.message.body.split(b":")[1]) for d in got if d.message.key == key]
            assert seqs == list(range(30)), f"order of key {key!r}: {seqs}"
