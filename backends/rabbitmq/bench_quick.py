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


Rates = tuple[float, float, float, float]  # publish/s, consume/s, client CPU us per message


async def bench_unibus(count: int) -> Rates:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    async with unibus.connect(URL) as bus:
        consumer = await bus.consumer(topic, group="bench", prefetch=1000)
        messages = [unibus.Message(body=BODY) for _ in range(count)]
        cpu = time.process_time()
        start = time.perf_counter()
        for i in range(0, count, WINDOW):
            await bus.publish_many(topic, messages[i:i + WINDOW])
        published = time.perf_counter() - start
        cpu_publish = time.process_time() - cpu
        cpu = time.process_time()
        start = time.perf_counter()
        received = 0
        while received < count:
            for delivery in await consumer.receive_batch(1000, timeout=30):
                await delivery.ack()
                received += 1
        consumed = time.perf_counter() - start
        cpu_consume = time.process_time() - cpu
        await consumer.close()
        await bus.delete_topic(topic)
    return (count / published, count / consumed, cpu_publish / count * 1e6,
            cpu_consume / count * 1e6)


async def bench_raw(count: int) -> Rates:
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
        cpu = time.process_time()
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
        cpu_publish = time.process_time() - cpu
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= count:
                done.set()

        cpu = time.process_time()
        start = time.perf_counter()
        tag = await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), 600)
        consumed = time.perf_counter() - start
        cpu_consume = time.process_time() - cpu
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
    return (count / published, count / consumed, cpu_publish / count * 1e6,
            cpu_consume / count * 1e6)


async def main(count: int) -> None:
    raw = await bench_raw(count)
    uni = await bench_unibus(count)
    print(f"{count} x {len(BODY)} B, persistent, publisher confirms, quorum queue, manual ack")
    print(f"{'':10}{'publish msg/s':>15}{'consume msg/s':>15}"
          f"{'publish CPU us/msg':>20}{'consume CPU us/msg':>20}")
    for name, r in (("aio-pika", raw), ("unibus", uni)):
        print(f"{name:10}{r[0]:15,.0f}{r[1]:15,.0f}{r[2]:20,.0f}{r[3]:20,.0f}")
    print("(CPU: this client process only; rates also depend on the broker and machine load)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
