"""A first throughput reading: unibus-nats vs raw nats-py on the same nats-server.

Publishes N x 200-byte messages and consumes them with an ack per message, once through
unibus and once with nats-py used as its docs show (publish_async with a bounded window,
pull_subscribe + fetch in batches, msg.ack()). Run: uv run python backends/nats/bench_quick.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import nats

import unibus

URL = os.environ.get("UNIBUS_NATS_URL", "nats://127.0.0.1:4222")
BODY = b"x" * 200


async def bench_unibus(count: int, chunk: int) -> tuple[float, float]:
    topic = f"bench-unibus-{uuid.uuid4().hex[:8]}"
    async with unibus.connect(URL) as bus:
        consumer = await bus.consumer(topic, group="bench", prefetch=1000)
        started = time.perf_counter()
        for start in range(0, count, chunk):
            await bus.publish_many(
                topic, [unibus.Message(body=BODY) for _ in range(min(chunk, count - start))])
        published = time.perf_counter() - started
        started = time.perf_counter()
        received = 0
        while received < count:
            for delivery in await consumer.receive_batch(1000, timeout=30):
                await delivery.ack()
                received += 1
        consumed = time.perf_counter() - started
        await consumer.close()
        await bus.delete_topic(topic)
    return count / published, count / consumed


async def bench_raw(count: int, chunk: int) -> tuple[float, float]:
    stream = f"bench-raw-{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(URL)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[stream])
    sub = await js.pull_subscribe(stream, durable="bench", stream=stream)
    started = time.perf_counter()
    for start in range(0, count, chunk):
        futures = [await js.publish_async(stream, BODY)
                   for _ in range(min(chunk, count - start))]
        await asyncio.gather(*futures)
    published = time.perf_counter() - started
    started = time.perf_counter()
    received = 0
    while received < count:
        for msg in await sub.fetch(1000, timeout=30):
            await msg.ack()
            received += 1
    consumed = time.perf_counter() - started
    await js.delete_stream(stream)
    await nc.close()
    return count / published, count / consumed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", "--count", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000, help="messages per publish batch")
    args = parser.parse_args()
    print(f"{args.count} x {len(BODY)} B on {URL}, publish batches of {args.chunk}")
    raw = await bench_raw(args.count, args.chunk)
    ours = await bench_unibus(args.count, args.chunk)
    print(f"{'':8} {'publish msg/s':>14} {'consume+ack msg/s':>18}")
    print(f"{'nats-py':8} {raw[0]:14,.0f} {raw[1]:18,.0f}")
    print(f"{'unibus':8} {ours[0]:14,.0f} {ours[1]:18,.0f}")


if __name__ == "__main__":
    asyncio.run(main())
