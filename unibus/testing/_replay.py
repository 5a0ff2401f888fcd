"""Replay, deduplication and delayed delivery: each runs where declared, else is refused."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import pytest

import unibus
from unibus.testing._base import ContractBase


class ReplayContract(ContractBase):
    async def _refuses_replay(self, bus: unibus.Bus, topic: str) -> None:
        with pytest.raises(unibus.CapabilityError, match="replay"):
            unibus.connect(bus.backend.url, requirements={"replay": True}, **self.options)
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        with pytest.raises(unibus.CapabilityError):
            await consumer.seek("earliest")
        with pytest.raises(unibus.CapabilityError):
            await bus.consumer(topic, group=f"{topic}-new", start="earliest")

    async def _five_on_one_key(
        self, bus: unibus.Bus, topic: str
    ) -> tuple[unibus.Consumer, list[unibus.Message]]:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        messages = [unibus.Message(body=f"m{i}".encode(), key="k") for i in range(5)]
        await bus.publish_many(topic, messages)
        return consumer, messages

    async def test_seek_to_earliest_replays_everything(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        if not caps.replay:
            await self._refuses_replay(bus, topic)
            return
        consumer, messages = await self._five_on_one_key(bus, topic)
        first = await self.collect(consumer, 5)
        await consumer.seek("earliest")
        again = await self.collect(consumer, 5)
        assert self.ids(again) == self.ids(first) == [m.id for m in messages]

    async def test_seek_to_a_position_replays_from_it(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        if not caps.replay:
            await self._refuses_replay(bus, topic)
            return
        consumer, messages = await self._five_on_one_key(bus, topic)
        got = await self.collect(consumer, 5)
        position = got[2].position
        assert position is not None, "a replayable backend gives each delivery a position"
        await consumer.seek(position)
        again = await self.collect(consumer, 3)
        assert self.ids(again) == [m.id for m in messages[2:]]
        await self.assert_quiet(consumer)

    async def test_seek_to_a_time_replays_what_came_after(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        if not caps.replay:
            await self._refuses_replay(bus, topic)
            return
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        early = [unibus.Message(body=f"e{i}".encode(), key="k") for i in range(3)]
        await bus.publish_many(topic, early)
        await self.collect(consumer, 3)
        cut = datetime.now(UTC)
        # Broker timestamps have millisecond resolution: let the clock pass the cut.
        await asyncio.sleep(0.05)
        late = [unibus.Message(body=f"l{i}".encode(), key="k") for i in range(3)]
        await bus.publish_many(topic, late)
        await self.collect(consumer, 3)
        await consumer.seek(cut)
        again = await self.collect(consumer, 3)
        assert self.ids(again) == [m.id for m in late]

    async def test_new_group_can_start_from_earliest(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        if not caps.replay:
            await self._refuses_replay(bus, topic)
            return
        await bus.provision(topic)
        messages = [unibus.Message(body=f"m{i}".encode(), key="k") for i in range(4)]
        await bus.publish_many(topic, messages)
        late = await bus.consumer(topic, group=f"{topic}-late", start="earliest")
        got = await self.collect(late, 4)
        assert self.ids(got) == [m.id for m in messages]

    async def test_duplicate_publish_is_delivered_once(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        if not caps.deduplication:
            with pytest.raises(unibus.CapabilityError, match="deduplication"):
                unibus.connect(
                    bus.backend.url, requirements={"deduplication": True}, **self.options
                )
            return
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        message = unibus.Message(body=b"charge card", key="order-1")
        first = await bus.publish(topic, message)
        second = await bus.publish(topic, message)
        assert not first.duplicate
        assert second.message_id == message.id
        other = unibus.Message(body=b"next", key="order-1")
        await bus.publish(topic, other)
        got = await self.collect(consumer, 2)
        assert self.ids(got) == [message.id, other.id]
        await self.assert_quiet(consumer)

    async def test_publish_with_delay(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        if caps.max_delay is None:
            with pytest.raises(unibus.CapabilityError):
                await bus.publish(topic, unibus.Message(body=b"later"), delay=2.0)
            await self.assert_quiet(consumer)
            return
        later = unibus.Message(body=b"later", key="a")
        now = unibus.Message(body=b"now", key="b")
        await bus.publish(topic, later, delay=4.0)
        await bus.publish(topic, now)
        got = await self.collect(consumer, 2)
        assert self.ids(got) == [now.id, later.id]

    async def test_delay_beyond_the_maximum_is_refused(
        self, bus: unibus.Bus, topic: str, caps: unibus.Capabilities
    ) -> None:
        limit = caps.max_delay
        too_long = 3600.0 * 24 * 365 * 100 if limit is None or math.isinf(limit) else limit + 1
        if limit is not None and math.isinf(limit):
            with pytest.raises(unibus.ConfigError):
                await bus.publish(topic, unibus.Message(body=b"x"), delay=-1.0)
            return
        with pytest.raises(unibus.CapabilityError):
            await bus.publish(topic, unibus.Message(body=b"x"), delay=too_long)
        with pytest.raises(unibus.CapabilityError, match="delayed_delivery"):
            unibus.connect(
                bus.backend.url, requirements={"delayed_delivery": too_long}, **self.options
            )
