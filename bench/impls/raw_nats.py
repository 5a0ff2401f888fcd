"""NATS JetStream: nats-py and FastStream against unibus, each on its own file-stored stream
per topic, publishes acknowledged by JetStream, a durable pull consumer acking each message."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
from nats.js.api import StreamConfig

from bench.impls.base import Impl, now, paced, stamped
from bench.impls.unibus_impl import UnibusImpl

URL = "nats://127.0.0.1:4222"
WINDOW = 1000  # publishes in flight, the same as unibus's publish_many batch
FETCH = 1000


def implementations() -> list[Impl]:
    return [UnibusImpl(URL), RawNats(), FastStreamNats()]


def stream_name(topic: str) -> str:
    return f"raw-{topic}"


class RawNats(Impl):
    """nats-py as its docs show: ``publish_async`` futures awaited per window, a durable
    ``pull_subscribe`` with ``fetch`` batches and ``msg.ack()`` per message."""

    name = "nats-py"

    async def setup(self) -> None:
        self.nc = await nats.connect(URL)
        self.js = self.nc.jetstream()
        self.subs: dict[str, Any] = {}

    async def teardown(self) -> None:
        for topic in self.subs:
            await self.js.delete_stream(stream_name(topic))
        await self.nc.close()

    async def prepare(self, topic: str, group: str) -> None:
        stream = stream_name(topic)
        await self.js.add_stream(StreamConfig(name=stream, subjects=[stream]))
        self.subs[topic] = await self.js.pull_subscribe(stream, durable=group, stream=stream)

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        subject = stream_name(topic)
        publish = self.js.publish_async
        for start in range(0, count, WINDOW):
            futures = [await publish(subject, payload)
                       for _ in range(min(WINDOW, count - start))]
            await asyncio.gather(*futures)

    async def consume(self, topic: str, count: int) -> None:
        sub = self.subs[topic]
        received = 0
        while received < count:
            for msg in await sub.fetch(FETCH, timeout=30):
                await msg.ack()
                received += 1

    async def latency(self, topic: str, rate: int, seconds: float,
                      payload: bytes) -> list[float]:
        sub = self.subs[topic]
        total = int(rate * seconds)
        samples: list[float] = []

        async def receive() -> None:
            while len(samples) < total:
                try:
                    batch = await sub.fetch(FETCH, timeout=0.05)
                except nats.errors.TimeoutError:
                    continue
                for msg in batch:
                    samples.append(now() - stamped(msg.data))
                    await msg.ack()

        receiver = asyncio.create_task(receive())
        subject = stream_name(topic)
        await paced(lambda body: self.js.publish(subject, body), rate, total, payload)
        await asyncio.wait_for(receiver, 60)
        return samples


class FastStreamNats(Impl):
    """FastStream's NatsBroker: ``broker.publish(stream=...)`` (a JetStream publish awaiting
    its ack) gathered in the same windows; a pull subscriber with ``AckPolicy.MANUAL``."""

    name = "faststream"

    async def setup(self) -> None:
        from faststream.nats import NatsBroker

        self.broker = NatsBroker(URL, logger=None)
        await self.broker.start()
        self.nc = await nats.connect(URL)  # stream admin only, outside the measurement
        self.js = self.nc.jetstream()
        self.streams: list[str] = []

    async def teardown(self) -> None:
        for stream in self.streams:
            await self.js.delete_stream(stream)
        await self.nc.close()
        await self.broker.stop()

    async def prepare(self, topic: str, group: str) -> None:
        stream = f"fs-{topic}"
        await self.js.add_stream(StreamConfig(name=stream, subjects=[stream]))
        self.streams.append(stream)

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        stream = f"fs-{topic}"
        publish = self.broker.publish
        for start in range(0, count, WINDOW):
            await asyncio.gather(*(publish(payload, stream, stream=stream, timeout=60)
                                   for _ in range(min(WINDOW, count - start))))

    async def consume(self, topic: str, count: int) -> None:
        from faststream import AckPolicy
        from faststream.nats import JStream, PullSub
        from faststream.nats.annotations import NatsMessage

        stream = f"fs-{topic}"
        done = asyncio.Event()
        received = 0
        subscriber = self.broker.subscriber(
            stream, stream=JStream(stream, declare=False), durable="bench",
            pull_sub=PullSub(batch_size=FETCH), ack_policy=AckPolicy.MANUAL, persistent=False)

        @subscriber
        async def handle(body: bytes, message: NatsMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= count:
                done.set()

        await subscriber.start()
        try:
            await asyncio.wait_for(done.wait(), 600)
        finally:
            await subscriber.stop()
