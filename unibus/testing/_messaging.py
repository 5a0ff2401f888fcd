"""Publishing and receiving: what goes in comes out, whole, once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import unibus
from unibus.testing._base import ContractBase


class MessagingContract(ContractBase):
    async def test_round_trip_keeps_body_key_headers_and_envelope(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        sent = unibus.Message(
            body=b'{"order": 42}',
            key="order-42",
            headers={"tenant": "acme", "trace": "abc-123"},
            type="orders.placed",
            source="shop",
            subject="order/42",
            content_type="application/json",
            correlation_id="corr-1",
            causation_id="cause-1",
            aggregate_version=7,
            schema_version="2",
            time=datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC),
        )
        receipt = await bus.publish(topic, sent)
        assert receipt.message_id == sent.id
        assert receipt.topic == topic
        [delivery] = await self.collect(consumer, 1)
        got = delivery.message
        assert got.body == sent.body
        assert got.key == sent.key
        assert got.headers == sent.headers
        for field in ("id", "type", "source", "subject", "content_type", "correlation_id",
                      "causation_id", "aggregate_version", "schema_version", "time"):
            assert getattr(got, field) == getattr(sent, field), field
        assert delivery.topic == topic
        assert delivery.attempt == 1
        assert delivery.settled
        await self.assert_quiet(consumer)

    async def test_publish_many_returns_receipts_in_order(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        messages = [unibus.Message(body=f"m{i}".encode(), key=f"k{i % 5}") for i in range(50)]
        receipts = await bus.publish_many(topic, messages)
        assert [r.message_id for r in receipts] == [m.id for m in messages]
        got = await self.collect(consumer, 50)
        assert sorted(self.ids(got)) == sorted(m.id for m in messages)
        assert {d.message.body for d in got} == {m.body for m in messages}

    async def test_empty_binary_and_non_ascii_content(self, bus: unibus.Bus, topic: str) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        samples = [
            unibus.Message(body=b""),
            unibus.Message(body=bytes(range(256)) * 4),
            unibus.Message(body="grüße ✓".encode(), key="ключ-1",
                           headers={"note": "ünïcødé ✓ 漢字", "empty": ""}),
        ]
        for message in samples:
            await bus.publish(topic, message)
        got = {d.message.id: d.message for d in await self.collect(consumer, len(samples))}
        for message in samples:
            assert got[message.id].body == message.body
            assert got[message.id].key == message.key
            assert got[message.id].headers == message.headers

    async def test_bus_encodes_objects_with_its_serializer(
        self, bus: unibus.Bus, topic: str
    ) -> None:
        consumer = await bus.consumer(topic, group=f"{topic}-g")
        await bus.publish(topic, {"order": 7, "items": ["a", "b"]}, key="7", type="orders.placed")
        [delivery] = await self.collect(consumer, 1)
        assert bus.decode(delivery) == {"order": 7, "items": ["a", "b"]}
        assert delivery.message.content_type == "application/json"
        assert delivery.message.type == "orders.placed"

    async def test_concurrent_producers_and_consumers(self, bus: unibus.Bus, topic: str) -> None:
        group = f"{topic}-g"
        consumers = [await bus.consumer(topic, group=group) for _ in range(3)]
        producers, per_producer = 4, 40
        received: list[str] = []
        done = asyncio.Event()

        async def consume(consumer: unibus.Consumer) -> None:
            while not done.is_set():
                try:
                    batch = await consumer.receive_batch(20, timeout=0.5)
                except unibus.OperationTimeoutError:
                    continue
                for delivery in batch:
                    received.append(delivery.message.id)
                    await delivery.ack()
                if len(received) >= producers * per_producer:
                    done.set()

        async def produce(n: int) -> list[str]:
            ids = []
            for i in range(per_producer):
                message = unibus.Message(body=f"{n}:{i}".encode(), key=f"p{n}")
                await bus.publish(topic, message)
                ids.append(message.id)
            return ids

        tasks = [asyncio.create_task(consume(c)) for c in consumers]
        sent = [i for ids in await asyncio.gather(*(produce(n) for n in range(producers)))
                for i in ids]
        try:
            await asyncio.wait_for(done.wait(), self.timeout * 2)
        finally:
            done.set()
            await asyncio.gather(*tasks)
        assert sorted(received) == sorted(sent), "every message exactly once across the group"
