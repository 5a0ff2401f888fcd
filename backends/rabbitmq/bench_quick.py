"""A first throughput reading: unibus-rabbitmq against aio-pika used as its docs show.

Publishes N x 200-byte persistent messages with publisher confirms (pipelined), then
consumes them with manual acks, through unibus and through aio-pika directly, on the same
broker in the same run. Usage: ``uv run python backends/rabbitmq/bench_quick.py [N]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

import aio_pika

import unibus

URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
BODY = b"x" * 200
WINDOW = 1000  # publishes in flight (confirms awaited per window)


async def bench_unibus(count: int) -> tuple[float, float]:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    async with unibus.connect(URL) as bus:
        consumer = await bus.consumer(topic, group="bench", prefetch=1000)
        messages = [unibus.Message(body=BODY) for _ in range(count)]
        start = time.perf_counter()
        for i in range(0, count, WINDOW):
            await bus.publish_many(topic, messages[i:i + WINDOW])
        published = time.perf_counter() - start
        start = time.perf_counter()
        received = 0
        while received < count:
            for delivery in await consumer.receive_batch(1000, timeout=30):
                await delivery.ack()
                received += 1
        consumed = time.perf_counter() - start
        await consumer.close()
        await bus.delete_topic(topic)
    return count / published, count / consumed


async def bench_raw(count: int) -> tuple[float, float]:
    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect_robust(URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=1000)
        exchange = await channel.declare_exchange(
            name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, "#")
        start = time.perf_counter()
        for i in range(0, count, WINDOW):
            await asyncio.gather(*(
                exchange.publish(
                    aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="", mandatory=True,
                )
                for _ in range(min(WINDOW, count - i))
            ))
        published = time.perf_counter() - start
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= count:
                done.set()

        start = time.perf_counter()
        tag = await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), 600)
        consumed = time.perf_counter() - start
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
    return count / published, count / consumed


async def main(count: int) -> None:
    raw_pub, raw_con = await bench_raw(count)
    uni_pub, uni_con = await bench_unibus(count)
    print(f"{count} x {len(BODY)} B, persistent, publisher confirms, quorum queue, manual ack")
    print(f"{'':10}{'publish msg/s':>16}{'consume msg/s':>16}")
    print(f"{'aio-pika':10}{raw_pub:16,.0f}{raw_con:16,.0f}")
    print(f"{'unibus':10}{uni_pub:16,.0f}{uni_con:16,.0f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
