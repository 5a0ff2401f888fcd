"""unibus itself, the same code for every broker: only the URL changes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import unibus
from bench.impls.base import Impl, now, paced, stamped

BATCH = 1000


class UnibusImpl(Impl):
    name = "unibus"

    def __init__(self, url: str, consumer_options: dict[str, Any] | None = None,
                 concurrent_acks: bool = False, **options: Any) -> None:
        self.url = url
        self.options = options
        # e.g. Kafka's start="earliest": the bench consumer joins after the messages were sent
        self.consumer_options = consumer_options or {}
        # SQS: each ack waits for its DeleteMessageBatch, so acks awaited one by one go out
        # as batches of one; awaiting a received batch's acks together lets them coalesce
        self.concurrent_acks = concurrent_acks
        self.bus: unibus.Bus | None = None
        self.topics: list[str] = []

    async def setup(self) -> None:
        self.bus = await unibus.connect(self.url, **self.options)

    async def teardown(self) -> None:
        assert self.bus is not None
        for topic in self.topics:
            with contextlib.suppress(Exception):
                await self.bus.delete_topic(topic)
        await self.bus.close()

    async def prepare(self, topic: str, group: str) -> None:
        assert self.bus is not None
        await self.bus.provision(topic, groups=(group,))
        self.topics.append(topic)

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        assert self.bus is not None
        producer = self.bus.producer
        message = unibus.Message
        for start in range(0, count, BATCH):
            batch = [message(body=payload) for _ in range(min(BATCH, count - start))]
            await producer.publish_many(topic, batch)

    async def consume(self, topic: str, count: int, group: str = "bench") -> None:
        assert self.bus is not None
        consumer = await self.bus.consumer(topic, group=group, prefetch=1000,
                                           **self.consumer_options)
        got = 0
        while got < count:
            batch = await consumer.receive_batch(1000, timeout=30)
            await settle(batch, self.concurrent_acks)
            got += len(batch)
        await consumer.close()

    async def latency(self, topic: str, rate: int, seconds: float,
                      payload: bytes) -> list[float]:
        assert self.bus is not None
        consumer = await self.bus.consumer(topic, group="bench", prefetch=1000,
                                           **self.consumer_options)
        total = int(rate * seconds)
        samples: list[float] = []

        async def receive() -> None:
            while len(samples) < total:
                batch = await consumer.receive_batch(1000, timeout=30)
                samples.extend(now() - stamped(d.message.body) for d in batch)
                await settle(batch, self.concurrent_acks)

        receiver = asyncio.create_task(receive())
        producer = self.bus.producer
        await paced(lambda body: producer.publish(topic, unibus.Message(body=body)),
                    rate, total, payload)
        await asyncio.wait_for(receiver, 60)
        await consumer.close()
        return samples


async def settle(batch: list[Any], concurrent: bool) -> None:
    """Acknowledge every delivery of ``batch``, one after the other or all together."""
    if concurrent:
        await asyncio.gather(*(delivery.ack() for delivery in batch))
    else:
        for delivery in batch:
            await delivery.ack()
