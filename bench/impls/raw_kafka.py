"""Kafka: aiokafka and FastStream against unibus, on topics provisioned by unibus (the same
partitions and settings), acks=all with idempotence, a consumer group committing after
processing."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

import unibus
from bench.impls.base import Impl, now, paced, stamped
from bench.impls.unibus_impl import UnibusImpl

URL = "kafka://127.0.0.1:9092"
BOOTSTRAP = "127.0.0.1:9092"
WINDOW = 1000  # sends in flight, the same as unibus's publish_many batch
RECORDS = 1000
PRODUCER: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 5}


def implementations() -> list[Impl]:
    return [UnibusImpl(URL, consumer_options={"start": "earliest"}), RawAIOKafka(),
            FastStreamKafka()]


class Topics:
    """Creates and deletes topics through unibus so every impl gets the same topic settings."""

    def __init__(self) -> None:
        self.created: list[str] = []

    async def create(self, topic: str) -> None:
        async with unibus.connect(URL) as bus:
            await bus.provision(topic)
        self.created.append(topic)

    async def delete_all(self) -> None:
        async with unibus.connect(URL) as bus:
            for topic in self.created:
                await bus.delete_topic(topic)


class RawAIOKafka(Impl):
    """aiokafka as its docs show: ``send()`` futures gathered per window, acks=all and
    idempotence; ``getmany`` batches and a manual ``commit()`` after each."""

    name = "aiokafka"

    async def setup(self) -> None:
        self.topics = Topics()
        self.producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, **PRODUCER)
        await self.producer.start()

    async def teardown(self) -> None:
        await self.producer.stop()
        await self.topics.delete_all()

    async def prepare(self, topic: str, group: str) -> None:
        await self.topics.create(f"raw-{topic}")

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        send = self.producer.send
        name = f"raw-{topic}"
        for start in range(0, count, WINDOW):
            futures = [await send(name, payload) for _ in range(min(WINDOW, count - start))]
            await asyncio.gather(*futures)

    def consumer(self, topic: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(f"raw-{topic}", bootstrap_servers=BOOTSTRAP,
                                group_id=f"raw-{topic}-bench", enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=RECORDS)

    async def consume(self, topic: str, count: int) -> None:
        consumer = self.consumer(topic)
        await consumer.start()
        try:
            received = 0
            while received < count:
                batch = await consumer.getmany(timeout_ms=1000, max_records=RECORDS)
                for records in batch.values():
                    received += len(records)
                if batch:
                    await consumer.commit()
        finally:
            await consumer.stop()

    async def latency(self, topic: str, rate: int, seconds: float,
                      payload: bytes) -> list[float]:
        total = int(rate * seconds)
        samples: list[float] = []
        consumer = self.consumer(topic)
        await consumer.start()
        ready = asyncio.Event()

        async def receive() -> None:
            while len(samples) < total:
                batch = await consumer.getmany(timeout_ms=50, max_records=RECORDS)
                ready.set()
                for records in batch.values():
                    samples.extend(now() - stamped(r.value) for r in records)
                if batch:
                    await consumer.commit()

        receiver = asyncio.create_task(receive())
        await asyncio.wait_for(ready.wait(), 60)
        name = f"raw-{topic}"
        await paced(lambda body: self.producer.send_and_wait(name, body), rate, total, payload)
        await asyncio.wait_for(receiver, 60)
        await consumer.stop()
        return samples


class FastStreamKafka(Impl):
    """FastStream's KafkaBroker with the same producer settings: ``broker.publish_batch`` in
    the same windows; a batch subscriber with ``AckPolicy.MANUAL`` acking (committing)
    each batch, as its docs show for throughput."""

    name = "faststream"

    async def setup(self) -> None:
        from faststream.kafka import KafkaBroker

        self.topics = Topics()
        self.broker = KafkaBroker(BOOTSTRAP, logger=None, **PRODUCER)
        await self.broker.start()

    async def teardown(self) -> None:
        await self.broker.stop()
        await self.topics.delete_all()

    async def prepare(self, topic: str, group: str) -> None:
        await self.topics.create(f"fs-{topic}")

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        # FastStream's batch API, as unibus's publish_many uses aiokafka's: publish_batch
        # sends one record batch, which must fit the producer's max_batch_size (16 KiB by
        # default; FastStream adds its headers), so each window goes out in such chunks.
        name = f"fs-{topic}"
        chunk = max(1, 16384 // (len(payload) + 120))
        publish_batch = self.broker.publish_batch
        for start in range(0, count, WINDOW):
            size = min(WINDOW, count - start)
            futures = [await publish_batch(*[payload] * min(chunk, size - i), topic=name,
                                           no_confirm=True)
                       for i in range(0, size, chunk)]
            await asyncio.gather(*futures)

    async def consume(self, topic: str, count: int) -> None:
        from faststream import AckPolicy
        from faststream.kafka.annotations import KafkaMessage

        name = f"fs-{topic}"
        done = asyncio.Event()
        received = 0
        subscriber = self.broker.subscriber(
            name, group_id=f"{name}-bench", auto_offset_reset="earliest", batch=True,
            max_records=RECORDS, ack_policy=AckPolicy.MANUAL, persistent=False)

        @subscriber
        async def handle(bodies: list[bytes], message: KafkaMessage) -> None:
            nonlocal received
            received += len(bodies)
            await message.ack()
            if received >= count:
                done.set()

        await subscriber.start()
        try:
            await asyncio.wait_for(done.wait(), 600)
        finally:
            await subscriber.stop()
