"""unibus itself, the same code for every broker: only the URL changes."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import unibus
from bench.impls.base import Impl, now

BATCH = 1000


class UnibusImpl(Impl):
    name = "unibus"

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.options = options
        self.bus: unibus.Bus | None = None

    async def setup(self) -> None:
        self.bus = await unibus.connect(self.url, **self.options)

    async def teardown(self) -> None:
        assert self.bus is not None
        await self.bus.close()

    async def prepare(self, topic: str, group: str) -> None:
        assert self.bus is not None
        await self.bus.provision(topic, groups=(group,))

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        assert self.bus is not None
        producer = self.bus.producer
        message = unibus.Message
        for start in range(0, count, BATCH):
            batch = [message(body=payload) for _ in range(min(BATCH, count - start))]
            await producer.publish_many(topic, batch)

    async def consume(self, topic: str, count: int, group: str = "bench") -> None:
        assert self.bus is not None
        consumer = await self.bus.consumer(topic, group=group, prefetch=1000)
        got = 0
        while got < count:
            batch = await consumer.receive_batch(1000, timeout=30)
            for delivery in batch:
                await delivery.ack()
            got += len(batch)
        await consumer.close()

    async def latency(self, topic: str, rate: int, seconds: float,
                      payload: bytes) -> list[float]:
        assert self.bus is not None
        consumer = await self.bus.consumer(topic, group="latency")
        total = int(rate * seconds)
        samples: list[float] = []

        async def receive() -> None:
            while len(samples) < total:
                for delivery in await consumer.receive_batch(1000, timeout=30):
                    sent = struct.unpack(">d", delivery.message.body[:8])[0]
                    samples.append(now() - sent)
                    await delivery.ack()

        receiver = asyncio.create_task(receive())
        producer = self.bus.producer
        sends: set[asyncio.Task[Any]] = set()
        start = now()
        for i in range(total):
            delay = start + i / rate - now()
            if delay > 0:
                await asyncio.sleep(delay)
            body = struct.pack(">d", now()) + payload[8:]
            task = asyncio.create_task(producer.publish(topic, unibus.Message(body=body)))
            sends.add(task)
            task.add_done_callback(sends.discard)
        await asyncio.gather(*sends)
        await asyncio.wait_for(receiver, 60)
        await consumer.close()
        return samples
