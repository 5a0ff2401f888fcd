"""RabbitMQ: aio-pika and FastStream against unibus, all on a topic exchange with a durable
quorum queue per group, persistent messages, publisher confirms and manual acks."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench.impls.base import Impl, now, paced, stamped
from bench.impls.unibus_impl import UnibusImpl

URL = "amqp://guest:guest@127.0.0.1:5672/"
WINDOW = 1000  # confirms in flight, the same as unibus's publish_many batch
PREFETCH = 1000
QUORUM = {"x-queue-type": "quorum"}


def implementations() -> list[Impl]:
    return [UnibusImpl(URL), RawAioPika(), FastStreamRabbit()]


class RawAioPika(Impl):
    """aio-pika as its docs show for throughput: a confirming channel, publishes gathered
    in windows, a callback consumer (``queue.consume``) acking each message."""

    name = "aio-pika"

    async def setup(self) -> None:
        self.connection = await aio_pika.connect_robust(URL)
        self.channel = await self.connection.channel(publisher_confirms=True)
        await self.channel.set_qos(prefetch_count=PREFETCH)
        self.exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self.queues: dict[str, aio_pika.abc.AbstractQueue] = {}

    async def teardown(self) -> None:
        for queue in self.queues.values():
            await queue.delete(if_unused=False, if_empty=False)
        for exchange in self.exchanges.values():
            await exchange.delete()
        await self.connection.close()

    async def prepare(self, topic: str, group: str) -> None:
        exchange = await self.channel.declare_exchange(
            topic, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await self.channel.declare_queue(f"{topic}.{group}", durable=True,
                                                 arguments=QUORUM)
        await queue.bind(exchange, "#")
        self.exchanges[topic], self.queues[topic] = exchange, queue

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        exchange = self.exchanges[topic]
        persistent = aio_pika.DeliveryMode.PERSISTENT
        for start in range(0, count, WINDOW):
            await asyncio.gather(*(
                exchange.publish(aio_pika.Message(payload, delivery_mode=persistent),
                                 routing_key="", mandatory=True)
                for _ in range(min(WINDOW, count - start))))

    async def consume(self, topic: str, count: int) -> None:
        done = asyncio.Event()
        received = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= count:
                done.set()

        queue = self.queues[topic]
        tag = await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), 600)
        await queue.cancel(tag)

    async def latency(self, topic: str, rate: int, seconds: float,
                      payload: bytes) -> list[float]:
        samples: list[float] = []
        total = int(rate * seconds)
        done = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            samples.append(now() - stamped(message.body))
            await message.ack()
            if len(samples) >= total:
                done.set()

        queue = self.queues[topic]
        tag = await queue.consume(on_message)
        exchange = self.exchanges[topic]
        persistent = aio_pika.DeliveryMode.PERSISTENT

        async def send(body: bytes) -> Any:
            return await exchange.publish(aio_pika.Message(body, delivery_mode=persistent),
                                          routing_key="", mandatory=True)

        await paced(send, rate, total, payload)
        await asyncio.wait_for(done.wait(), 60)
        await queue.cancel(tag)
        return samples


class FastStreamRabbit(Impl):
    """FastStream's RabbitBroker: ``broker.publish(persist=True)`` on its confirming
    channel, gathered in the same windows; a subscriber with ``AckPolicy.MANUAL``."""

    name = "faststream"

    async def setup(self) -> None:
        from faststream.rabbit import RabbitBroker

        self.broker = RabbitBroker(URL, logger=None)
        await self.broker.start()
        self.names: dict[str, tuple[Any, Any]] = {}
        self.declared: list[Any] = []

    async def teardown(self) -> None:
        for queue in self.declared:
            await queue.delete(if_unused=False, if_empty=False)
        await self.broker.stop()

    async def prepare(self, topic: str, group: str) -> None:
        from faststream.rabbit import ExchangeType, RabbitExchange, RabbitQueue

        exchange = RabbitExchange(topic, type=ExchangeType.TOPIC, durable=True,
                                  auto_delete=True)
        queue = RabbitQueue(f"{topic}.{group}", durable=True, routing_key="#",
                            arguments=QUORUM)
        await self.broker.declare_exchange(exchange)
        declared = await self.broker.declare_queue(queue)
        await declared.bind(topic, "#")
        self.names[topic] = (exchange, queue)
        self.declared.append(declared)

    async def publish(self, topic: str, count: int, payload: bytes) -> None:
        exchange, _ = self.names[topic]
        publish = self.broker.publish
        for start in range(0, count, WINDOW):
            await asyncio.gather(*(publish(payload, exchange=exchange, persist=True)
                                   for _ in range(min(WINDOW, count - start))))

    async def consume(self, topic: str, count: int) -> None:
        from faststream import AckPolicy
        from faststream.rabbit import Channel
        from faststream.rabbit.annotations import RabbitMessage

        _, queue = self.names[topic]
        done = asyncio.Event()
        received = 0
        subscriber = self.broker.subscriber(queue, ack_policy=AckPolicy.MANUAL,
                                            channel=Channel(prefetch_count=PREFETCH),
                                            persistent=False)

        @subscriber
        async def handle(body: bytes, message: RabbitMessage) -> None:
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

