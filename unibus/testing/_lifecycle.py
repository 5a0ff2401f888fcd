"""Closing and reconnecting: drain on close, nothing lost across a broker restart."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import unibus
from unibus.testing._base import ContractBase


class LifecycleContract(ContractBase):
    async def test_close_drains_in_flight_deliveries(self, bus: unibus.Bus, topic: str) -> None:
        group = f"{topic}-g"
        consumer = await bus.consumer(topic, group=group)
        messages = [unibus.Message(body=f"m{i}".encode(), key=f"k{i}") for i in range(5)]
        await bus.publish_many(topic, messages)
        in_flight = await self.collect(consumer, 5, settle=None)
        handler_may_finish = asyncio.Event()

        async def slow_handler() -> None:
            await handler_may_finish.wait()
            for delivery in in_flight:
                await delivery.ack()

        handler = asyncio.create_task(slow_handler())
        closing = asyncio.create_task(consumer.close(drain_timeout=self.timeout))
        await asyncio.sleep(0)  # let close() start: it must now wait for the handler
        assert not closing.done()
        handler_may_finish.set()
        await asyncio.gather(handler, closing)
        assert all(d.settled for d in in_flight)
        with pytest.raises(unibus.ClosedError):
            await consumer.receive(timeout=0.1)
        successor = await bus.consumer(topic, group=group)
        await self.assert_quiet(successor, self.quiet_period * 2)

    async def test_iteration_ends_when_the_consumer_closes(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        await bus.publish(topic, unibus.Message(body=b"one"))
        seen: list[unibus.Delivery] = []

        async def iterate() -> None:
            async for delivery in consumer:
                seen.append(delivery)
                await delivery.ack()
                await consumer.close()

        await asyncio.wait_for(iterate(), self.timeout)
        assert len(seen) == 1

    async def test_producer_close_flushes_pending_messages(
        self, bus_url: str, topic: str
    ) -> None:
        async with self.open_bus(bus_url) as reader:
            consumer = await reader.consumer(topic, group=f"{topic}-g")
            messages = [unibus.Message(body=f"m{i}".encode()) for i in range(30)]
            async with self.open_bus(bus_url) as writer:
                await writer.publish_many(topic, messages)
            got = await self.collect(consumer, 30)
            assert sorted(self.ids(got)) == sorted(m.id for m in messages)

    async def test_closed_bus_refuses_use(self, bus_url: str, topic: str) -> None:
        async with self.open_bus(bus_url) as bus:
            pass
        with pytest.raises(unibus.ClosedError):
            await bus.publish(topic, b"late")
        with pytest.raises(unibus.ClosedError):
            await bus.consumer(topic)

    async def test_reconnect_after_broker_restart_loses_nothing(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        before = [unibus.Message(body=f"b{i}".encode(), key=f"k{i % 3}") for i in range(20)]
        await bus.publish_many(topic, before)
        first_half = await self.collect(consumer, 10)
        await self.restart_broker()
        after = [unibus.Message(body=f"a{i}".encode(), key=f"k{i % 3}") for i in range(10)]
        for message in after:
            await self.publish_retrying(bus, topic, message)
        expected = {m.id for m in before + after} - set(self.ids(first_half))
        seen: set[str] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.redelivery_timeout * 2
        while not expected <= seen:
            if loop.time() > deadline:
                pytest.fail(f"lost {len(expected - seen)} acknowledged messages after restart")
            try:
                batch = await consumer.receive_batch(20, timeout=1.0)
            except unibus.OperationTimeoutError:
                continue
            except (unibus.ConnectionFailedError, unibus.ConsumeError):
                pytest.fail("the consumer did not recover by itself after the restart")
            for delivery in batch:
                seen.add(delivery.message.id)
                # An ack on the old connection may fail: the broker redelivers, which is fine.
                with contextlib.suppress(unibus.SettlementError):
                    await delivery.ack()
